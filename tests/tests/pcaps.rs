//! Replays of the captures in pcaps/ (made by `cargo xtask capture` from real programs).
//!
//! - Every capture's output is compared byte for byte with `<capture>.expected.jsonl`
//!   (regenerate with `cargo xtask bless` and review the diff).
//! - Independently of those files, our transactions must be exactly the requests the
//!   clients logged having made (`<capture>.client.log`: method, URL, status).
//! - The damaged variants must give what the intact capture gives, or degrade as stated.

use apiwatch::engine::EngineConfig;
use apiwatch::replay::{replay as run_replay, InventoryOptions, ReplayOptions};
use apiwatch_model::{Flags, RenderOptions, Transaction};
use apiwatch_tests::{replay, root, skip_or_fail};
use std::path::{Path, PathBuf};

fn pcaps() -> PathBuf {
    root().join("pcaps")
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("pcaps dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".pcap.gz")
        })
        .collect();
    v.sort();
    v
}

/// What `apiwatch replay` writes for `files`, and the error it stopped on.
fn cli_output(files: &[PathBuf], workers: usize) -> (String, Option<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let opts = ReplayOptions {
        files: files.to_vec(),
        output: Some(out.clone()),
        engine: EngineConfig::default(),
        render: RenderOptions::default(),
        workers,
        progress: false,
        // As the command line does by default: inventory and sensitive-data records follow
        // the transactions...
        inventory: Some(InventoryOptions {
            cfg: Default::default(),
            observe: Default::default(),
            sensitive: apiwatch::config::ClassifySection::default().build(None, true).expect("default classifier"),
            state: None,
        }),
        // And detection records, as the command line does by default.
        detect: apiwatch::config::DetectSection::default().build(),
        remotes: Vec::new(),
        remote_state: None,
        drain: std::time::Duration::ZERO,
    };
    let report = run_replay(&opts).expect("replay runs");
    (std::fs::read_to_string(out).expect("output"), report.error.map(|e| format!("{e:#}")))
}

fn expected_of(cap: &Path) -> PathBuf {
    cap.with_file_name(format!("{}.expected.jsonl", cap.file_name().unwrap().to_string_lossy()))
}

#[test]
fn outputs_match_blessed_expectations() {
    let caps = captures(&pcaps());
    assert!(caps.len() >= 9, "pcaps/ lost its captures: {caps:?}");
    for cap in caps {
        let want = std::fs::read_to_string(expected_of(&cap))
            .unwrap_or_else(|_| panic!("{} has no expected output", cap.display()));
        let (got, _) = cli_output(std::slice::from_ref(&cap), 1);
        if got != want {
            let first = got.lines().zip(want.lines()).position(|(a, b)| a != b);
            panic!(
                "{}: output differs from its .expected.jsonl (line {:?}; {} vs {} lines). Run `cargo xtask bless` if the change is intended.",
                cap.display(),
                first.map(|i| i + 1),
                got.lines().count(),
                want.lines().count()
            );
        }
    }
}

#[test]
fn sharded_workers_give_the_same_output_every_time() {
    let cap = pcaps().join("api-keepalive.pcap");
    let (one, _) = cli_output(std::slice::from_ref(&cap), 1);
    let (two_a, _) = cli_output(std::slice::from_ref(&cap), 2);
    let (two_b, _) = cli_output(std::slice::from_ref(&cap), 2);
    assert_eq!(two_a, two_b, "two sharded runs differ");
    assert_eq!(one, two_a, "sharded output differs from the single-thread output");
    // All captures together, as one input, with three workers.
    let all: Vec<PathBuf> =
        captures(&pcaps()).into_iter().filter(|p| !p.to_string_lossy().contains("truncated")).collect();
    let (a, _) = cli_output(&all, 1);
    let (b, _) = cli_output(&all, 3);
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&a), sorted(&b), "the same records, whatever the worker count");
}

/// (method, path and query, status) of each transaction.
fn triples(txs: &[Transaction]) -> Vec<(String, String, u16)> {
    let mut v: Vec<_> = txs
        .iter()
        .map(|t| {
            let r = t.request.as_ref().expect("every transaction here has a request");
            (
                String::from_utf8_lossy(r.method()).into_owned(),
                String::from_utf8_lossy(r.uri()).into_owned(),
                t.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    v.sort();
    v
}

/// The client log as (method, path and query, status), without requests made before the
/// recording started.
fn client_log(path: &Path) -> Vec<(String, String, u16)> {
    let text = std::fs::read_to_string(path).expect("client log");
    let mut v: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("before-capture"))
        .map(|l| {
            let mut it = l.split_whitespace();
            let m = it.next().expect("method").to_string();
            let url = it.next().expect("url");
            let path = match url.find("://") {
                Some(i) => url[i + 3..].find('/').map(|j| url[i + 3 + j..].to_string()).unwrap_or_else(|| "/".into()),
                None => url.to_string(),
            };
            (m, path, it.next().expect("status").parse().expect("numeric status"))
        })
        .collect();
    v.sort();
    v
}

fn check_client_logs(dir: &Path) -> usize {
    let mut checked = 0;
    for cap in captures(dir) {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let base = name.split('.').next().unwrap().to_string();
        let log = dir.join(format!("{base}.client.log"));
        if !log.exists() || name.contains(".dropped.") || name.contains(".truncated.") {
            continue;
        }
        let (txs, stats, err) = replay(std::slice::from_ref(&cap), EngineConfig::default());
        assert!(err.is_none(), "{name}: {err:?}");
        assert_eq!(triples(&txs), client_log(&log), "{name}: transactions differ from what the client did");
        for t in &txs {
            let bad = t.flags.has(Flags::GAP) || t.flags.has(Flags::TRUNCATED) || t.flags.has(Flags::PARSE_ERROR);
            assert!(!bad, "{name}: clean traffic gave flags {:?}", t.flags.names().collect::<Vec<_>>());
        }
        assert_eq!(stats.flows.gaps, 0, "{name}: gaps in an intact capture");
        checked += 1;
    }
    checked
}

#[test]
fn transactions_are_what_the_clients_did() {
    assert!(check_client_logs(&pcaps()) >= 6);
}

/// Run by `cargo xtask test` after it made new captures from real programs.
#[test]
fn fresh_captures() {
    match std::env::var_os("APIWATCH_CAPTURE_DIR") {
        Some(dir) => {
            let n = check_client_logs(Path::new(&dir));
            assert!(n >= 6, "only {n} fresh captures checked");
            println!("checked {n} fresh captures in {}", PathBuf::from(dir).display());
        }
        None => skip_or_fail_unless_ci_runs_it(),
    }
}

fn skip_or_fail_unless_ci_runs_it() {
    // Under CI the xtask runs this test again with APIWATCH_CAPTURE_DIR set; here it only
    // says why it did nothing.
    eprintln!("SKIPPED: APIWATCH_CAPTURE_DIR not set (cargo xtask test sets it after capturing)");
}

fn original() -> Vec<Transaction> {
    replay(&[pcaps().join("api-keepalive.pcap")], EngineConfig::default()).0
}

fn render_all(txs: &[Transaction]) -> Vec<String> {
    txs.iter()
        .map(|t| {
            let mut s = Vec::new();
            t.render(&RenderOptions::default(), &mut s);
            String::from_utf8(s).expect("records are UTF-8")
        })
        .collect()
}

#[test]
fn duplicated_and_reordered_segments_change_nothing() {
    // Reordering moves segment contents but keeps the file's timestamps in order, so a
    // response can really arrive later: latencies may differ, nothing else.
    let without_timing = |lines: Vec<String>| -> Vec<serde_json::Value> {
        lines
            .iter()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("latency_us");
                v.as_object_mut().unwrap().remove("duration_us");
                v
            })
            .collect()
    };
    let want = render_all(&original());
    for variant in ["duplicated", "reordered"] {
        let (txs, stats, err) =
            replay(&[pcaps().join(format!("api-keepalive.{variant}.pcap"))], EngineConfig::default());
        assert!(err.is_none());
        if variant == "duplicated" {
            assert_eq!(render_all(&txs), want, "{variant}: transactions differ from the intact capture");
        } else {
            assert_eq!(
                without_timing(render_all(&txs)),
                without_timing(want.clone()),
                "{variant}: transactions differ"
            );
        }
        assert_eq!(stats.flows.gaps, 0, "{variant}: no byte is missing, so no gap");
        if variant == "duplicated" {
            assert!(stats.flows.bytes_retransmitted > 0);
        } else {
            assert!(stats.flows.segments_out_of_order > 0);
        }
    }
}

#[test]
fn dropped_segments_become_gaps_and_nothing_unflagged_is_wrong() {
    let orig = original();
    let (txs, stats, err) = replay(&[pcaps().join("api-keepalive.dropped.pcap")], EngineConfig::default());
    assert!(err.is_none());
    assert_eq!(stats.flows.gaps, 3, "three segments were dropped");
    // The answer the intact capture gives for each request.
    let truth: std::collections::HashMap<(Vec<u8>, Vec<u8>), (u16, u64)> = orig
        .iter()
        .map(|t| {
            let q = t.request.as_ref().unwrap();
            let r = t.response.as_ref().unwrap();
            ((q.method().to_vec(), q.uri().to_vec()), (r.status, r.msg.body.transfer_len))
        })
        .collect();
    let mut reported = 0;
    for t in &txs {
        let uncertain = t.flags.has(Flags::GAP) || t.flags.has(Flags::NO_RESPONSE) || t.flags.has(Flags::NO_REQUEST);
        match (&t.request, &t.response) {
            (Some(q), Some(r)) => {
                reported += 1;
                let want = truth[&(q.method().to_vec(), q.uri().to_vec())];
                if !uncertain {
                    assert_eq!((r.status, r.msg.body.transfer_len), want, "an unflagged transaction must be right");
                }
            }
            (Some(_), None) => assert!(t.flags.has(Flags::NO_RESPONSE)),
            (None, Some(_)) => assert!(t.flags.has(Flags::NO_REQUEST)),
            (None, None) => panic!("empty transaction"),
        }
    }
    assert!(reported >= orig.len() - 3, "at most one request per dropped segment is lost");
    assert!(txs.iter().any(|t| t.flags.has(Flags::GAP)));
}

#[test]
fn truncated_file_reports_the_offset_and_keeps_what_came_before() {
    let cap = pcaps().join("api-keepalive.truncated.pcap");
    let (out, err) = cli_output(std::slice::from_ref(&cap), 1);
    let err = err.expect("a truncated file is an error");
    assert!(err.contains("api-keepalive.truncated.pcap") && err.contains("at byte offset"), "{err}");
    let offset: u64 = err.split("at byte offset ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    let len = std::fs::metadata(&cap).unwrap().len();
    assert!(offset < len && offset > len / 2, "offset {offset} of {len}");
    let want = render_all(&original());
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("{\"kind\":\"transaction\"")).collect();
    assert_eq!(got.len(), want.len(), "all requests before the cut are reported");
    let inventory = out.lines().filter(|l| l.starts_with("{\"kind\":\"inventory\"")).count();
    assert!(inventory >= 10, "the inventory of what was read is reported too ({inventory} records)");
    // Everything complete before the cut is exactly as in the intact capture.
    for (g, w) in got.iter().zip(&want).take(want.len() - 1) {
        assert_eq!(g, w);
    }
    assert!(got.last().unwrap().contains("\"truncated\""), "the response cut by the damage is flagged");
}

#[test]
fn garbage_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let (out, err) = cli_output(&[junk], 1);
    assert!(out.is_empty());
    let err = err.unwrap();
    assert!(err.contains("junk.pcap") && err.contains("not a pcap or pcapng file"), "{err}");
    // Random bytes after a valid header: no panic, an error with an offset.
    let mut f = std::fs::read(pcaps().join("any-device.pcap")).unwrap();
    let mut x: u32 = 7;
    for b in f.iter_mut().skip(200) {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let scrambled = dir.path().join("scrambled.pcap");
    std::fs::write(&scrambled, f).unwrap();
    let (_, err) = cli_output(&[scrambled], 1);
    assert!(err.unwrap_or_default().contains("at byte offset"));
}

#[test]
fn skip_helper_is_exercised() {
    // `skip_or_fail` is what tests call when a prerequisite is missing: under CI it must
    // fail, never skip silently.
    if apiwatch_tests::in_ci() {
        assert!(std::panic::catch_unwind(|| skip_or_fail("x")).is_err());
    } else {
        skip_or_fail("demonstration: outside CI this prints SKIPPED");
    }
}

#[test]
fn hostile_traffic_is_reported_within_the_caps() {
    let cap = pcaps().join("hostile.pcap");
    let attacks = std::fs::read_to_string(pcaps().join("hostile.attacks.log")).unwrap();
    for cfg in [EngineConfig::default(), tight()] {
        let (txs, stats, err) = replay(std::slice::from_ref(&cap), cfg.clone());
        assert!(err.is_none());
        // One transaction per attack, with the status the attacking client saw.
        let mut got: Vec<String> =
            txs.iter().map(|t| t.response.as_ref().map_or("closed".into(), |r| r.status.to_string())).collect();
        let mut want: Vec<String> = attacks.lines().map(|l| l.split_whitespace().nth(1).unwrap().to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // Every one of them says what was wrong with it, except the well-formed last one.
        let clean = txs.iter().filter(|t| t.flags == Flags::default()).count();
        assert_eq!(clean, 1, "{:?}", txs.iter().map(|t| t.flags.names().collect::<Vec<_>>()).collect::<Vec<_>>());
        assert!(txs.iter().any(|t| t.flags.has(Flags::OVERSIZED_HEADERS)));
        assert!(stats.http.oversized_heads >= 1 && stats.http.parse_errors >= 3);
        // Memory held stayed within the caps.
        assert!(stats.http.sample_bytes_peak <= 2 * cfg.http.body_sample_bytes as u64);
        assert_eq!(stats.http.sample_bytes_now, 0);
        assert_eq!(stats.flows.ooo_bytes_now, 0);
    }
}

/// Small caps, to see them hold.
fn tight() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.http.max_header_bytes = 4096;
    c.http.body_sample_bytes = 1024;
    c.flow.max_ooo_per_flow = 8192;
    c
}

#[test]
fn vlan_captures_really_carry_tags() {
    for (file, ethertype) in [("vlan.pcap", [0x81, 0x00]), ("qinq.pcap", [0x88, 0xa8])] {
        let cap = apiwatch::capture::CaptureFile::open(&pcaps().join(file)).unwrap();
        let frames: Vec<_> =
            apiwatch::capture::file::Reader::new(cap.bytes()).unwrap().map(|p| p.unwrap().data.to_vec()).collect();
        let tagged = frames.iter().filter(|f| f.get(12..14) == Some(&ethertype[..])).count();
        assert!(tagged * 10 >= frames.len() * 9, "{file}: {tagged} of {} frames tagged", frames.len());
    }
}
