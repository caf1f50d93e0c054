//! `apiwatch run` against real traffic: two network namespaces joined by veth, the test API
//! server (python) in one, curl in the other, apiwatch capturing on the server side.
//! Needs root: under CI=true these tests must run; elsewhere they say why they skip.

use apiwatch_testlab::{self as lab, Lab};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// The lab, or None (after saying why) when this machine cannot build one.
fn lab_or_skip() -> Option<Lab> {
    if let Err(why) = lab::available() {
        assert!(!ci(), "live tests cannot run under CI=true: {why}");
        eprintln!("SKIPPED: {why}");
        return None;
    }
    Some(Lab::new().expect("lab"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api_server(l: &Lab) -> Proc {
    let p = l
        .cmd(&l.srv, "python3")
        .arg(root().join("xtask/assets/api_server.py"))
        .args([lab::SRV4, "8080"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        let out = l.cmd(&l.srv, "ss").args(["-ltnH"]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(":8080 ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Proc(p)
}

/// apiwatch run in the server namespace; its stderr lines arrive on the receiver.
fn start(l: &Lab, config: &Path) -> (Proc, mpsc::Receiver<String>) {
    let mut child = l
        .cmd(&l.srv, env!("CARGO_BIN_EXE_apiwatch"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[apiwatch] {line}");
            let _ = tx.send(line);
        }
    });
    (Proc(child), rx)
}

/// apiwatch capturing in `l` with `backend` on `ports`, records to `<dir>/out.jsonl`, its
/// state in `<dir>/state`; started and given time to open capture.
struct Capturing {
    dir: tempfile::TempDir,
    out: PathBuf,
    apiwatch: Proc,
    log: mpsc::Receiver<String>,
}

fn capturing(l: &Lab, backend: &str, ports: &[u16]) -> Capturing {
    capturing_with(l, backend, ports, |_| String::new())
}

/// The same, with more configuration (made knowing the directory) after the rest.
fn capturing_with(l: &Lab, backend: &str, ports: &[u16], extra: impl FnOnce(&Path) -> String) -> Capturing {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cfg = config_for(dir.path(), l, backend, ports, &out);
    let more = extra(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&more);
    std::fs::write(&cfg, text).unwrap();
    let (apiwatch, log) = start(l, &cfg);
    wait_for(&log, "capturing");
    std::thread::sleep(Duration::from_millis(300));
    Capturing { dir, out, apiwatch, log }
}

/// `apiwatch sink` in the server's namespace on its loopback, with certificates made in
/// `pki` for it and for an agent named `live`; (process, port).
fn start_sink(l: &Lab, pki: &Path) -> (Proc, u16) {
    let bin = env!("CARGO_BIN_EXE_apiwatch");
    let c = Command::new(bin)
        .args(["sink", "certs", "--sink-name", "127.0.0.1", "--agent", "live", "--out"])
        .arg(pki)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let cfg = pki.join("sink.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\ndatabase = {:?}\n",
            pki.join("sink.pem"),
            pki.join("sink-key.pem"),
            pki.join("ca.pem"),
            pki.join("sink.db")
        ),
    )
    .unwrap();
    let mut child = l
        .cmd(&l.srv, bin)
        .args(["sink", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("sink: {line:?}"));
    (Proc(child), port)
}

/// The test API server's base URL.
fn base() -> String {
    format!("http://{}:8080", lab::SRV4)
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return;
            }
        }
    }
    panic!("apiwatch never logged {needle:?}");
}

/// Requests ("METHOD URL") made by one curl on one connection; what curl logged.
fn curl(l: &Lab, requests: &[&str]) -> Vec<(String, String, u16)> {
    let mut args: Vec<String> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if i > 0 {
            args.push("--next".into());
        }
        let (method, url) = r.split_once(' ').unwrap();
        args.extend(["-s", "-o", "/dev/null", "-w", "%{method} %{url_effective} %{response_code}\n"].map(String::from));
        if method == "HEAD" {
            args.push("-I".into());
        } else {
            args.extend(["-X".to_string(), method.to_string()]);
        }
        args.push(url.to_string());
    }
    let out = l.cmd(&l.cli, "curl").args(&args).output().unwrap();
    parse_log(&String::from_utf8_lossy(&out.stdout))
}

fn parse_log(text: &str) -> Vec<(String, String, u16)> {
    let mut v: Vec<_> = text
        .lines()
        .map(|line| {
            let mut it = line.split_whitespace();
            let m = it.next().unwrap().to_string();
            let url = it.next().unwrap();
            let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_else(|| "/".into());
            (m, path, it.next().unwrap().parse().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn records(path: &Path) -> Vec<(String, String, u16)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<_> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["kind"] == "transaction")
        .map(|t| {
            (
                t["request"]["method"].as_str().unwrap_or("-").to_string(),
                t["request"]["uri"].as_str().unwrap_or("-").to_string(),
                t["response"]["status"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect();
    v.sort();
    v
}

/// The daemon reported the endpoints of `run_and_check`'s requests as `inventory` records and
/// kept them in its state directory, where `apiwatch inventory export` reads them.
fn check_inventory(out: &Path, state: &Path) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut reported: Vec<(String, String)> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["kind"] == "inventory")
        .map(|t| (t["method"].as_str().unwrap_or("").to_string(), t["template"].as_str().unwrap_or("").to_string()))
        .collect();
    reported.sort();
    let expected: Vec<(String, String)> = [
        ("DELETE", "/users/{id}"),
        ("GET", "/items"),
        ("GET", "/large"),
        ("GET", "/missing"),
        ("GET", "/users/{id}"),
        ("HEAD", "/users/{id}"),
        ("POST", "/users"),
    ]
    .iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    assert_eq!(reported, expected, "one inventory record per endpoint");
    let export = Command::new(env!("CARGO_BIN_EXE_apiwatch"))
        .args(["inventory", "export", "--state"])
        .arg(state)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let v: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let mut stored: Vec<(String, String)> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["method"].as_str().unwrap().to_string(), e["template"].as_str().unwrap().to_string()))
        .collect();
    stored.sort();
    assert_eq!(stored, expected, "the state directory holds the inventory");
    // Sensitive data: GET /users/{id} answers with an email, reported masked, once.
    let found: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["kind"] == "sensitive_data" && t["type"] == "email")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (&f["template"], &f["location"], &f["field"]),
        (&"/users/{id}".into(), &"response_body".into(), &"$.email".into())
    );
    assert_eq!(f["masked"], "u***@e***.com");
    let users =
        v["endpoints"].as_array().unwrap().iter().find(|e| e["method"] == "GET" && e["template"] == "/users/{id}");
    let sens = &users.unwrap()["sensitive_data"];
    assert_eq!(sens[0]["type"], "email", "{sens}");
    // The values never leave in clear: not in the output, not in the stored inventory.
    let store = std::fs::read(state.join("inventory.redb")).unwrap();
    for v in ["u1@example.com", "u2@example.com"] {
        assert!(!text.contains(v), "{v} in the output");
        assert!(!store.windows(v.len()).any(|w| w == v.as_bytes()), "{v} in the stored inventory");
    }
}

/// Bytes received plus sent by the server's interface.
fn iface_bytes(l: &Lab) -> u64 {
    ["rx_bytes", "tx_bytes"]
        .iter()
        .map(|what| {
            let path = format!("/sys/class/net/{}/statistics/{what}", l.srv_if);
            let o = l.cmd(&l.srv, "cat").arg(path).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().unwrap()
        })
        .sum()
}

/// The sum of a metric's samples in a Prometheus exposition.
fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A second, independent capture: tcpdump in the client's namespace, on its end of the veth,
/// of the traffic apiwatch is told to watch. Its byte count is the reference the daemon's own
/// count must equal (the interface counters also count neighbour discovery, MLD and router
/// solicitations, whose amount depends on timing).
struct Reference {
    tcpdump: Proc,
    pcap: std::thread::JoinHandle<Vec<u8>>,
}

fn reference_capture(l: &Lab, filter: &str) -> Reference {
    let mut child = l
        .cmd(&l.cli, "tcpdump")
        .args(["-i", &l.cli_if, "-n", "-U", "-w", "-", "--immediate-mode", filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut stdout = child.stdout.take().unwrap();
    let pcap = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    // tcpdump says "listening on" once its socket is open.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Reference { tcpdump: Proc(child), pcap }
}

impl Reference {
    /// Stop tcpdump and sum the wire length of every frame it saw.
    fn wire_bytes(mut self) -> u64 {
        signal(&self.tcpdump, "-INT");
        self.tcpdump.0.wait().unwrap();
        let pcap = self.pcap.join().unwrap();
        assert!(pcap.len() >= 24, "tcpdump wrote no pcap header");
        let mut at = 24;
        let mut total = 0u64;
        while at + 16 <= pcap.len() {
            let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            total += u64::from(u32::from_le_bytes(pcap[at + 12..at + 16].try_into().unwrap()));
            at += 16 + incl;
        }
        assert_eq!(at, pcap.len(), "tcpdump's pcap ends inside a record");
        total
    }
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill").args([sig, &p.0.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

fn sigterm_and_wait(p: &mut Proc) -> Duration {
    let t0 = Instant::now();
    signal(p, "-TERM");
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "apiwatch exited with {status}");
            return t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "apiwatch did not stop within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(dir: &Path, l: &Lab, ports: &[u16], out: &Path) -> PathBuf {
    config_for(dir, l, "pcap", ports, out)
}

fn config_for(dir: &Path, l: &Lab, backend: &str, ports: &[u16], out: &Path) -> PathBuf {
    let p = dir.join("apiwatch.toml");
    std::fs::write(
        &p,
        format!(
            "[capture]\nbackend = \"{backend}\"\ninterfaces = [\"{}\"]\nports = {ports:?}\n[output]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:19464\"\n[inventory]\nstate_dir = \"{}\"\nsettle_secs = 0\n",
            l.srv_if,
            out.display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

/// The eBPF tests count our programs machine-wide (bpftool shows neither the owning process
/// nor, in Debian's version, the TCX attachment): they must not overlap.
static EBPF_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Our capture programs loaded in the kernel (bpftool), if bpftool is there.
fn loaded_capture_programs() -> Option<usize> {
    let out = Command::new("bpftool").args(["prog", "show"]).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).matches("capture_").count())
}

#[test]
fn run_with_libpcap_captures_what_the_client_did_and_stops_cleanly() {
    run_and_check("pcap");
}

#[test]
fn run_with_ebpf_captures_what_the_client_did_and_detaches_on_exit() {
    run_and_check("ebpf");
}

fn run_and_check(backend: &str) {
    let _serial = if backend == "ebpf" { Some(EBPF_TESTS.lock().unwrap_or_else(|e| e.into_inner())) } else { None };
    let Some(l) = lab_or_skip() else { return };
    let _srv = api_server(&l);
    // A sink in the server's namespace, which the daemon ships its findings to.
    let pki = tempfile::tempdir().unwrap();
    let sink = start_sink(&l, pki.path());
    let Capturing { dir, out, mut apiwatch, log: _ } = capturing_with(&l, backend, &[8080], |_| {
        format!(
            "\n[[outputs]]\ntype = \"https\"\nurl = \"https://127.0.0.1:{}\"\nca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\nbatch_wait_ms = 200\n",
            sink.1,
            pki.path().join("ca.pem"),
            pki.path().join("agent-live.pem"),
            pki.path().join("agent-live-key.pem")
        )
    });
    let base = base();
    if backend == "ebpf" {
        if let Some(n) = loaded_capture_programs() {
            assert_eq!(n, 2, "ingress and egress programs are loaded while running");
        }
    }
    let requests: Vec<String> =
        ["GET /users/1", "POST /users", "GET /items", "DELETE /users/7", "GET /missing", "HEAD /users/2", "GET /large"]
            .iter()
            .map(|r| {
                let (m, p) = r.split_once(' ').unwrap();
                format!("{m} {base}{p}")
            })
            .collect();
    let iface0 = iface_bytes(&l);
    let reference = reference_capture(&l, "tcp port 8080");
    let did = curl(&l, &requests.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(did.len(), 7);
    std::thread::sleep(Duration::from_millis(1500));
    let iface = iface_bytes(&l) - iface0;
    let expected = reference.wire_bytes();
    // Metrics and health, from inside the namespace (its loopback).
    let m = l.cmd(&l.srv, "curl").args(["-s", "http://127.0.0.1:19464/metrics"]).output().unwrap();
    let metrics = String::from_utf8_lossy(&m.stdout);
    assert!(metrics.contains("apiwatch_http_transactions_total{interface="), "{metrics}");
    assert!(metrics.contains("apiwatch_capture_drops_total{"), "{metrics}");
    assert!(metrics.contains("\napiwatch_output_lag_microseconds "), "{metrics}");
    assert!(metrics.contains("apiwatch_remote_sent_records_total{output=\"127.0.0.1\"}"), "{metrics}");
    // Bytes on the wire as captured: exactly what tcpdump saw of port 8080 on the other end of
    // the link, and no more than the interface's own counters (which also count neighbour
    // discovery and the like).
    let wire = metric_value(&metrics, "apiwatch_packets_wire_bytes_total");
    eprintln!("{backend}: {wire} wire bytes captured, tcpdump saw {expected}, the interface counted {iface}");
    assert!(expected > 300_000, "the reference capture saw the /large response: {expected}");
    assert_eq!(wire, expected, "{backend}: captured {wire} wire bytes, tcpdump saw {expected}");
    assert!(wire <= iface, "{backend}: captured {wire} wire bytes, the interface counted {iface}");
    let h = l
        .cmd(&l.srv, "curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:19464/health"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&h.stdout), "200");
    let took = sigterm_and_wait(&mut apiwatch);
    eprintln!("{backend}: stopped {took:?} after SIGTERM");
    assert_eq!(records(&out), did, "the records are exactly the requests the client made");
    check_inventory(&out, &dir.path().join("state"));
    // What the daemon wrote of the kinds it ships (all but transactions) is in the sink,
    // once, sent by the agent its certificate names.
    let text = std::fs::read_to_string(&out).unwrap();
    let shipped = text.lines().filter(|l| !l.starts_with("{\"kind\":\"transaction\"")).count();
    assert!(shipped > 0, "inventory records were written");
    let q = Command::new(env!("CARGO_BIN_EXE_apiwatch"))
        .args(["sink", "query", "agents", "--json", "--db"])
        .arg(pki.path().join("sink.db"))
        .output()
        .unwrap();
    let agents = String::from_utf8_lossy(&q.stdout);
    let a: serde_json::Value = serde_json::from_str(agents.trim()).unwrap_or_else(|e| panic!("{e}: {agents}"));
    assert_eq!(
        (a["agent"].as_str(), a["records"].as_u64(), a["duplicates"].as_u64()),
        (Some("live"), Some(shipped as u64), Some(0)),
        "{agents}"
    );
    drop(sink);
    if backend == "ebpf" {
        // Nothing outlives the process: no program loaded, no tc filter or qdisc left.
        match loaded_capture_programs() {
            Some(n) => assert_eq!(n, 0, "capture programs still loaded after exit"),
            None => assert!(!ci(), "bpftool is needed under CI to check detaching"),
        }
        for dir in ["ingress", "egress"] {
            let f = l.cmd(&l.srv, "tc").args(["filter", "show", "dev", &l.srv_if, dir]).output().unwrap();
            assert!(f.stdout.is_empty(), "tc filter left on {dir}: {}", String::from_utf8_lossy(&f.stdout));
        }
        let q = l.cmd(&l.srv, "tc").args(["qdisc", "show", "dev", &l.srv_if]).output().unwrap();
        assert!(!String::from_utf8_lossy(&q.stdout).contains("clsact"), "clsact qdisc left behind");
    }
}

#[test]
fn sighup_applies_a_new_port_list() {
    let Some(l) = lab_or_skip() else { return };
    let _srv = api_server(&l);
    let Capturing { dir, out, mut apiwatch, log } = capturing(&l, "pcap", &[9999]);
    let base = base();
    let before = curl(&l, &[&format!("GET {base}/users/1")]);
    assert_eq!(before.len(), 1);
    // New ports, and a new output file (the old one is closed: rotation).
    // The analyzers' settings too: a pinned literal and no internal networks for the
    // inventory, a custom type for the classifier, a threat list naming the client for the
    // detector.
    let out2 = dir.path().join("out2.jsonl");
    let cfg = config(dir.path(), &l, &[8080], &out2);
    let threats = dir.path().join("threats.txt");
    std::fs::write(&threats, format!("# test\n{}/32\n", lab::CLI4)).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.trim_end().ends_with("settle_secs = 0"), "the [inventory] section is last: {text}");
    text.push_str("templates = [\"/users/2\"]\ninternal_networks = []\n");
    text.push_str("[[classify.custom]]\nname = \"lab_user\"\nregex = '^user \\d+$'\nkeywords = [\"name\"]\n");
    text.push_str(&format!("[detect]\nthreat_lists = [{:?}]\n", threats.display().to_string()));
    std::fs::write(&cfg, text).unwrap();
    signal(&apiwatch, "-HUP");
    wait_for(&log, "detection settings reloaded");
    wait_for(&log, "inventory and classifier settings reloaded");
    wait_for(&log, "output reopened");
    std::thread::sleep(Duration::from_millis(300));
    let after = curl(&l, &[&format!("GET {base}/users/2"), &format!("DELETE {base}/users/3")]);
    std::thread::sleep(Duration::from_millis(500));
    sigterm_and_wait(&mut apiwatch);
    assert_eq!(records(&out2), after, "what came after the reload, on the new port, in the new file");
    assert!(records(&out).is_empty(), "nothing was on the watched port before the reload");
    let text = std::fs::read_to_string(&out2).unwrap();
    let threat = text.lines().find(|l| l.contains("\"detection\":\"threat_list_ip\"")).unwrap_or("");
    assert!(threat.contains(&format!("\"ip\":\"{}\"", lab::CLI4)), "no threat-list finding: {text}");
    let pinned = text
        .lines()
        .filter(|l| l.starts_with("{\"kind\":\"inventory\""))
        .find(|l| l.contains("\"template\":\"/users/2\""));
    assert!(pinned.is_some_and(|l| l.contains("\"GET\"")), "the pinned literal is an endpoint of its own: {text}");
    let custom: Vec<&str> = text.lines().filter(|l| l.contains("\"type\":\"lab_user\"")).collect();
    assert!(!custom.is_empty(), "the custom type from the reload was found: {text}");
    assert!(
        custom.iter().any(|l| l.contains("\"external\":true") && l.contains("\"field\":\"$.name\"")),
        "with no internal networks the client is external: {custom:?}"
    );
}

#[test]
fn a_bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[capture]\ninterfaces = [\"eth0\"]\nprots = [80]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apiwatch")).arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("capture.prots") && text.contains("line 3"), "{text}");
    std::fs::write(&bad, "[capture]\ninterfaces = []\n[metrics]\nlisten = \"0.0.0.0:1\"\n[log]\nlevel = \"chatty\"\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apiwatch")).args(["run", "--config"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["capture.interfaces", "metrics.listen", "log.level"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    let good = root().join("packaging/apiwatch.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_apiwatch")).arg("check-config").arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn privileges_are_dropped_once_capture_is_open() {
    let Some(l) = lab_or_skip() else { return };
    let _srv = api_server(&l);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cfg = config_for(dir.path(), &l, "pcap", &[8080], &out);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[privileges]\nuser = \"nobody\"\n");
    std::fs::write(&cfg, text).unwrap();
    let (mut apiwatch, log) = start(&l, &cfg);
    wait_for(&log, "dropped privileges");
    let status = std::fs::read_to_string(format!("/proc/{}/status", apiwatch.0.id())).unwrap();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap_or("").to_string();
    let uid = field("Uid:");
    assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "{uid}");
    // Only CAP_NET_RAW (bit 13) is left: what reopening a libpcap capture needs.
    for caps in ["CapEff:", "CapPrm:"] {
        assert!(field(caps).ends_with("0000000000002000"), "{}", field(caps));
    }
    assert!(field("CapInh:").ends_with("0000000000000000"), "{}", field("CapInh:"));
    // Capture goes on with the handles opened before.
    std::thread::sleep(Duration::from_millis(300));
    let did = curl(&l, &[&format!("GET http://{}:8080/users/5", lab::SRV4)]);
    std::thread::sleep(Duration::from_millis(500));
    sigterm_and_wait(&mut apiwatch);
    assert_eq!(records(&out), did);
}

#[test]
fn ebpf_programs_vanish_when_the_process_is_killed() {
    let _serial = EBPF_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = lab_or_skip() else { return };
    if loaded_capture_programs().is_none() {
        assert!(!ci(), "bpftool is needed under CI");
        eprintln!("SKIPPED: bpftool not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cfg = config_for(dir.path(), &l, "ebpf", &[8080], &out);
    let (apiwatch, log) = start(&l, &cfg);
    wait_for(&log, "capturing");
    assert_eq!(loaded_capture_programs(), Some(2));
    signal(&apiwatch, "-KILL");
    drop(apiwatch);
    let deadline = Instant::now() + Duration::from_secs(5);
    while loaded_capture_programs() != Some(0) {
        assert!(Instant::now() < deadline, "programs still attached after SIGKILL");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn capture_survives_the_interface_going_away_and_coming_back() {
    for backend in ["pcap", "ebpf"] {
        let _serial = (backend == "ebpf").then(|| EBPF_TESTS.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(l) = lab_or_skip() else { return };
        let _srv = api_server(&l);
        let Capturing { dir: _dir, out, mut apiwatch, log } = capturing(&l, backend, &[8080]);
        let base = base();
        let mut did = curl(&l, &[&format!("GET {base}/users/1")]);
        l.bounce_link(Duration::from_millis(1500)).unwrap();
        wait_for(&log, "interface is back");
        std::thread::sleep(Duration::from_millis(300));
        did.extend(curl(&l, &[&format!("GET {base}/users/2")]));
        did.sort();
        std::thread::sleep(Duration::from_millis(500));
        sigterm_and_wait(&mut apiwatch);
        assert_eq!(records(&out), did, "{backend}: requests before and after the interface came back");
    }
}
