//! One URL syntax for every broker backend, parsed in one place:
//!
//! ```text
//! scheme://[user[:password]@]host[:port][,host[:port]…][/segment…]/<log>[?key=value&…]
//! ```
//!
//! Each backend keeps its ecosystem's schemes (`rediss://`, NATS `tls://`)
//! and says what its path segments and its own options mean; the options
//! every backend shares ([`CommonOption`]) mean the same everywhere and are
//! range-checked here.

use crate::{EventLogError, Secret, redact_url, validate};
use std::path::PathBuf;
use std::time::Duration;

/// The longest timeout or block time a URL may set: one day.
const MAX_MILLIS: u64 = 24 * 60 * 60 * 1000;
/// The largest payload limit a URL may set: 1 GiB (Kafka's own ceiling is
/// just under it).
pub const MAX_PAYLOAD_LIMIT: usize = 1 << 30;

/// A log's URL, split into its parts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogUrl {
    scheme: String,
    user: Option<String>,
    password: Option<Secret>,
    hosts: Vec<String>,
    path: Vec<String>,
    log: String,
    options: Vec<(String, String)>,
}

/// An option every backend reads the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommonOption {
    /// `timeout_ms`: the bound of every operation.
    Timeout(Duration),
    /// `block_ms`: how long one read of a subscription waits on the broker.
    Block(Duration),
    /// `max_payload`: the largest payload `append` accepts, in bytes.
    MaxPayload(usize),
    /// `ca_file`: a PEM file of root certificates to trust.
    CaFile(PathBuf),
    /// `dedup_window_ms`: how long the log remembers the (`source`, `id`)
    /// of the events it stored; 0 turns deduplication off.
    DedupWindow(Duration),
}

/// One `key=value` of a URL's query.
#[derive(Debug, Clone, Copy)]
pub struct UrlOption<'a> {
    key: &'a str,
    value: &'a str,
}

fn invalid(reason: String) -> EventLogError {
    EventLogError::InvalidConfig { reason }
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

impl LogUrl {
    /// Splits `url`; the log name is checked, the rest is the backend's to
    /// read. Errors never show the password.
    pub fn parse(url: &str) -> Result<Self, EventLogError> {
        let shown = || redact_url(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid(format!(
                "`{}` is not a URL like redis://host/orders",
                shown()
            ))
        })?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(invalid(format!("`{}` has no valid scheme", shown())));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        if hosts.iter().any(String::is_empty) {
            return Err(invalid(format!("`{}` names no host", shown())));
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(Secret::new(decode(password)))),
                    None => (userinfo, None),
                };
                ((!user.is_empty()).then(|| decode(user)), password)
            }
        };
        let mut path: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let log = path
            .pop()
            .ok_or_else(|| invalid(format!("`{}` must end in /<log>", shown())))?;
        validate::log_name(&log)?;
        let mut options = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Query strings are form-encoded: `+` is a space.
            let form = |s: &str| decode(&s.replace('+', " "));
            options.push((form(key), form(value)));
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            user,
            password,
            hosts,
            path,
            log,
            options,
        })
    }

    /// The scheme, in lower case.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Refuses a scheme that is not one of `schemes`.
    pub fn expect_scheme(&self, schemes: &[&str]) -> Result<(), EventLogError> {
        if schemes.contains(&self.scheme.as_str()) {
            return Ok(());
        }
        Err(invalid(format!(
            "scheme `{}` is not {}",
            self.scheme,
            schemes.join(" or ")
        )))
    }

    /// The user name, percent-decoded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, percent-decoded.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Each host as `host:port`, with `default_port` where none is given.
    pub fn servers(&self, default_port: u16) -> Vec<String> {
        self.hosts
            .iter()
            .map(|host| {
                // An IPv6 address is in brackets; its colons are not a port.
                let has_port = match host.rfind(']') {
                    Some(end) => host[end..].contains(':'),
                    None => host.contains(':'),
                };
                if has_port {
                    host.clone()
                } else {
                    format!("{host}:{default_port}")
                }
            })
            .collect()
    }

    /// The one server of a backend that takes one.
    pub fn server(&self, default_port: u16) -> Result<String, EventLogError> {
        match self.servers(default_port).as_mut_slice() {
            [one] => Ok(std::mem::take(one)),
            _ => Err(invalid(format!(
                "a {}:// URL names one server, not {}",
                self.scheme,
                self.hosts.len()
            ))),
        }
    }

    /// The path segments before the log name.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The log name: the last path segment.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// The query's options, in order.
    pub fn options(&self) -> impl Iterator<Item = UrlOption<'_>> {
        self.options
            .iter()
            .map(|(key, value)| UrlOption { key, value })
    }
}

impl<'a> UrlOption<'a> {
    /// The option's name.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The option's value, percent-decoded.
    pub fn value(&self) -> &'a str {
        self.value
    }

    /// The option as one every backend shares, or `None` for the backend
    /// to read.
    pub fn common(&self) -> Result<Option<CommonOption>, EventLogError> {
        Ok(Some(match self.key {
            "timeout_ms" => CommonOption::Timeout(self.millis()?),
            "block_ms" => CommonOption::Block(self.millis()?),
            "max_payload" => {
                CommonOption::MaxPayload(self.number(1, MAX_PAYLOAD_LIMIT as u64)? as usize)
            }
            "ca_file" => CommonOption::CaFile(self.value.into()),
            "dedup_window_ms" => {
                CommonOption::DedupWindow(Duration::from_millis(self.number(0, MAX_MILLIS)?))
            }
            _ => return Ok(None),
        }))
    }

    /// The value as a whole number from `min` to `max`.
    pub fn number(&self, min: u64, max: u64) -> Result<u64, EventLogError> {
        self.value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "`{}` must be a whole number from {min} to {max}, not `{}`",
                    self.key, self.value
                ))
            })
    }

    fn millis(&self) -> Result<Duration, EventLogError> {
        Ok(Duration::from_millis(self.number(1, MAX_MILLIS)?))
    }

    /// The value as `true` or `false`.
    pub fn flag(&self) -> Result<bool, EventLogError> {
        match self.value {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(invalid(format!(
                "`{}` must be true or false, not `{other}`",
                self.key
            ))),
        }
    }

    /// The error for an option `backend` does not know.
    pub fn unknown(&self, backend: &str) -> EventLogError {
        invalid(format!("unknown option `{}` for {backend}", self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part() {
        let url = LogUrl::parse(
            "redis://ann:s3cr%40t@h1:7000,[::1]/2/orders?timeout_ms=1500&key_prefix=app%3A",
        )
        .unwrap();
        assert_eq!(url.scheme(), "redis");
        assert_eq!(url.user(), Some("ann"));
        assert_eq!(url.password().unwrap().expose(), "s3cr@t");
        assert_eq!(url.servers(6379), ["h1:7000", "[::1]:6379"]);
        assert_eq!(url.path(), ["2"]);
        assert_eq!(url.log(), "orders");
        let options: Vec<_> = url.options().map(|o| (o.key(), o.value())).collect();
        assert_eq!(options, [("timeout_ms", "1500"), ("key_prefix", "app:")]);
        assert_eq!(
            url.options().next().unwrap().common().unwrap(),
            Some(CommonOption::Timeout(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn numbers_are_range_checked() {
        for bad in [
            "max_payload=18446744073709551615",
            "max_payload=0",
            "timeout_ms=-1",
            "timeout_ms=x",
        ] {
            let url = LogUrl::parse(&format!("kafka://h/l?{bad}")).unwrap();
            let err = url.options().next().unwrap().common().unwrap_err();
            assert!(
                matches!(err, EventLogError::InvalidConfig { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn malformed_urls_are_typed_errors_without_the_password() {
        for bad in [
            "redis:/h/l",
            "redis://u:hunter2@/l",
            "redis://u:hunter2@h",
            "redis://u:hunter2@h/bad.name",
            "://h/l",
        ] {
            let err = LogUrl::parse(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    EventLogError::InvalidConfig { .. } | EventLogError::InvalidLogName { .. }
                ),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("hunter2"), "{bad}: {err}");
        }
    }
}
