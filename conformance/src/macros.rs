//! The macro that turns the clause list into one test per clause.

/// Emits one `#[test]` per contract clause and per check of
/// [`reliability`](crate::reliability), each named after it and running it
/// against the fixture `$fixture` (an expression evaluated inside the
/// test's own tokio runtime; `.await` and `?` are allowed). A backend needs
/// no dependency but this crate for them.
///
/// `lacks: [...]` names the [`Feature`](crate::Feature)s the backend does
/// not have (`broker_positions`, `wire_format`, `foreign_events`,
/// `retention`, `deletion`, `faults`); the clauses that need one are
/// generated as `#[ignore]`d tests whose reason names it. A log with no
/// broker lacks them all.
///
/// ```text
/// eventlog_conformance::contract_tests!(RedisFixture::shared().await?);
/// eventlog_conformance::contract_tests!(KafkaFixture::shared().await?, lacks: [retention, deletion]);
/// ```
#[macro_export]
macro_rules! contract_tests {
    ($fixture:expr) => {
        $crate::contract_tests!($fixture, lacks: []);
    };
    ($fixture:expr, lacks: [$($lack:ident),* $(,)?]) => {
        $(const _: $crate::Feature = $crate::__feature::$lack;)*
        $crate::__tests!(clauses, $fixture;
            c01_append_numbers_from_one,
            c02_concurrent_appends_are_dense_and_ordered,
            c03_last_seq_no_follows_every_handle,
            c04_every_field_round_trips,
            c05_caller_seq_no_is_ignored,
            c06_invalid_envelopes_are_refused_and_not_stored,
            c07_beginning_replays_then_follows,
            c08_latest_sees_only_new_events,
            c09_sequence_starts_at_n,
            c10_new_consumer_starts_at_beginning,
            c11_subscribe_sets_the_position_like_seek,
            c12_many_subscribers_each_see_everything,
            c13_new_events_arrive_promptly,
            c14_dropped_subscriptions_release_everything,
            c15_ack_is_cumulative,
            c16_position_outlives_the_handle,
            c17_ack_never_moves_backwards,
            c18_ack_out_of_range_is_refused,
            c19_seek_sets_where_the_next_subscription_starts,
            c20_consumers_are_independent,
            c21_bad_names_are_refused,
            c22_logs_are_isolated,
            c24_consumer_state_reports_position_and_lag,
            c27_unacknowledged_events_come_again,
            c29_append_batch_is_ordered_and_all_or_nothing,
            c30_checked_stream_yields_the_same_events,
            c36_a_batch_with_an_oversized_attribute_stores_nothing,
            c37_concurrent_acks_end_at_the_highest,
            c38_a_retried_append_is_stored_once,
            c39_the_same_id_from_another_source_is_another_event,
            c40_the_window_expires,
            c41_conditional_appends_store_only_at_the_expected_end,
            c42_concurrent_conditional_writers_never_lose_or_double,
            c45_a_live_subscription_follows_its_consumer,
            c46_a_move_elsewhere_never_breaks_a_live_subscription,
            c47_a_standby_takes_over_where_the_holder_acked,
            c48_the_refusing_mode_fails_at_once,
            c49_a_fenced_ack_or_seek_changes_nothing,
            c50_a_rolling_deploy_loses_nothing,
            c51_members_split_the_log_by_key,
            c52_a_resized_consumer_resumes_what_was_not_acknowledged,
        );
        $crate::__tests!(reliability, $fixture;
            r03_every_refusal_leaves_the_log_as_it_was,
        );
        $crate::__gated!(broker_positions [$($lack)*] clauses, $fixture;
            c23_positions_are_broker_consumer_groups,
        );
        $crate::__gated!(wire_format [$($lack)*] clauses, $fixture;
            c28_wire_format_is_the_documented_one,
        );
        $crate::__gated!(foreign_events [$($lack)*] clauses, $fixture;
            c31_an_undecodable_event_is_reported_and_skippable,
        );
        $crate::__gated!(retention [$($lack)*] clauses, $fixture;
            c32_a_gap_is_reported,
        );
        $crate::__gated!(deletion [$($lack)*] clauses, $fixture;
            c33_reused_numbers_are_reported,
            c34_a_deleted_log_is_reported,
            c44_a_recreated_log_does_not_answer_for_the_deleted_one,
        );
        $crate::__gated!(deletion [$($lack)*] reliability, $fixture;
            r02_a_deleted_log_ends_live_subscriptions,
        );
        $crate::__gated!(faults [$($lack)*] clauses, $fixture;
            c25_subscriptions_survive_a_broker_restart,
            c26_append_fails_fast_while_the_broker_is_down,
            c35_an_outage_is_reported_while_retrying,
            c43_a_retry_after_an_unknown_outcome_stores_once,
        );
        $crate::__gated!(faults [$($lack)*] reliability, $fixture;
            r01_a_paused_broker_gives_timeouts_then_recovers,
            r04_a_stopped_broker_gives_typed_errors,
        );
    };
}

/// The tests of one [`Feature`](crate::Feature): ignored with its name as
/// the reason when the list of lacked features holds it, plain otherwise.
#[doc(hidden)]
#[macro_export]
macro_rules! __gated {
    (broker_positions [broker_positions $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `broker_positions`"] $($tests)*);
    };
    (wire_format [wire_format $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `wire_format`"] $($tests)*);
    };
    (foreign_events [foreign_events $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `foreign_events`"] $($tests)*);
    };
    (retention [retention $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `retention`"] $($tests)*);
    };
    (deletion [deletion $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `deletion`"] $($tests)*);
    };
    (faults [faults $($rest:ident)*] $($tests:tt)*) => {
        $crate::__tests!(#[ignore = "the backend lacks `faults`"] $($tests)*);
    };
    ($feature:ident [$other:ident $($rest:ident)*] $($tests:tt)*) => {
        $crate::__gated!($feature [$($rest)*] $($tests)*);
    };
    ($feature:ident [] $($tests:tt)*) => {
        $crate::__tests!($($tests)*);
    };
}

/// Emits one `#[test]` per check of [`security`](crate::security)
/// against the [`Secured`](crate::security::Secured) fixture `$fixture`.
///
/// * `security_tests!(tls: fixture)`: a broker with TLS and authentication.
/// * `security_tests!(no_tls: fixture)`: a test broker with authentication
///   only; the TLS checks are not generated (the backend's docs say why).
#[macro_export]
macro_rules! security_tests {
    (tls: $fixture:expr) => {
        $crate::security_tests!(no_tls: $fixture);
        $crate::__tests!(security, $fixture;
            s04_plain_text_to_a_tls_endpoint_fails_cleanly,
            s05_an_untrusted_certificate_is_refused,
        );
    };
    (no_tls: $fixture:expr) => {
        $crate::__tests!(security, $fixture;
            s01_tls_and_credentials_grant_access,
            s02_a_wrong_password_is_refused,
            s03_missing_credentials_are_refused,
            s06_secrets_never_leak,
        );
    };
}

/// One `#[test]` per function of `$module` named in the list, on a
/// runtime of its own ([`__run`](crate::__run)), with the attributes given
/// first.
#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    (#[$attr:meta] $module:ident, $fixture:expr; $($check:ident),* $(,)?) => {
        $crate::__tests!(@each [#[$attr]] $module, $fixture; $($check),*);
    };
    ($module:ident, $fixture:expr; $($check:ident),* $(,)?) => {
        $crate::__tests!(@each [] $module, $fixture; $($check),*);
    };
    (@each [$($attr:tt)*] $module:ident, $fixture:expr; $check:ident $(, $rest:ident)*) => {
        #[test]
        $($attr)*
        fn $check() -> $crate::__anyhow::Result<()> {
            $crate::__run(async {
                let fixture = $fixture;
                $crate::__adopt!($module, &fixture);
                $crate::$module::$check(&fixture).await
            })
        }
        $crate::__tests!(@each [$($attr)*] $module, $fixture; $($rest),*);
    };
    (@each [$($attr:tt)*] $module:ident, $fixture:expr;) => {};
}

/// Adopts the timings of a contract fixture; a security fixture has none.
#[doc(hidden)]
#[macro_export]
macro_rules! __adopt {
    (security, $fixture:expr) => {};
    ($module:ident, $fixture:expr) => {
        $crate::__adopt_timings($fixture)
    };
}
