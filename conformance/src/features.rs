//! What a backend may lack that the suite would check.

/// Something the suite checks that not every backend has. A backend's test
/// file names what it lacks in [`contract_tests!`](crate::contract_tests)
/// (`lacks: [retention, deletion]`); the clauses that need it are then
/// generated as ignored tests whose reason names the feature, so
/// `cargo test` lists them and `cargo test -- --ignored` runs them to see
/// whether the absence is still real. What the backend itself declares in
/// its [`Capabilities`](eventlog_core::Capabilities) (deduplication,
/// conditional appends) is not a feature: those clauses assert the
/// documented refusal instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// `broker_positions`: positions are kept in the broker's own consumer
    /// state, readable with its plain client ([`Broker::raw_acked`](crate::Broker::raw_acked)):
    /// C23.
    BrokerPositions,
    /// `wire_format`: events can be read and written with the broker's
    /// plain client in the documented wire format ([`Broker::raw_read`](crate::Broker::raw_read),
    /// [`Broker::raw_publish`](crate::Broker::raw_publish)): C28.
    WireFormat,
    /// `foreign_events`: a foreign producer can store an event that is not
    /// in the wire format ([`Broker::raw_publish_foreign`](crate::Broker::raw_publish_foreign)): C31.
    ForeignEvents,
    /// `retention`: events can be removed from the front of a log as the
    /// broker's retention would ([`Broker::raw_remove_before`](crate::Broker::raw_remove_before)): C32.
    Retention,
    /// `deletion`: a log can be deleted under live subscriptions and between
    /// appends ([`Broker::raw_delete`](crate::Broker::raw_delete)): R02, C33, C34, C44.
    Deletion,
    /// `faults`: the test gets a broker of its own to stop, start and freeze
    /// ([`Broker::faulty`](crate::Broker::faulty), [`Faults`](crate::Faults)):
    /// C25, C26, C35, C43, R01, R04.
    Faults,
}

/// The names [`contract_tests!`](crate::contract_tests) takes in `lacks:`,
/// so a misspelt one fails to compile.
#[doc(hidden)]
#[allow(non_upper_case_globals)]
pub mod __named {
    use super::Feature;

    pub const broker_positions: Feature = Feature::BrokerPositions;
    pub const wire_format: Feature = Feature::WireFormat;
    pub const foreign_events: Feature = Feature::ForeignEvents;
    pub const retention: Feature = Feature::Retention;
    pub const deletion: Feature = Feature::Deletion;
    pub const faults: Feature = Feature::Faults;
}
