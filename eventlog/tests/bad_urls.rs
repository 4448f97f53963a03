//! Malformed URLs, for every backend: `connect` refuses each with a typed
//! error before any connection is tried, and the error never shows the
//! password the URL carried. Every host is 127.0.0.1 port 9 (discard), so a
//! URL wrongly taken fails at once instead of reaching anything.

use eventlog::{EventLogError, connect};
use std::time::Duration;

const SECRET: &str = "hunter2-canary";

/// URLs every build refuses (no backend feature needed to parse them).
const ANY_BUILD: &[&str] = &[
    "",
    "orders",
    "://127.0.0.1:9/orders",
    "ftp://127.0.0.1:9/orders",
    "memory://",
    "memory://bad.name",
    "memory://a/b",
];

const REDIS: &[&str] = &[
    "redis://",
    "redis://127.0.0.1:9",
    "redis://127.0.0.1:notaport/orders",
    "redis://127.0.0.1:9/a/b/c",
    "redis://127.0.0.1:9/x/orders",
    "redis://127.0.0.1:9/orders?nope=1",
    "redis://127.0.0.1:9/orders?timeout_ms=soon",
    "redis://127.0.0.1:9/orders?timeout_ms=0",
    "redis://127.0.0.1:9/orders?dedup_window_ms=-1",
    "redis://127.0.0.1:9/orders?dedup_window_ms=86400001",
    "redis://user:hunter2-canary@127.0.0.1:9/bad.log",
    "redis://user:hunter2-canary@127.0.0.1:9/orders?ca_file=/tmp/x.pem",
    "rediss://user:hunter2-canary@127.0.0.1:9/orders?ca_file=/nonexistent/ca.pem",
];

const NATS: &[&str] = &[
    "nats://",
    "nats://127.0.0.1:9",
    "nats://127.0.0.1:9/a/b",
    "nats://127.0.0.1:9/orders?replicas=many",
    "nats://127.0.0.1:9/orders?timeout_ms=0",
    "nats://127.0.0.1:9/orders?dedup_window_ms=2m",
    "nats://127.0.0.1:9/orders?nope=1",
    "nats://user:hunter2-canary@127.0.0.1:9/bad%20log",
    "tls://user:hunter2-canary@127.0.0.1:9/orders?ca_file=/nonexistent/ca.pem",
];

const KAFKA: &[&str] = &[
    "kafka://",
    "kafka:///orders",
    "kafka://127.0.0.1:9",
    "kafka://127.0.0.1:9/a/b",
    "kafka://127.0.0.1:9/orders?replication_factor=x",
    "kafka://127.0.0.1:9/orders?nope=1",
    "kafka://127.0.0.1:9/orders?dedup_window_ms=120000",
    "kafka://user:hunter2-canary@127.0.0.1:9/orders?sasl_mechanism=GSSAPI",
    "kafka://user:hunter2-canary@127.0.0.1:9/bad.log",
];

async fn refused(url: &str) {
    let outcome = tokio::time::timeout(Duration::from_secs(5), connect(url)).await;
    let err = match outcome {
        Err(_) => panic!("{url:?}: connect hung"),
        Ok(Ok(_)) => panic!("{url:?}: connect took a malformed URL"),
        Ok(Err(err)) => err,
    };
    let rendered = format!("{err:#} {err:?}");
    assert!(
        matches!(
            err.downcast_ref::<EventLogError>(),
            Some(EventLogError::InvalidConfig { .. } | EventLogError::InvalidLogName { .. })
        ),
        "{url:?}: expected InvalidConfig or InvalidLogName, got {rendered}"
    );
    assert!(
        !rendered.contains(SECRET),
        "{url:?}: the error shows the password: {rendered}"
    );
}

#[tokio::test]
async fn malformed_urls_are_refused_before_connecting() {
    let mut urls = ANY_BUILD.to_vec();
    if cfg!(feature = "redis") {
        urls.extend(REDIS);
    }
    if cfg!(feature = "nats") {
        urls.extend(NATS);
    }
    if cfg!(feature = "kafka") {
        urls.extend(KAFKA);
    }
    for url in urls {
        refused(url).await;
    }
}

/// Passwords holding each character a URL reserves (a base64 password holds
/// `/`): a malformed URL carrying one is refused without showing it, on
/// every backend.
#[tokio::test]
async fn passwords_with_reserved_characters_never_show() {
    let mut schemes = Vec::new();
    if cfg!(feature = "redis") {
        schemes.push("redis");
    }
    if cfg!(feature = "nats") {
        schemes.push("nats");
    }
    if cfg!(feature = "kafka") {
        schemes.push("kafka");
    }
    for scheme in schemes {
        for reserved in ["/", "?", "#", "@", ":", "[", "]", "%2F", "=", "&"] {
            let password = format!("hun{reserved}ter2-canary");
            // A bad log name, so each URL is refused after its password was
            // read.
            let url = format!("{scheme}://user:{password}@127.0.0.1:9/bad.log");
            let outcome = tokio::time::timeout(Duration::from_secs(5), connect(&url)).await;
            let err = match outcome {
                Err(_) => panic!("{scheme} with `{reserved}`: connect hung"),
                Ok(Ok(_)) => panic!("{scheme} with `{reserved}`: connect took a malformed URL"),
                Ok(Err(err)) => err,
            };
            let rendered = format!("{err:#} {err:?}");
            for piece in ["hun", "ter2-canary"] {
                assert!(
                    !rendered.contains(piece),
                    "{scheme} with `{reserved}` in the password: the error shows it: {rendered}"
                );
            }
        }
    }
}
