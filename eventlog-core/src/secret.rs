//! Keeping credentials out of `Debug`, logs and error messages.

use std::fmt;

/// A credential (password, token, key). `Debug` and `Display` print `***`;
/// [`expose`](Self::expose) gives the value to the code that must send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the broker client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// `url` with the password of its user information replaced by `***`, for
/// messages: `redis://ann:***@host/log`. Text that is not a URL keeps only
/// what follows its last `@`.
///
/// A password may hold any character, `/`, `?`, `#` and `@` included (as a
/// base64 one does), so the user information ends at the last `@` that is
/// followed by something that can be a host list: a query holding an `@`
/// after a host may make the message show less than it could, never the
/// password.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let hosts = |after: &str| {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let hosts = &after[..end];
        !hosts.is_empty()
            && hosts
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:,[]%".contains(c))
    };
    let at = rest
        .rmatch_indices('@')
        .map(|(at, _)| at)
        .find(|&at| hosts(&rest[at + 1..]));
    match at {
        Some(at) => {
            let user = rest[..at]
                .split([':', '/', '?', '#'])
                .next()
                .unwrap_or_default();
            format!("{scheme}{user}:***{}", &rest[at..])
        }
        // No host after any `@`: whatever precedes the last one may be a
        // password.
        None => match rest.rfind('@') {
            Some(at) => format!("{scheme}***{}", &rest[at..]),
            None => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("redis://ann:hunter2@h:1/log"),
            "redis://ann:***@h:1/log"
        );
        assert_eq!(redact_url("nats://:hunter2@h/l?x=@"), "nats://:***@h/l?x=@");
        assert_eq!(redact_url("kafka://h:9092/log"), "kafka://h:9092/log");
        assert_eq!(redact_url("no scheme hunter2@h"), "***@h");
    }

    #[test]
    fn passwords_with_reserved_characters_do_not_leak() {
        for password in [
            "ab/cd",
            "a?b",
            "a#b",
            "a@b",
            "p/q?r#s@t",
            "a:b",
            "%2F",
            "a b",
        ] {
            let url = format!("redis://app:{password}@host:6379/log");
            let shown = redact_url(&url);
            assert_eq!(shown, "redis://app:***@host:6379/log", "{url}");
            let url = format!("nats://:{password}@h1:4222,h2:4222/log?x=@");
            let shown = redact_url(&url);
            assert!(!shown.contains(password), "{url} shown as {shown}");
        }
        // No host after the `@`: everything before it is hidden.
        assert_eq!(redact_url("redis://app:ab/cd@"), "redis://***@");
        // The user name of a password-only URL is empty.
        assert_eq!(redact_url("redis://:s/ec@h/l"), "redis://:***@h/l");
    }
}
