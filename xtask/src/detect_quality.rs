//! `cargo xtask detect-quality [--per-op N] [--benign-rounds N] [--reuse]`: how well the detections
//! do on traffic nobody here wrote.
//!
//! In the test lab, `xtask/assets/vuln_api.py` (a deliberately vulnerable JSON API) and
//! `any_server.py` serve; from the client namespace, one phase after another, each from a
//! source address of its own:
//! - benign clients: ordinary use of the vulnerable API (`detect_client.py benign`), and
//!   requests generated from the OpenAPI documents of ../shared/openapi (as
//!   inventory-quality makes them) against `any_server.py`;
//! - attack tools from Debian: sqlmap, wfuzz with its own injection wordlists (SQL, XSS,
//!   traversal), ffuf spraying paths, hydra brute-forcing a login form and Basic auth;
//! - our attack scripts for the categories no tool here covers (`detect_client.py attack`).
//!
//! tcpdump records it all; apiwatch replays the capture twice: as configured by default (the
//! findings a user gets), and with every occurrence reported (`detect.window_secs = 0`) to
//! count, per transaction, what was flagged. Printed per phase: transactions, transactions
//! flagged with the expected detection (recall), and the findings a user would see; for the
//! benign phases, findings of attack detections per 100,000 transactions (false findings).
//! A third replay with baselines that learn for a minute instead of half an hour shows what
//! the behaviour detections say about the benign traffic. `--reuse` scores the capture of
//! the last run again.
//! Posture findings on benign traffic (versions in headers, credentials over cleartext,
//! tokens without expiry or with weak secrets) are true of that traffic and listed apart.

use crate::capture::{record_tcpdump, spawn, wait_listening};
use anyhow::{bail, Context, Result};
use apiwatch_testlab::{self as netns, Lab};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Detections that describe how an API is set up rather than an attack: on benign traffic
/// they are findings about the API, not false alarms.
const POSTURE: &[&str] = &[
    "version_disclosure",
    "cleartext_credentials",
    "jwt_no_expiry",
    "jwt_weak_secret",
    "error_leak",
    "credentials_in_url",
    // An endpoint that answers anyone with sensitive data (as the test servers do): true of
    // the API. Unauthenticated successes where credentials are the rule stay attacks.
    "unauthenticated_access:sensitive_data",
];

/// A finding's name for the report: unauthenticated access split by why it was raised.
fn reported_name(r: &serde_json::Value) -> String {
    let det = r["detection"].as_str().unwrap_or("");
    let usual = r["signs"].as_array().is_some_and(|s| s.iter().any(|x| x == "usually_authenticated"));
    if det == "unauthenticated_access" && !usual {
        "unauthenticated_access:sensitive_data".into()
    } else {
        det.into()
    }
}

struct Phase {
    name: &'static str,
    /// Benign traffic, or the detections an attack phase should raise.
    expect: &'static [&'static str],
    /// Every request of the phase is an attack (scripts, wordlists): recall applies. Tools
    /// that also send ordinary requests (sqlmap's baselines, hydra, ffuf) are judged on the
    /// findings raised.
    every_request: bool,
    /// Wordlists mix attacks with bare characters and keywords (`'`, `asc`, `select`) that
    /// probe for errors: libinjection, an independent peer, says which requests are
    /// injections of this kind, and recall is also given over those.
    oracle: Option<&'static str>,
}

const PHASES: &[Phase] = &[
    Phase { name: "benign-api", expect: &[], every_request: false, oracle: None },
    Phase { name: "benign-specs", expect: &[], every_request: false, oracle: None },
    Phase { name: "sqlmap", expect: &["sql_injection", "scanner_user_agent"], every_request: false, oracle: None },
    Phase { name: "wfuzz-sql", expect: &["sql_injection"], every_request: true, oracle: Some("sqli") },
    Phase { name: "wfuzz-xss", expect: &["xss"], every_request: true, oracle: Some("xss") },
    Phase { name: "wfuzz-traversal", expect: &["path_traversal"], every_request: true, oracle: None },
    Phase { name: "ffuf-paths", expect: &["endpoint_spray"], every_request: false, oracle: None },
    Phase {
        name: "hydra-form",
        expect: &["brute_force", "credential_stuffing", "brute_force_success"],
        every_request: false,
        oracle: None,
    },
    Phase { name: "hydra-basic", expect: &["brute_force", "brute_force_success"], every_request: false, oracle: None },
    Phase { name: "command", expect: &["command_injection"], every_request: true, oracle: None },
    Phase { name: "template", expect: &["template_injection"], every_request: true, oracle: None },
    Phase { name: "nosql", expect: &["nosql_injection"], every_request: true, oracle: None },
    Phase { name: "xxe", expect: &["xxe"], every_request: true, oracle: None },
    Phase { name: "ldap", expect: &["ldap_injection"], every_request: true, oracle: None },
    Phase { name: "ssrf", expect: &["ssrf"], every_request: true, oracle: None },
    Phase { name: "jndi", expect: &["jndi_lookup"], every_request: true, oracle: None },
    Phase {
        name: "jwt",
        expect: &["jwt_alg_none", "jwt_expired_accepted", "jwt_weak_secret"],
        every_request: true,
        oracle: None,
    },
    Phase { name: "smuggling", expect: &["request_smuggling", "malformed_request"], every_request: true, oracle: None },
    Phase { name: "credentials_in_url", expect: &["credentials_in_url"], every_request: true, oracle: None },
];

const API_PORT: u16 = 8091;
const SPEC_PORT: u16 = 8090;

fn client_ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// `reuse`: score the capture of an earlier run again (after a change to the detections)
/// instead of making a new one.
pub fn run(root: &Path, per_op: usize, benign_rounds: usize, reuse: bool) -> Result<()> {
    let out_dir = root.join("target/detect-quality");
    let pcap = out_dir.join("detect-quality.pcap");
    let assets = root.join("xtask/assets");
    let oracle = libinjection(root);
    let apiwatch = crate::release_binary(root)?;
    if !(reuse && pcap.exists()) {
        netns::available().map_err(anyhow::Error::msg)?;
        install_tools()?;
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir)?;
        capture(root, &out_dir, &assets, per_op, benign_rounds)?;
    }

    // Replays: as a user gets it, and every occurrence.
    let every = out_dir.join("every.toml");
    std::fs::write(&every, "[detect]\nwindow_secs = 0\n")?;
    let default_out = out_dir.join("default.jsonl");
    let every_out = out_dir.join("every.jsonl");
    crate::run(Command::new(&apiwatch).args(["replay", "-q", "-o"]).arg(&default_out).arg(&pcap))?;
    crate::run(
        Command::new(&apiwatch).args(["replay", "-q", "--config"]).arg(&every).arg("-o").arg(&every_out).arg(&pcap),
    )?;
    // Baselines learn for half an hour by default, longer than this run: a third replay
    // with short learning shows what they say about the benign traffic once learned.
    let short = out_dir.join("short-learning.toml");
    std::fs::write(&short, "[detect]\nlearning_secs = 60\nmin_samples = 20\nunseen_after_calls = 50\n")?;
    let short_out = out_dir.join("short-learning.jsonl");
    crate::run(
        Command::new(&apiwatch).args(["replay", "-q", "--config"]).arg(&short).arg("-o").arg(&short_out).arg(&pcap),
    )?;
    report(&default_out, &every_out, oracle.as_deref(), &assets)?;
    short_learning(&short_out)
}

/// Findings about the benign phases' clients with short learning, by detection.
fn short_learning(path: &Path) -> Result<()> {
    let phase_of = |ip: &str| (0..PHASES.len()).find(|&i| client_ip(i) == ip);
    let (mut txs, mut by) = (0u64, BTreeMap::<String, u64>::new());
    for r in records(path)? {
        let benign = r["client"]["ip"]
            .as_str()
            .or(r["actor"]["ip"].as_str())
            .and_then(phase_of)
            .is_some_and(|p| PHASES[p].expect.is_empty());
        if !benign {
            continue;
        }
        match (r["kind"].as_str(), r["event"].as_str()) {
            (Some("transaction"), _) => txs += 1,
            (Some("detection"), Some("new")) => *by.entry(reported_name(&r)).or_default() += 1,
            _ => {}
        }
    }
    let behaviour: u64 = by.iter().filter(|(k, _)| !POSTURE.contains(&k.as_str())).map(|(_, v)| v).sum();
    println!(
        "\nwith baselines learned after 60 s (learning_secs = 60, min_samples = 20, unseen_after_calls = 50): {behaviour} findings other than posture on {txs} benign transactions ({:.1} per 100,000): {by:?}",
        behaviour as f64 * 100_000.0 / txs.max(1) as f64
    );
    Ok(())
}

/// Runs the phases in the lab and records them in `out_dir/detect-quality.pcap`.
fn capture(root: &Path, out_dir: &Path, assets: &Path, per_op: usize, benign_rounds: usize) -> Result<()> {
    let lab = Lab::new()?;
    let mut api = lab.cmd(&lab.srv, "python3");
    api.arg(assets.join("vuln_api.py")).args([netns::SRV4, &API_PORT.to_string()]);
    let _api = spawn(api, "vuln_api")?;
    let mut any = lab.cmd(&lab.srv, "python3");
    any.arg(assets.join("any_server.py")).args([netns::SRV4, &SPEC_PORT.to_string()]);
    let _any = spawn(any, "any_server")?;
    wait_listening(&lab, &lab.srv, API_PORT)?;
    wait_listening(&lab, &lab.srv, SPEC_PORT)?;
    for i in 0..PHASES.len() {
        let ip = client_ip(i);
        lab_ip(&lab, &["addr", "add", &format!("{ip}/24"), "dev", &lab.cli_if])?;
    }
    let pcap = out_dir.join("detect-quality.pcap");
    let rec = record_tcpdump(
        &lab,
        &["-i", &lab.srv_if],
        &pcap,
        Some(&format!("tcp port {API_PORT} or tcp port {SPEC_PORT}")),
    )?;
    let base = format!("http://{}:{API_PORT}", netns::SRV4);
    let lists = out_dir.join("lists");
    std::fs::create_dir_all(&lists)?;
    std::fs::write(lists.join("users.txt"), "root\nadmin\nguest\ntest\nalice\nbob\noperator\nuser\nsupport\nbackup\n")?;
    std::fs::write(
        lists.join("passwords.txt"),
        "123456\npassword\nqwerty\nletmein\nadmin\nwelcome\nwonderland\nmonkey\ndragon\nbuilder\n",
    )?;
    let wordlists = Path::new("/usr/share/wfuzz/wordlist");
    for (i, phase) in PHASES.iter().enumerate() {
        let ip = client_ip(i);
        // New connections leave from this phase's address.
        lab_ip(&lab, &["route", "replace", "10.77.0.0/24", "dev", &lab.cli_if, "src", &ip])?;
        let t0 = std::time::Instant::now();
        let mut c = match phase.name {
            "benign-api" => {
                let mut c = lab.cmd(&lab.cli, "python3");
                c.arg(assets.join("detect_client.py")).args([netns::SRV4, &API_PORT.to_string(), "benign"]);
                c.arg(benign_rounds.to_string());
                c
            }
            "benign-specs" => {
                let shared = root.join("../shared/openapi");
                let mut lines = Vec::new();
                for (k, rel) in crate::quality::DEFAULT_SPECS.iter().enumerate() {
                    lines.extend(crate::quality::generate(&shared, rel, 0xdec0 + k as u64, per_op)?.lines);
                }
                let listing = out_dir.join("benign-specs.requests");
                std::fs::write(&listing, lines.join("\n") + "\n")?;
                let mut c = lab.cmd(&lab.cli, "python3");
                c.arg(assets.join("list_client.py")).args([netns::SRV4, &SPEC_PORT.to_string()]).arg(&listing);
                c
            }
            "sqlmap" => {
                let mut c = lab.cmd(&lab.cli, "timeout");
                c.args(["300", "sqlmap", "-u", &format!("{base}/api/users?id=1"), "--batch", "--flush-session"]);
                c.args(["--level", "2", "--tables", "--output-dir"]).arg(out_dir.join("sqlmap"));
                c
            }
            "wfuzz-sql" | "wfuzz-xss" | "wfuzz-traversal" => {
                let (list, url) = match phase.name {
                    "wfuzz-sql" => ("Injections/SQL.txt", format!("{base}/api/search?q=FUZZ")),
                    "wfuzz-xss" => ("Injections/XSS.txt", format!("{base}/api/render?template=FUZZ")),
                    _ => ("Injections/Traversal.txt", format!("{base}/api/files?name=FUZZ")),
                };
                let mut c = lab.cmd(&lab.cli, "wfuzz");
                c.args(["-z"]).arg(format!("file,{}", wordlists.join(list).display())).args(["-t", "4", &url]);
                c
            }
            "ffuf-paths" => {
                let mut c = lab.cmd(&lab.cli, "ffuf");
                c.args(["-s", "-t", "8", "-u", &format!("{base}/FUZZ"), "-w"])
                    .arg(wordlists.join("general/common.txt"));
                c
            }
            "hydra-form" => {
                let mut c = lab.cmd(&lab.cli, "hydra");
                c.args(["-I", "-t", "4", "-L"]).arg(lists.join("users.txt")).arg("-P").arg(lists.join("passwords.txt"));
                c.args(["-s", &API_PORT.to_string(), netns::SRV4, "http-post-form"]);
                c.arg("/api/login:username=^USER^&password=^PASS^:F=invalid credentials");
                c
            }
            "hydra-basic" => {
                let mut c = lab.cmd(&lab.cli, "hydra");
                c.args(["-I", "-t", "4", "-L"]).arg(lists.join("users.txt")).arg("-P").arg(lists.join("passwords.txt"));
                c.args(["-s", &API_PORT.to_string(), netns::SRV4, "http-get", "/api/admin"]);
                c
            }
            cat => {
                let mut c = lab.cmd(&lab.cli, "python3");
                c.arg(assets.join("detect_client.py")).args([netns::SRV4, &API_PORT.to_string(), "attack", cat]);
                c
            }
        };
        let o = c.stdin(Stdio::null()).output().with_context(|| format!("phase {}", phase.name))?;
        let log = out_dir.join(format!("{}.log", phase.name));
        std::fs::write(&log, [o.stdout.as_slice(), b"\n--- stderr\n", o.stderr.as_slice()].concat())?;
        println!(
            "  phase {:<20} from {ip:<12} {:>6.1} s (exit {:?}; log {})",
            phase.name,
            t0.elapsed().as_secs_f64(),
            o.status.code(),
            log.display()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    rec.stop()?;
    drop(lab);
    Ok(())
}

/// The attack tools come from Debian's packages; the test set-up does not need them, so
/// they are installed here when missing.
fn install_tools() -> Result<()> {
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = ["sqlmap", "wfuzz", "ffuf", "hydra", "tcpdump"].into_iter().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing {} (apt-get)", missing.join(" "));
    let st = Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing).status();
    if !st.is_ok_and(|s| s.success()) {
        bail!("could not install {} with apt-get (run as root, or install them)", missing.join(" "));
    }
    Ok(())
}

/// A virtualenv under target/ with libinjection-python (from PyPI) to label wordlist
/// requests; None, with the reason printed, when it cannot be made.
fn libinjection(root: &Path) -> Option<std::path::PathBuf> {
    crate::python_with(&root.join("target/venv-libinjection"), "libinjection", "libinjection-python==1.1.6")
        .map_err(|e| {
            println!("note: libinjection-python could not be installed ({e:#}); recall over its labels is left out")
        })
        .ok()
}

/// libinjection's verdict on each (check, uri).
fn label(python: &Path, assets: &Path, items: &[(&str, &str)]) -> Result<Vec<bool>> {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg(assets.join("libinjection_label.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("libinjection labeler")?;
    let mut input = String::new();
    for (check, uri) in items {
        input.push_str(&serde_json::json!({"check": check, "uri": uri}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().context("labeler stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let o = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("labeler writer"))??;
    let out: Vec<bool> = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim() == "1").collect();
    if !o.status.success() || out.len() != items.len() {
        bail!("libinjection labeler failed ({} of {} answers)", out.len(), items.len());
    }
    Ok(out)
}

fn lab_ip(lab: &Lab, args: &[&str]) -> Result<()> {
    let o = Command::new("ip").args(["-n", &lab.cli]).args(args).output()?;
    if !o.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

fn records(path: &Path) -> Result<Vec<serde_json::Value>> {
    Ok(std::fs::read_to_string(path)?.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

fn report(default_out: &Path, every_out: &Path, oracle: Option<&Path>, assets: &Path) -> Result<()> {
    let phase_of = |ip: &str| (0..PHASES.len()).find(|&i| client_ip(i) == ip);
    // Transactions per phase, and per phase the transactions (by time) flagged with each
    // detection.
    let every = records(every_out)?;
    let mut txs = vec![0u64; PHASES.len()];
    // (ts, uri) of each transaction of the phases with an oracle.
    let mut sent: Vec<Vec<(String, String)>> = vec![Vec::new(); PHASES.len()];
    let mut flagged: Vec<BTreeMap<String, BTreeSet<String>>> = vec![BTreeMap::new(); PHASES.len()];
    for r in &every {
        match r["kind"].as_str() {
            Some("transaction") => {
                if let Some(p) = r["client"]["ip"].as_str().and_then(phase_of) {
                    txs[p] += 1;
                    if PHASES[p].oracle.is_some() {
                        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                        sent[p].push((s(&r["ts"]), s(&r["request"]["uri"])));
                    }
                }
            }
            Some("detection") => {
                if let Some(p) = r["actor"]["ip"].as_str().and_then(phase_of) {
                    let det = reported_name(r);
                    flagged[p].entry(det).or_default().insert(r["ts"].as_str().unwrap_or("").to_string());
                }
            }
            _ => {}
        }
    }
    let mut findings: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); PHASES.len()];
    for r in records(default_out)? {
        if r["kind"] == "detection" && r["event"] == "new" {
            if let Some(p) = r["actor"]["ip"].as_str().and_then(phase_of) {
                *findings[p].entry(reported_name(&r)).or_default() += 1;
            }
        }
    }
    println!(
        "\n{:<20} {:>7} {:>9} {:>8}  findings a user gets (default settings)",
        "phase", "txs", "flagged", "recall"
    );
    let mut worst: Option<(f64, &str)> = None;
    let mut missed_campaigns = Vec::new();
    let mut benign_txs = 0u64;
    let mut false_occ = 0u64;
    let mut false_findings = 0u64;
    let mut posture: BTreeMap<String, u64> = BTreeMap::new();
    let mut false_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut oracle_recalls: Vec<(f64, &str)> = Vec::new();
    for (i, p) in PHASES.iter().enumerate() {
        let shown: Vec<String> = findings[i].iter().map(|(k, v)| format!("{k} {v}")).collect();
        if p.expect.is_empty() {
            benign_txs += txs[i];
            for (det, set) in &flagged[i] {
                if POSTURE.contains(&det.as_str()) {
                    *posture.entry(det.clone()).or_default() += set.len() as u64;
                } else {
                    false_occ += set.len() as u64;
                    *false_by.entry(det.clone()).or_default() += set.len() as u64;
                }
            }
            false_findings +=
                findings[i].iter().filter(|(k, _)| !POSTURE.contains(&k.as_str())).map(|(_, v)| *v).sum::<u64>();
            println!("{:<20} {:>7} {:>9} {:>8}  {}", p.name, txs[i], "-", "benign", shown.join(", "));
            continue;
        }
        let hit: BTreeSet<&String> =
            flagged[i].iter().filter(|(k, _)| p.expect.contains(&k.as_str())).flat_map(|(_, s)| s.iter()).collect();
        let recall = hit.len() as f64 / txs[i].max(1) as f64;
        let raised = p.expect.iter().any(|e| findings[i].contains_key(*e));
        if !raised {
            missed_campaigns.push(p.name);
        }
        let r = if p.every_request { format!("{recall:.3}") } else { format!("({recall:.2})") };
        let mut judged = None;
        if let (Some(check), Some(python)) = (p.oracle, oracle) {
            let items: Vec<(&str, &str)> = sent[i].iter().map(|(_, uri)| (check, uri.as_str())).collect();
            let labels = label(python, assets, &items)?;
            let attacks: Vec<&String> =
                sent[i].iter().zip(&labels).filter(|(_, &l)| l).map(|((ts, _), _)| ts).collect();
            let caught = attacks.iter().filter(|ts| hit.contains(**ts)).count();
            let rc = caught as f64 / attacks.len().max(1) as f64;
            judged = Some(format!(
                "; of the {} libinjection calls {check}: {caught} flagged, recall {rc:.3}",
                attacks.len()
            ));
            oracle_recalls.push((rc, p.name));
        } else if p.every_request && worst.is_none_or(|(w, _)| recall < w) {
            worst = Some((recall, p.name));
        }
        println!(
            "{:<20} {:>7} {:>9} {:>8}  {}{}",
            p.name,
            txs[i],
            hit.len(),
            r,
            shown.join(", "),
            judged.unwrap_or_default()
        );
    }
    for (rc, name) in &oracle_recalls {
        if worst.is_none_or(|(w, _)| *rc < w) {
            worst = Some((*rc, name));
        }
    }
    let per_100k = |n: u64| n as f64 * 100_000.0 / benign_txs.max(1) as f64;
    println!("\nbenign transactions: {benign_txs}");
    println!(
        "false findings of attack detections: {false_findings} as reported ({:.2} per 100,000), {false_occ} occurrences ({:.2} per 100,000){}",
        per_100k(false_findings),
        per_100k(false_occ),
        if false_by.is_empty() { String::new() } else { format!(": {false_by:?}") }
    );
    println!("posture findings on benign traffic (true of this API): {posture:?}");
    if let Some((w, name)) = worst {
        println!(
            "lowest recall over attack requests (wordlists: over what libinjection calls attacks): {w:.3} ({name})"
        );
    }
    if !missed_campaigns.is_empty() {
        println!("phases whose expected detection was never raised: {missed_campaigns:?}");
    }
    Ok(())
}
