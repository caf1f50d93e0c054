//! Conformance against Zeek: replay the public HTTP traces of Zeek's test suite
//! (../shared/conformance/zeek-http) and compare our transactions with the http.log rows
//! Zeek wrote for them.
//!
//! A reference row matches when one of our transactions agrees on every comparable field
//! the row has: method, host, uri, status_code, request_body_len, response_body_len, and,
//! where the row has them, the connection 4-tuple and trans_depth. Zeek logs the URI
//! percent-decoded and escaped, so ours is decoded the same way before comparing.
//!
//! Rows that appear in several baselines (the same trace logged by several Zeek tests) are
//! counted once. Every mismatch we keep is listed, with the reason we believe our answer,
//! in `conformance_mismatches.md` beside this file; the test fails on a mismatch that is
//! not listed there, and on a listed one that no longer happens.

use apiwatch::engine::EngineConfig;
use apiwatch_model::Transaction;
use apiwatch_tests::{replay, shared_dir, skip_or_fail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// Baselines left out of the comparison, and why.
const EXCLUDED: &[(&str, &str)] = &[
    (
        "scripts.policy.protocols.ssl.decryption",
        "Zeek decrypts TLS with the session keys; a passive sensor without them sees no HTTP",
    ),
    ("language.init-in-anon-function", "the test's script rewrites id.orig_h in the log (141.142.0.0)"),
    ("javascript.log-delay", "the log has no HTTP fields"),
];

const FIELDS: &[&str] = &[
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "trans_depth",
    "method",
    "host",
    "uri",
    "status_code",
    "request_body_len",
    "response_body_len",
];

/// Zeek's escaping of bytes outside printable ASCII.
fn zeek_escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if (0x20..0x7f).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

/// Zeek's logged text back to bytes (`\xNN` escapes, `\\` in JSON logs).
fn zeek_unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Does our transaction agree with Zeek's `value` for `field`?
fn field_matches(t: &Transaction, field: &str, value: &str) -> bool {
    let req = t.request.as_ref();
    let resp = t.response.as_ref();
    let text = |b: &[u8]| -> bool {
        let ours = if field == "uri" { percent_decode(b) } else { b.to_vec() };
        if ours.is_empty() {
            return value == "(empty)";
        }
        ours == zeek_unescape(value) || zeek_escape(&ours) == value || String::from_utf8_lossy(&ours) == value
    };
    match field {
        "id.orig_h" => t.client.0.to_string() == value,
        "id.orig_p" => t.client.1.to_string() == value,
        "id.resp_h" => t.server.0.to_string() == value,
        "id.resp_p" => t.server.1.to_string() == value,
        "trans_depth" => t.trans_depth.to_string() == value,
        "method" => req.map_or(value == "-", |r| text(r.method())),
        "uri" => req.map_or(value == "-", |r| text(r.uri())),
        "host" => match req.and_then(|r| r.host()) {
            None => value == "-",
            Some(h) => text(h),
        },
        "status_code" => resp.map_or(value == "-", |r| r.status.to_string() == value),
        "request_body_len" => req.map_or(0, |r| r.msg.body.len).to_string() == value,
        "response_body_len" => resp.map_or(0, |r| r.msg.body.len).to_string() == value,
        _ => false,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Traces a baseline reads: listed, or named in its command lines.
fn traces_of(row: &Value, mapping: &HashMap<String, Value>) -> Vec<String> {
    let listed: Vec<String> =
        row["traces"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
    if !listed.is_empty() {
        return listed;
    }
    let baseline = row["baseline"].as_str().unwrap_or_default();
    for cmd in mapping.get(baseline).and_then(|m| m["test_exec"].as_array()).into_iter().flatten() {
        let c = cmd.as_str().unwrap_or_default();
        for marker in ["$TRACES/", "${TRACES}/"] {
            if let Some(i) = c.find(marker) {
                let rest = &c[i + marker.len()..];
                let end = rest.find(|ch: char| ch.is_whitespace()).unwrap_or(rest.len());
                return vec![rest[..end].to_string()];
            }
        }
    }
    Vec::new()
}

#[test]
fn zeek_http_conformance() {
    let Some(shared) = shared_dir() else {
        skip_or_fail("../shared is not present (conformance traces)");
        return;
    };
    let dir = shared.join("conformance/zeek-http");
    let mapping: HashMap<String, Value> = std::fs::read_to_string(dir.join("mapping.jsonl"))
        .expect("mapping.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("mapping line"))
        .map(|v| (v["baseline"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    let rows: Vec<Value> = std::fs::read_to_string(dir.join("expected_http_log.jsonl"))
        .expect("expected_http_log.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();

    let mut cache: BTreeMap<Vec<String>, Vec<Transaction>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut index_in_group: HashMap<String, usize> = HashMap::new();
    let (mut total, mut matched) = (0usize, 0usize);
    let mut mismatches: BTreeMap<String, String> = BTreeMap::new();
    let mut left_out: BTreeMap<String, String> = BTreeMap::new();

    for row in &rows {
        let baseline = row["baseline"].as_str().unwrap_or_default();
        let group = format!("{baseline}/{}", row["log_file"].as_str().unwrap_or_default());
        let n = index_in_group.entry(group.clone()).or_default();
        *n += 1;
        let key = format!("{group}#{n}");
        if let Some((_, why)) = EXCLUDED.iter().find(|(b, _)| *b == baseline) {
            left_out.insert(baseline.to_string(), why.to_string());
            continue;
        }
        let traces = traces_of(row, &mapping);
        let paths: Vec<PathBuf> = traces.iter().map(|t| dir.join("traces").join(t)).collect();
        if traces.is_empty() || paths.iter().any(|p| !p.exists()) {
            left_out.insert(baseline.to_string(), format!("trace {traces:?} is not among the shared traces"));
            continue;
        }
        let fields: Vec<(&str, String)> =
            FIELDS.iter().filter_map(|f| row["row"].get(*f).map(|v| (*f, as_text(v)))).collect();
        if !fields.iter().any(|(f, _)| matches!(*f, "method" | "uri" | "status_code")) {
            left_out.insert(baseline.to_string(), "the log has no HTTP fields".into());
            continue;
        }
        if !seen.insert((traces.clone(), fields.clone())) {
            continue; // the same transaction, logged by another baseline
        }
        total += 1;
        let ours = cache.entry(traces.clone()).or_insert_with(|| replay(&paths, EngineConfig::default()).0);
        if ours.iter().any(|t| fields.iter().all(|(f, v)| field_matches(t, f, v))) {
            matched += 1;
        } else {
            let want: Vec<String> = fields.iter().map(|(f, v)| format!("{f}={v}")).collect();
            mismatches.insert(key, format!("{} | zeek: {}", traces.join(","), want.join(" ")));
        }
    }

    let share = matched as f64 / total.max(1) as f64;
    println!("Zeek conformance: {matched} of {total} reference transactions matched exactly ({:.1}%)", share * 100.0);
    for (b, why) in &left_out {
        println!("  left out {b}: {why}");
    }

    let explained_text = std::fs::read_to_string(apiwatch_tests::root().join("tests/tests/conformance_mismatches.md"))
        .expect("tests/tests/conformance_mismatches.md");
    let explained: BTreeSet<String> = explained_text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains('#') && s.contains(".log") && !s.contains(' '))
        .map(String::from)
        .collect();
    let unexplained: Vec<_> = mismatches.iter().filter(|(k, _)| !explained.contains(*k)).collect();
    let stale: Vec<_> = explained.iter().filter(|k| !mismatches.contains_key(*k)).collect();
    for (k, d) in &mismatches {
        println!("  mismatch {k}: {d}");
    }
    assert!(unexplained.is_empty(), "mismatches not explained in conformance_mismatches.md: {unexplained:#?}");
    assert!(stale.is_empty(), "conformance_mismatches.md lists rows that now match (remove them): {stale:#?}");
    assert!(total >= 200, "only {total} reference transactions compared: traces missing?");
    assert!(share >= 0.88, "conformance fell to {:.1}%", share * 100.0);
}
