//! Shipping to `apiwatch sink`, with the real binary on loopback: certificates made by
//! `apiwatch sink certs`, mutual TLS, the SQLite store read back with `apiwatch sink query`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_apiwatch")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(bin()).args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "apiwatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Certificates for a sink (`localhost`, 127.0.0.1) and agents, in `dir/name`.
fn certs(dir: &Path, name: &str, sink: &str, agents: &[&str], expired: &[&str]) -> PathBuf {
    let d = dir.join(name);
    let mut args = vec!["sink", "certs", "--out", d.to_str().unwrap(), "--sink-name", sink];
    let (a, e) = (agents.join(","), expired.join(","));
    if !agents.is_empty() {
        args.extend(["--agent", &a]);
    }
    if !expired.is_empty() {
        args.extend(["--expired-agent", &e]);
    }
    run(&args, dir);
    d
}

struct Sink {
    child: Child,
    port: u16,
    db: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a sink with the certificates in `certs`, on `port` (0: any), storing in `db`.
fn sink(dir: &Path, certs: &Path, db: &Path, port: u16) -> Sink {
    sink_in(dir, certs, db, "127.0.0.1", port, None)
}

/// The same, listening on `addr`, inside the network namespace `ns` if given.
fn sink_in(dir: &Path, certs: &Path, db: &Path, addr: &str, port: u16, ns: Option<&apiwatch_testlab::Lab>) -> Sink {
    let cfg = dir.join(format!("sink-{}.toml", db.file_stem().unwrap().to_string_lossy()));
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{addr}:{port}\"\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\ndatabase = {:?}\n",
            certs.join("sink.pem"),
            certs.join("sink-key.pem"),
            certs.join("ca.pem"),
            db
        ),
    )
    .unwrap();
    let mut cmd = match ns {
        Some(l) => {
            let mut c = l.cmd(&l.srv, bin());
            c.args(["sink", "--config", cfg.to_str().unwrap()]);
            c
        }
        None => {
            let mut c = Command::new(bin());
            c.args(["sink", "--config", cfg.to_str().unwrap()]);
            c
        }
    };
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port =
        line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("sink said {line:?}"));
    Sink { child, port, db: db.to_path_buf() }
}

/// An agent configuration shipping every kind to `port`.
fn agent_config(dir: &Path, name: &str, certs: &Path, agent_cert: Option<&str>, url: &str, extra: &str) -> PathBuf {
    let mut s = format!(
        "[inventory]\nstate_dir = {:?}\n\n[[outputs]]\ntype = \"https\"\nurl = {url:?}\nca_file = {:?}\nkinds = [\"transaction\", \"inventory\", \"sensitive_data\", \"detection\"]\nbatch_records = 10\n{extra}\n",
        dir.join(format!("state-{name}")),
        certs.join("ca.pem"),
    );
    if let Some(a) = agent_cert {
        s.push_str(&format!(
            "client_cert = {:?}\nclient_key = {:?}\n",
            certs.join(format!("agent-{a}.pem")),
            certs.join(format!("agent-{a}-key.pem"))
        ));
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, s).unwrap();
    p
}

/// `apiwatch replay --config CFG FILE`: (records written locally, stderr).
fn replay(dir: &Path, cfg: &Path, file: &Path, drain: u64) -> (usize, String) {
    replay_in(dir, cfg, file, drain, None)
}

/// The same, inside the lab's client namespace if given.
fn replay_in(dir: &Path, cfg: &Path, file: &Path, drain: u64, ns: Option<&apiwatch_testlab::Lab>) -> (usize, String) {
    let out = dir.join(format!("{}.jsonl", cfg.file_stem().unwrap().to_string_lossy()));
    let o = match ns {
        Some(l) => l.cmd(&l.cli, bin()),
        None => Command::new(bin()),
    }
    .args(["replay", "--config", cfg.to_str().unwrap(), "-o", out.to_str().unwrap()])
    .args(["--drain-timeout", &drain.to_string()])
    .arg(file)
    .current_dir(dir)
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "replay failed: {err}");
    (std::fs::read_to_string(out).unwrap().lines().count(), err)
}

/// (records, duplicates) the sink stored for `agent`.
fn stored(db: &Path, agent: &str) -> (u64, u64) {
    let o = run(&["sink", "query", "agents", "--db", db.to_str().unwrap(), "--json"], Path::new("."));
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["agent"] == agent {
            return (v["records"].as_u64().unwrap(), v["duplicates"].as_u64().unwrap());
        }
    }
    (0, 0)
}

fn pcap(name: &str) -> PathBuf {
    root().join("pcaps").join(name)
}

/// A capture with no packets (the global header only): a replay that ships only what its
/// spool holds.
fn empty_pcap(dir: &Path) -> PathBuf {
    let p = dir.join("empty.pcap");
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&p, h).unwrap();
    p
}

#[test]
fn two_agents_deliver_every_record_exactly_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["a1", "a2"], &[]);
    let s = sink(dir, &c, &dir.join("sink.db"), 0);
    let url = format!("https://127.0.0.1:{}", s.port);
    let cfg1 = agent_config(dir, "a1", &c, Some("a1"), &url, "");
    let cfg2 = agent_config(dir, "a2", &c, Some("a2"), &url.replace("127.0.0.1", "localhost"), "");
    let (d1, d2) = (dir.to_path_buf(), dir.to_path_buf());
    let (c1, c2) = (cfg1.clone(), cfg2.clone());
    let h1 = std::thread::spawn(move || replay(&d1, &c1, &pcap("api-keepalive.pcap"), 30));
    let h2 = std::thread::spawn(move || replay(&d2, &c2, &pcap("any-device.pcap"), 30));
    let ((n1, e1), (n2, _)) = (h1.join().unwrap(), h2.join().unwrap());
    assert!(n1 >= 30 && n2 >= 4, "{n1} {n2}");
    assert!(e1.contains(&format!("{n1} records delivered, 0 left in the spool")), "{e1}");
    assert_eq!(stored(&s.db, "a1"), (n1 as u64, 0));
    assert_eq!(stored(&s.db, "a2"), (n2 as u64, 0));
    // What was stored is what was written locally, record for record.
    let local: Vec<String> = std::fs::read_to_string(dir.join("a1.jsonl")).unwrap().lines().map(String::from).collect();
    let o = run(&["sink", "query", "records", "--db", s.db.to_str().unwrap(), "--agent", "a1", "--json"], dir);
    let mut remote: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("agent");
            v.to_string()
        })
        .collect();
    let mut local_norm: Vec<String> =
        local.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().to_string()).collect();
    remote.sort();
    local_norm.sort();
    assert_eq!(remote, local_norm);
    // Findings are there to query.
    let f = run(&["sink", "query", "findings", "--db", s.db.to_str().unwrap()], dir);
    assert!(String::from_utf8_lossy(&f.stdout).contains("sensitive_data"), "no findings stored");

    // An acknowledgement lost (the agent died before recording it): the spool sends its
    // last batches again, and the sink keeps one copy.
    std::fs::write(dir.join("state-a1/spool/127.0.0.1/acked"), "0\n").unwrap();
    let (_, e) = replay(dir, &cfg1, &empty_pcap(dir), 30);
    assert!(e.contains("0 left in the spool"), "{e}");
    let (records, dups) = stored(&s.db, "a1");
    assert_eq!(records, n1 as u64, "no record stored twice");
    assert!(dups > 0, "the resent batch was seen as duplicates");
}

#[test]
fn records_wait_in_the_spool_while_the_sink_is_down() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["a1"], &[]);
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = agent_config(dir, "a1", &c, Some("a1"), &format!("https://127.0.0.1:{port}"), "");
    // The agent is killed (SIGKILL) while it retries, everything spooled (the sink is
    // down)...
    let mut agent = Command::new(bin())
        .args(["replay", "--config", cfg.to_str().unwrap(), "-o", dir.join("a1.jsonl").to_str().unwrap()])
        .args(["--drain-timeout", "600"])
        .arg(pcap("api-keepalive.pcap"))
        .current_dir(dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let spool = dir.join("state-a1/spool/127.0.0.1");
    let t0 = std::time::Instant::now();
    let spooled =
        || {
            std::fs::read_dir(&spool).ok().into_iter().flatten().flatten().any(|e| {
                e.path().extension().is_some_and(|x| x == "seg") && e.metadata().map(|m| m.len()).unwrap_or(0) > 0
            })
        };
    while !spooled() || std::fs::read_to_string(dir.join("a1.jsonl")).map(|t| t.is_empty()).unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(20), "nothing spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    agent.kill().unwrap();
    agent.wait().unwrap();
    let n = std::fs::read_to_string(dir.join("a1.jsonl")).unwrap().lines().count();
    assert!(n >= 30);
    // ... is started again, and while it waits the sink comes up: all arrives, once.
    let d = dir.to_path_buf();
    let (cfg2, empty) = (cfg.clone(), empty_pcap(dir));
    let h = std::thread::spawn(move || replay(&d, &cfg2, &empty, 60));
    std::thread::sleep(Duration::from_millis(1500));
    let s = sink(dir, &c, &dir.join("sink.db"), port);
    let (_, e) = h.join().unwrap();
    assert!(e.contains(&format!("{n} records delivered, 0 left in the spool")), "{e}");
    assert_eq!(stored(&s.db, "a1"), (n as u64, 0));

    // The sink is killed in the middle and started again: nothing lost, nothing twice.
    drop(s);
    let d = dir.to_path_buf();
    let cfg3 = cfg.clone();
    let h = std::thread::spawn(move || replay(&d, &cfg3, &pcap("api-keepalive.pcap"), 60));
    std::thread::sleep(Duration::from_millis(800));
    let s = sink(dir, &c, &dir.join("sink.db"), port);
    let (m, _) = h.join().unwrap();
    assert_eq!(stored(&s.db, "a1"), ((n + m) as u64, 0));
}

#[test]
fn the_sink_refuses_agents_without_a_good_certificate() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["good"], &["old"]);
    let other = certs(dir, "other", "localhost", &["stranger"], &[]);
    let s = sink(dir, &c, &dir.join("sink.db"), 0);
    let url = format!("https://127.0.0.1:{}", s.port);
    let file = pcap("any-device.pcap");
    // No certificate, an expired one, one from another CA.
    let none = agent_config(dir, "none", &c, None, &url, "");
    let old = agent_config(dir, "old", &c, Some("old"), &url, "");
    let stranger = agent_config(dir, "stranger", &c, None, &url, "");
    let mut s2 = std::fs::read_to_string(&stranger).unwrap();
    s2.push_str(&format!(
        "client_cert = {:?}\nclient_key = {:?}\n",
        other.join("agent-stranger.pem"),
        other.join("agent-stranger-key.pem")
    ));
    std::fs::write(&stranger, s2).unwrap();
    for (cfg, why) in [(&none, "CertificateRequired"), (&old, "CertificateExpired"), (&stranger, "")] {
        let (n, e) = replay(dir, cfg, &file, 2);
        assert!(e.contains(&format!("0 records delivered, {n} left in the spool")), "{}: {e}", cfg.display());
        assert!(e.contains("the sink refused the handshake") && e.contains(why), "{}: {e}", cfg.display());
    }
    let agents = run(&["sink", "query", "agents", "--db", s.db.to_str().unwrap(), "--json"], dir);
    assert!(agents.stdout.is_empty(), "nothing stored: {}", String::from_utf8_lossy(&agents.stdout));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1 2"), "{:?}", String::from_utf8_lossy(&got));

    // The good agent gets through.
    let good = agent_config(dir, "good", &c, Some("good"), &url, "");
    let (n, e) = replay(dir, &good, &file, 30);
    assert!(e.contains(&format!("{n} records delivered")), "{e}");
    assert_eq!(stored(&s.db, "good"), (n as u64, 0));
}

#[test]
fn the_agent_refuses_a_sink_with_the_wrong_name_or_pin() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // This sink's certificate names sink.example only.
    let c = certs(dir, "pki", "sink.example", &["a1"], &[]);
    let s = sink(dir, &c, &dir.join("sink.db"), 0);
    let file = pcap("any-device.pcap");
    let wrong = agent_config(dir, "wrong", &c, Some("a1"), &format!("https://127.0.0.1:{}", s.port), "");
    let (n, e) = replay(dir, &wrong, &file, 2);
    assert!(e.contains(&format!("0 records delivered, {n} left")), "{e}");
    assert!(e.contains("not valid for the name in the URL"), "{e}");
    // Right name and CA, but a pinned fingerprint that is not the sink's.
    let c2 = certs(dir, "pki2", "localhost,127.0.0.1", &["a1"], &[]);
    let s2 = sink(dir, &c2, &dir.join("sink2.db"), 0);
    let url = format!("https://127.0.0.1:{}", s2.port);
    let pinned = agent_config(dir, "pinned", &c2, Some("a1"), &url, &format!("pin_sha256 = [{:?}]", "ab".repeat(32)));
    let (n, e) = replay(dir, &pinned, &file, 2);
    assert!(e.contains(&format!("0 records delivered, {n} left")), "{e}");
    assert!(e.contains("is not one of the pinned ones"), "{e}");
    // A sink whose certificate has expired.
    let old = dir.join("pki3");
    run(
        &[
            "sink",
            "certs",
            "--out",
            old.to_str().unwrap(),
            "--sink-name",
            "127.0.0.1",
            "--agent",
            "a1",
            "--expired-sink",
        ],
        dir,
    );
    let s3 = sink(dir, &old, &dir.join("sink3.db"), 0);
    let expired = agent_config(dir, "expired", &old, Some("a1"), &format!("https://127.0.0.1:{}", s3.port), "");
    let (n, e) = replay(dir, &expired, &file, 2);
    assert!(e.contains(&format!("0 records delivered, {n} left")), "{e}");
    assert!(e.contains("the sink's certificate has expired"), "{e}");
    // A CA that did not issue the sink's certificate.
    let strange = agent_config(dir, "strange", &c, Some("a1"), &url, "");
    let text = std::fs::read_to_string(&strange)
        .unwrap()
        .replace(&format!("ca_file = {:?}", c2.join("ca.pem")), &format!("ca_file = {:?}", c.join("ca.pem")));
    std::fs::write(&strange, text).unwrap();
    let (n, e) = replay(dir, &strange, &file, 2);
    assert!(e.contains(&format!("0 records delivered, {n} left")), "{e}");
    assert!(e.contains("not issued by a trusted CA"), "{e}");
    // A malformed batch from a good agent: refused with a status and a reason.
    let curl = |body: &str, count: &str| {
        let o = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(c2.join("ca.pem"))
            .arg("--cert")
            .arg(c2.join("agent-a1.pem"))
            .arg("--key")
            .arg(c2.join("agent-a1-key.pem"))
            .args(["-H", "X-Apiwatch-Stream: 00ff", "-H", "X-Apiwatch-First-Seq: 0", "-H"])
            .arg(format!("X-Apiwatch-Count: {count}"))
            .args(["--data-binary", body])
            .arg(format!("{url}/v1/records"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let r = curl("{\"kind\":\"inventory\"}\nnot json\n", "2");
    assert!(r.ends_with("\n400") && r.contains("line 2: not a record"), "{r}");
    let r = curl("{\"kind\":\"inventory\"}\n", "3");
    assert!(r.ends_with("\n400") && r.contains("says 3 records, the body has 1"), "{r}");
    let r = curl("{\"kind\":\"inventory\"}\n", "1");
    assert!(r.ends_with("\n200") && r.contains("\"stored\":1"), "{r}");
    // The right pin: delivered.
    let fp = apiwatch::tls::fingerprint(&apiwatch::tls::load_certs(&c2.join("sink.pem")).unwrap()[0]);
    let right = agent_config(dir, "right", &c2, Some("a1"), &url, &format!("pin_sha256 = [{fp:?}]"));
    let (n, e) = replay(dir, &right, &file, 30);
    assert!(e.contains(&format!("{n} records delivered")), "{e}");
    drop(s);
}

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

#[test]
fn a_cut_network_path_loses_nothing() {
    // Agent and sink in two network namespaces joined by a veth pair, which goes down
    // while the agent ships.
    if let Err(why) = apiwatch_testlab::available() {
        assert!(!ci(), "this test cannot run under CI=true: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let lab = apiwatch_testlab::Lab::new().unwrap();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", &format!("localhost,{}", apiwatch_testlab::SRV4), &["a1"], &[]);
    let s = sink_in(dir, &c, &dir.join("sink.db"), apiwatch_testlab::SRV4, 0, Some(&lab));
    let url = format!("https://{}:{}", apiwatch_testlab::SRV4, s.port);
    let cfg = agent_config(dir, "a1", &c, Some("a1"), &url, "timeout_secs = 2");
    // Delivered while the path is up: the agent's connection stays open afterwards...
    let (n1, e) = replay_in(dir, &cfg, &pcap("api-keepalive.pcap"), 30, Some(&lab));
    assert!(e.contains(&format!("{n1} records delivered, 0 left")), "{e}");
    // ... and is cut: the next records wait in the spool while the agent retries.
    lab.set_link(false).unwrap();
    let (d, cfg2, cli_ns) = (dir.to_path_buf(), cfg.clone(), lab.cli.clone());
    let h = std::thread::spawn(move || {
        let o = Command::new("ip")
            .args(["netns", "exec", &cli_ns, bin(), "replay", "--config", cfg2.to_str().unwrap(), "-o", "/dev/null"])
            .args(["--drain-timeout", "60"])
            .arg(pcap("api-keepalive.pcap"))
            .current_dir(&d)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stderr).to_string()
    });
    std::thread::sleep(Duration::from_secs(4));
    lab.set_link(true).unwrap();
    let e = h.join().unwrap();
    // The second run writes fewer records (its endpoints are known from the first).
    let written: u64 = e
        .lines()
        .find_map(|l| l.split("records written ").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()))
        .expect("summary");
    assert!(e.contains(&format!("{written} records delivered, 0 left in the spool")), "{e}");
    assert!(e.contains("delivery latency"), "{e}");
    assert_eq!(stored(&s.db, "a1"), (n1 as u64 + written, 0));
}

#[test]
fn an_ocsf_output_ships_detection_findings_and_http_activity() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["a1"], &[]);
    let s = sink(dir, &c, &dir.join("sink.db"), 0);
    let url = format!("https://127.0.0.1:{}", s.port);
    let cfg = agent_config(dir, "a1", &c, Some("a1"), &url, "format = \"ocsf\"");
    // An ocsf output refuses kinds OCSF has no class for.
    let bad = replay_err(dir, &cfg);
    assert!(bad.contains("outputs[0].kinds") && bad.contains("no OCSF class"), "{bad}");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(", \"inventory\"", "");
    std::fs::write(&cfg, text).unwrap();
    let (n, e) = replay(dir, &cfg, &pcap("api-keepalive.pcap"), 30);
    let local = std::fs::read_to_string(dir.join("a1.jsonl")).unwrap();
    let want = local.lines().filter(|l| !l.starts_with("{\"kind\":\"inventory\"")).count();
    assert!(want > 0 && want < n);
    assert!(e.contains(&format!("{want} records delivered, 0 left")), "{e}");
    let o = run(&["sink", "query", "records", "--db", s.db.to_str().unwrap(), "--json"], dir);
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), want);
    let findings = events.iter().filter(|v| v["class_uid"] == 2004).count();
    let http = events.iter().filter(|v| v["class_uid"] == 4002).count();
    assert_eq!(findings + http, want);
    let kind = |k: &str| local.lines().filter(|l| l.starts_with(&format!("{{\"kind\":\"{k}\""))).count();
    assert!(kind("detection") > 0, "the capture carries credentials over cleartext: {local}");
    assert_eq!(findings, kind("sensitive_data") + kind("detection"));
    // Detections map to findings with attacks (ATT&CK) and the detection's name as the title.
    let attacks = events.iter().filter(|v| v["class_uid"] == 2004 && v["finding_info"]["attacks"].is_array()).count();
    assert_eq!(attacks, kind("detection"));
    assert!(events.iter().all(|v| v["metadata"]["version"] == "1.3.0" && v["time"].is_i64()));
    let f = run(&["sink", "query", "findings", "--db", s.db.to_str().unwrap(), "--json"], dir);
    assert_eq!(String::from_utf8_lossy(&f.stdout).lines().count(), findings);
}

/// What `apiwatch replay --config CFG` says when it refuses to start.
fn replay_err(dir: &Path, cfg: &Path) -> String {
    let o = Command::new(bin())
        .args(["replay", "--config", cfg.to_str().unwrap(), "-o", "/dev/null"])
        .arg(pcap("any-device.pcap"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// rsyslogd with its TLS driver, or why not.
fn rsyslog_available() -> Result<(), String> {
    if !Path::new("/usr/sbin/rsyslogd").exists() {
        return Err("rsyslogd is not installed (the setup command installs rsyslog and rsyslog-gnutls)".into());
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists() {
        return Err("rsyslog's TLS driver is not installed (rsyslog-gnutls)".into());
    }
    Ok(())
}

#[test]
fn syslog_over_tls_reaches_rsyslog_as_cef() {
    if let Err(why) = rsyslog_available() {
        assert!(!ci(), "this test cannot run under CI=true: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["a1"], &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let got = dir.join("received.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory={dir:?} DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile={ca:?} DefaultNetstreamDriverCertFile={cert:?} DefaultNetstreamDriverKeyFile={key:?})\n\
             module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"raw\" type=\"string\" string=\"%msgid% %msg%\\n\")\n\
             action(type=\"omfile\" file={got:?} template=\"raw\")\n",
            dir = dir,
            ca = c.join("ca.pem"),
            cert = c.join("sink.pem"),
            key = c.join("sink-key.pem"),
        ),
    )
    .unwrap();
    let mut rsyslog = Command::new("/usr/sbin/rsyslogd")
        .args(["-n", "-f", conf.to_str().unwrap(), "-i", dir.join("rsyslog.pid").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Listening?
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "rsyslogd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cfg = dir.join("a1.toml");
    std::fs::write(
        &cfg,
        format!(
            "[inventory]\nstate_dir = {:?}\n[[outputs]]\ntype = \"syslog\"\nurl = \"tls://127.0.0.1:{port}\"\nca_file = {:?}\nkinds = [\"transaction\", \"inventory\", \"sensitive_data\", \"detection\"]\nbatch_records = 7\n",
            dir.join("state"),
            c.join("ca.pem")
        ),
    )
    .unwrap();
    let (n, e) = replay(dir, &cfg, &pcap("api-keepalive.pcap"), 30);
    assert!(e.contains(&format!("{n} records delivered, 0 left")), "{e}");
    // rsyslog writes asynchronously.
    let t0 = std::time::Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&got).unwrap_or_default();
        if text.lines().count() >= n || t0.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let local = std::fs::read_to_string(dir.join("a1.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), n, "{lines}");
    // Parsed back: CEF header fields, one line per record, of the right kinds, each with
    // its own id.
    let mut ids = std::collections::BTreeSet::new();
    let mut sensitive = 0;
    for l in lines.lines() {
        let (msgid, cef) = l.split_once(' ').unwrap();
        assert!(cef.starts_with("CEF:0|apiwatch|apiwatch|"), "{l}");
        let head: Vec<&str> = cef.splitn(8, '|').collect();
        assert_eq!(head.len(), 8, "{l}");
        assert_eq!(head[4].split(':').next(), Some(msgid));
        assert!(head[6].parse::<u8>().is_ok_and(|s| s <= 10), "{l}");
        assert_eq!(cef.matches("externalId=").count(), 1, "one record id per line: {l}");
        let id = cef.rsplit("externalId=").next().unwrap().to_string();
        assert!(ids.insert(id), "ids are unique");
        if msgid == "sensitive_data" {
            sensitive += 1;
            assert!(cef.contains("cs4Label=maskedValue cs4="), "{l}");
            assert!(!cef.contains("Bearer ey"), "no credential in clear");
        }
    }
    assert_eq!(sensitive, local.lines().filter(|l| l.starts_with("{\"kind\":\"sensitive_data\"")).count());
}

/// A PostgreSQL server of its own (the Debian package's binaries, a cluster in `dir`, a
/// Unix socket only), stopped on drop.
struct Postgres {
    data: PathBuf,
    bin: PathBuf,
    url: String,
}

impl Postgres {
    fn start(dir: &Path) -> Result<Postgres, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "PostgreSQL is not installed (the setup command installs postgresql)".to_string())?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql")?;
        // The server runs as postgres: it must reach its directories.
        let base = dir.join("pg");
        std::fs::create_dir_all(base.join("sock")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for d in [dir, base.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&base).status().unwrap();
        assert!(chown.success());
        let data = base.join("data");
        let as_pg = |prog: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
            c
        };
        let o = as_pg("initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(&data).output().unwrap();
        if !o.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let o = as_pg("pg_ctl")
            .args(["-w", "-D"])
            .arg(&data)
            .arg("-o")
            .arg(format!("-k {} -p {port} -c listen_addresses=''", base.join("sock").display()))
            .arg("-l")
            .arg(base.join("log"))
            .arg("start")
            .output()
            .unwrap();
        if !o.status.success() {
            return Err(format!("pg_ctl start: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Ok(Postgres {
            url: format!("host={} port={port} user=postgres dbname=postgres", base.join("sock").display()),
            data,
            bin,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

#[test]
fn receivers_sharing_postgresql_store_each_record_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let pg = match Postgres::start(dir) {
        Ok(p) => p,
        Err(why) => {
            assert!(!ci(), "this test cannot run under CI=true: {why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let c = certs(dir, "pki", "localhost,127.0.0.1", &["a1", "a2"], &[]);
    // Two receivers on one database, as behind a load balancer.
    let start = |name: &str| {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\nbackend = \"postgres\"\npostgres = {:?}\n",
                c.join("sink.pem"),
                c.join("sink-key.pem"),
                c.join("ca.pem"),
                pg.url
            ),
        )
        .unwrap();
        let mut child = Command::new(bin())
            .args(["sink", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 =
            line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        (Sink { child, port, db: PathBuf::new() }, cfg)
    };
    let ((r1, cfg1), (r2, _)) = (start("r1"), start("r2"));
    let a1 = agent_config(dir, "a1", &c, Some("a1"), &format!("https://127.0.0.1:{}", r1.port), "");
    let a2 = agent_config(dir, "a2", &c, Some("a2"), &format!("https://127.0.0.1:{}", r2.port), "");
    let (d1, d2, f1, f2) = (dir.to_path_buf(), dir.to_path_buf(), a1.clone(), a2.clone());
    let h1 = std::thread::spawn(move || replay(&d1, &f1, &pcap("api-keepalive.pcap"), 30));
    let h2 = std::thread::spawn(move || replay(&d2, &f2, &pcap("api-keepalive.pcap"), 30));
    let ((n1, _), (n2, _)) = (h1.join().unwrap(), h2.join().unwrap());
    // a1's acknowledgement lost, and a1 now sent to the other receiver: what it sends again
    // is already stored.
    std::fs::write(dir.join("state-a1/spool/127.0.0.1/acked"), "0\n").unwrap();
    let text = std::fs::read_to_string(&a1).unwrap().replace(&format!(":{}\"", r1.port), &format!(":{}\"", r2.port));
    std::fs::write(&a1, text).unwrap();
    let (_, e) = replay(dir, &a1, &empty_pcap(dir), 30);
    assert!(e.contains("0 left in the spool"), "{e}");
    let o = run(&["sink", "query", "agents", "--json", "--config", cfg1.to_str().unwrap()], dir);
    let agents: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(agents.len(), 2, "{agents:?}");
    assert_eq!(agents[0]["records"].as_u64(), Some(n1 as u64));
    assert!(agents[0]["duplicates"].as_u64() > Some(0), "{agents:?}");
    assert_eq!((agents[1]["records"].as_u64(), agents[1]["duplicates"].as_u64()), (Some(n2 as u64), Some(0)));
    let all = run(&["sink", "query", "records", "--json", "--config", cfg1.to_str().unwrap()], dir);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), n1 + n2);
    drop((r1, r2));
}
