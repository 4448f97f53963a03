//! Each broker's raw client doing the workloads' work, for the ratios.

pub(crate) mod kafka;
pub(crate) mod nats;
pub(crate) mod redis;
