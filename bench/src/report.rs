//! The figures, as a markdown table and an SVG chart.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One workload's throughput, through the EventLog API and the raw client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Figure {
    pub(crate) workload: String,
    /// Events per second through the EventLog API.
    pub(crate) eventlog: f64,
    /// Events per second through the raw client; none for the in-memory log.
    pub(crate) raw: Option<f64>,
}

/// Append-to-delivery latency percentiles, in microseconds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
}

/// What subscriptions cost the process (`resources.rs`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Resources {
    /// Idle subscriptions held at once.
    pub(crate) idle: usize,
    /// Resident memory per idle subscription.
    pub(crate) rss_per_idle_kib: f64,
    /// Threads per idle subscription.
    pub(crate) threads_per_idle: f64,
    /// Consumer names that each subscribed and dropped.
    pub(crate) churned: usize,
    /// Resident memory gained over the second half of them.
    pub(crate) churn_growth_kib: i64,
}

/// How long an exclusive subscription's standby took to deliver after the
/// holder went (`takeover.rs`): median and slowest, in milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Takeover {
    /// The lease of the subscriptions.
    pub(crate) lease_ms: u64,
    /// After the holder's subscription was dropped.
    pub(crate) after_drop_ms: (f64, f64),
    /// After the holder's process died (its lease ran out).
    pub(crate) after_death_ms: (f64, f64),
}

/// Everything measured on one backend.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BackendReport {
    pub(crate) backend: String,
    pub(crate) figures: Vec<Figure>,
    /// Through the EventLog API, and through the raw client.
    pub(crate) latency: (Latency, Option<Latency>),
    pub(crate) peak_rss_kib: u64,
    pub(crate) resources: Resources,
    /// `None` for a backend without exclusive subscriptions.
    #[serde(default)]
    pub(crate) takeover: Option<Takeover>,
}

fn ratio(figure: &Figure) -> Option<f64> {
    figure.raw.map(|raw| figure.eventlog / raw)
}

fn rate(events_per_s: f64) -> String {
    match events_per_s {
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k/s", r / 1e3),
        r => format!("{r:.0} /s"),
    }
}

fn micros(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// The markdown table of every backend's figures.
pub(crate) fn table(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(
            out,
            "### {} (peak memory {:.0} MiB)\n",
            report.backend,
            report.peak_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "| workload | EventLog | raw client | ratio |\n|---|---:|---:|---:|"
        );
        for f in &report.figures {
            let raw = f.raw.map_or("-".to_owned(), rate);
            let ratio = ratio(f).map_or("-".to_owned(), |r| format!("{r:.2}"));
            let _ = writeln!(
                out,
                "| {} | {} | {raw} | {ratio} |",
                f.workload,
                rate(f.eventlog)
            );
        }
        let (ours, raw) = &report.latency;
        let show = |l: &Latency| {
            format!(
                "{} / {} / {}",
                micros(l.p50_us),
                micros(l.p99_us),
                micros(l.p999_us)
            )
        };
        let raw = raw.as_ref().map_or("-".to_owned(), show);
        let _ = writeln!(
            out,
            "| latency p50 / p99 / p99.9 | {} | {raw} | |\n",
            show(ours)
        );
        let r = &report.resources;
        let _ = writeln!(
            out,
            "{} idle subscriptions: {:.0} KiB and {:.2} threads each. {} consumer names \
             subscribed and dropped: resident memory {:+} KiB over the second half.\n",
            r.idle, r.rss_per_idle_kib, r.threads_per_idle, r.churned, r.churn_growth_kib
        );
        if let Some(t) = &report.takeover {
            let _ = writeln!(
                out,
                "Exclusive subscriptions, lease {} ms: a standby delivered {:.0} ms (slowest \
                 {:.0} ms) after the holder's subscription was dropped, and {:.0} ms (slowest \
                 {:.0} ms) after the holder's process died.\n",
                t.lease_ms,
                t.after_drop_ms.0,
                t.after_drop_ms.1,
                t.after_death_ms.0,
                t.after_death_ms.1
            );
        }
    }
    out
}

/// A horizontal bar chart of the EventLog / raw ratio per workload and
/// backend, with the 0.9 target marked.
pub(crate) fn chart(reports: &[BackendReport]) -> String {
    let bars: Vec<(String, f64)> = reports
        .iter()
        .flat_map(|r| {
            r.figures.iter().filter_map(move |f| {
                ratio(f).map(|q| (format!("{} · {}", r.backend, f.workload), q))
            })
        })
        .collect();
    let (label_w, bar_w, row_h) = (330.0, 400.0, 22.0);
    let max = bars.iter().map(|(_, q)| *q).fold(1.2_f64, f64::max);
    let height = 60.0 + row_h * bars.len() as f64;
    let x = |q: f64| label_w + bar_w * q / max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">EventLog throughput / raw client throughput (1.0 = equal; target 0.9)</text>\n",
        w = label_w + bar_w + 60.0
    );
    for (i, (label, q)) in bars.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let color = if *q >= 0.9 { "#3a7d44" } else { "#c0392b" };
        let _ = writeln!(
            svg,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{h}\" fill=\"{color}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\">{q:.2}</text>",
            lx = label_w - 8.0,
            ty = y + 14.0,
            bw = x(*q) - label_w,
            h = row_h - 6.0,
            tx = x(*q) + 4.0,
        );
    }
    for (q, dash) in [(0.9, "4 3"), (1.0, "1 0")] {
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"30\" x2=\"{x:.1}\" y2=\"{height}\" stroke=\"#333\" stroke-dasharray=\"{dash}\"/>",
            x = x(q)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
