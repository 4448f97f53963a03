//! The table of counts, one row per backend.

use crate::Backend;
use crate::run::Outcome;
use anyhow::Result;
use std::fmt::Write;

const HEADER: &str = "| backend | appended (Ok) | indeterminate | recovered | lost | duplicates \
                      | reorders/gaps | acked redeliveries | unacked redeliveries | restarts \
                      | pauses | kills | elapsed | events/s | verdict |\n\
                      |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

/// A Markdown table of every backend's counts; a backend that could not be
/// run says so in its row.
pub(crate) fn table(rows: &[(Backend, Result<Outcome>)]) -> String {
    let mut out = String::from(HEADER);
    for (backend, result) in rows {
        let name = backend.name();
        let _ = match result {
            Ok(o) => write!(
                out,
                "\n| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.0} | {} |",
                o.appended,
                o.indeterminate,
                o.recovered,
                o.lost,
                o.duplicates,
                o.reorders,
                o.acked_redeliveries,
                o.unacked_redeliveries,
                o.injected.restarts,
                o.injected.pauses,
                o.injected.kills,
                o.elapsed.as_secs_f64(),
                o.appended as f64 / o.elapsed.as_secs_f64(),
                match (o.failed(), o.unknown) {
                    (false, _) => "ok".to_owned(),
                    (true, 0) => "FAIL".to_owned(),
                    (true, unknown) => format!("FAIL ({unknown} stored ids never appended)"),
                },
            ),
            Err(_) => write!(
                out,
                "\n| {name} | - | - | - | - | - | - | - | - | - | - | - | - | - | NOT RUN |"
            ),
        };
    }
    out
}
