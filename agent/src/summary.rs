//! The end-of-run summary on stderr, and peak memory.

use crate::replay::ReplayReport;

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

pub fn render(r: &ReplayReport) -> String {
    let s = &r.stats;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let p = &s.packets;
    let h = &s.http;
    let f = &s.flows;
    let mut o = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "apiwatch replay: {} packets, {} in {:.2} s: {:.2} Gbit/s, {:.0} packets/s",
        p.packets,
        human_bytes(r.input_bytes),
        secs,
        r.input_bytes as f64 * 8.0 / secs / 1e9,
        p.packets as f64 / secs
    );
    let _ = writeln!(
        o,
        "  transactions {} ({:.0}/s), records written {}, requests {}, responses {}, no response {}, no request {}",
        h.transactions,
        h.transactions as f64 / secs,
        r.records,
        h.requests,
        h.responses,
        h.no_response,
        h.no_request
    );
    let _ = writeln!(
        o,
        "  flows {} (http {}, not http {}, midstream {}), tcp segments {}, bad checksums {}, tunneled {}",
        f.flows_created, h.conns_http, h.conns_not_http, f.flows_midstream, p.tcp_segments, p.bad_checksums, p.tunneled
    );
    let _ = writeln!(
        o,
        "  gaps {} ({} bytes), retransmitted {} bytes, parse errors {}, resyncs {}, upgrades {}",
        f.gaps, f.gap_bytes, f.bytes_retransmitted, h.parse_errors, h.resyncs, h.upgrades
    );
    let _ = writeln!(
        o,
        "  memcap drops: flows {}, reassembly {}+{} bytes, body samples {}, fragments {}; peak reassembly {}",
        f.flows_dropped_table_full,
        f.ooo_dropped_flow_cap,
        f.ooo_dropped_global_cap,
        h.samples_skipped_memcap,
        s.defrag.dropped_table_full,
        human_bytes(f.ooo_bytes_peak)
    );
    if !s.skipped.is_empty() {
        let parts: Vec<String> = s.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "  packets skipped: {}", parts.join(", "));
    }
    if let Some(c) = &r.classify {
        let _ = writeln!(
            o,
            "  sensitive data: {} of {} transactions scanned (skipped {} by rate, {} by budget), {} bodies ({}, {} cut), {} findings",
            c.transactions_sampled,
            c.transactions_seen,
            c.skipped_rate,
            c.skipped_budget,
            c.bodies_scanned,
            human_bytes(c.bytes_scanned),
            c.bodies_truncated,
            c.findings
        );
    }
    if let Some(d) = &r.detect {
        let _ = writeln!(
            o,
            "  detections: {} findings from {} signals in {} transactions ({} repeats folded, {} allowed, {} off; caps hit: {} open findings, {} clients, {} endpoints, {} principals)",
            d.findings,
            d.signals,
            d.transactions,
            d.repeats,
            d.allowed,
            d.disabled,
            d.open_cap_hits,
            d.clients_dropped_cap,
            d.endpoints_dropped_cap,
            d.principals_dropped_cap
        );
    }
    if let Some(rss) = peak_rss_bytes() {
        let _ = writeln!(o, "  peak memory {}", human_bytes(rss));
    }
    for x in &r.remotes {
        let _ = writeln!(
            o,
            "  output {} ({}): {} records delivered, {} left in the spool, {} dropped (spool full), {} refused by the sink",
            x.name, x.url, x.sent, x.pending, x.dropped, x.rejected
        );
        if let Some((p50, p99, n)) = x.latency_ms {
            let _ = writeln!(o, "    delivery latency over {n} batches: p50 {p50:.1} ms, p99 {p99:.1} ms");
        }
        if let Some(e) = &x.last_error {
            let _ = writeln!(o, "    last delivery error: {e}");
        }
    }
    o
}
