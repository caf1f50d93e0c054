//! `cargo xtask bench [--quick]`: replay throughput and memory, measured against peers in
//! the same run.
//!
//! Makes (once, cached in `$APIWATCH_BENCH_DIR`, default `/var/tmp/apiwatch-bench`, outside
//! git) two captures from real programs in network namespaces:
//! - `small.pcap`: wrk hammering nginx with small JSON responses on 64 keep-alive connections;
//! - `mixed.pcap`: the same plus curl downloading 4 MiB files alongside.
//!
//! Then, for each: a bare read loop with libpcap and with our reader (the ceiling), apiwatch
//! with one worker and with two, each run three times (medians), and tshark extracting the
//! HTTP requests from a slice of the file, with apiwatch on the same slice. Prints a table.

use crate::release_binary;
use anyhow::{bail, Context, Result};
use apiwatch_testlab::{self as netns, Lab};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn cache_dir() -> PathBuf {
    std::env::var_os("APIWATCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/apiwatch-bench"))
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    if args.first().map(String::as_str) == Some("live") {
        return live(root, quick);
    }
    if args.first().map(String::as_str) == Some("clients") {
        return crate::clients_bench::run(&release_binary(root)?, &cache_dir(), quick);
    }
    if args.first().map(String::as_str) == Some("ship") {
        // The small-calls capture of the replay benchmark: one record per transaction.
        let target_mb: u64 = if quick { 80 } else { 520 };
        let small = cache_dir().join(capture_name("small", target_mb));
        if !small.exists() {
            std::fs::create_dir_all(cache_dir())?;
            make_capture(&small, target_mb << 20, false).with_context(|| format!("making {}", small.display()))?;
        }
        return crate::ship_bench::run(&release_binary(root)?, &small);
    }
    if matches!(args.first().map(String::as_str), Some("inventory" | "classify")) {
        if cfg!(debug_assertions) {
            // Measure optimized code: run this benchmark from a release build of xtask.
            return crate::run(
                Command::new("cargo")
                    .args(["run", "--release", "-q", "-p", "xtask", "--", "bench"])
                    .args(args)
                    .current_dir(root),
            );
        }
        if args[0] == "classify" {
            let py = if args.iter().any(|a| a == "--no-presidio") {
                None
            } else {
                crate::classify_quality::presidio_python(&cache_dir().join("presidio-venv"))
            };
            return crate::classify_quality::speed(root, py.as_deref());
        }
        return inventory_memory(quick);
    }
    let target_mb: u64 = if quick { 80 } else { 520 };
    let bin = release_binary(root)?;
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)?;
    let small = dir.join(capture_name("small", target_mb));
    let mixed = dir.join(capture_name("mixed", target_mb));
    for (path, large) in [(&small, false), (&mixed, true)] {
        if !path.exists() {
            make_capture(path, target_mb << 20, large).with_context(|| format!("making {}", path.display()))?;
        }
    }
    println!("\napiwatch replay benchmark (2 cores; medians of 3 runs; captures in {})", dir.display());
    for (name, path) in [("small API calls", &small), ("mixed (+4 MiB bodies)", &mixed)] {
        bench_file(&bin, name, path, quick)?;
    }
    Ok(())
}

/// Record wrk (and curl downloads) against nginx until the capture reaches `bytes`.
/// Client connections wrk keeps open while the captures are made. An API server sees many
/// clients: with a handful of connections, flow sharding cannot spread the work evenly.
const WRK_CONNECTIONS: u32 = 64;

/// The cached capture's file name; it changes with how the capture is made.
fn capture_name(kind: &str, target_mb: u64) -> String {
    format!("{kind}-{target_mb}-c{WRK_CONNECTIONS}.pcap")
}

fn make_capture(out: &Path, bytes: u64, large: bool) -> Result<()> {
    netns::available().map_err(anyhow::Error::msg)?;
    println!("making {} (about {} MB, once; cached)", out.display(), bytes >> 20);
    let tmp = tempfile::tempdir()?;
    let lab = Lab::new()?;
    let nginx = start_nginx(&lab, tmp.path())?;
    let partial = out.with_extension("partial");
    let dump = lab
        .cmd(&lab.srv, "tcpdump")
        .args(["-i", &lab.srv_if, "-s", "0", "-B", "131072", "-w"])
        .arg(&partial)
        .arg("tcp port 8081")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    sleep(Duration::from_millis(1500));
    let url = format!("http://{}:8081/customers.json?page=1", netns::SRV4);
    // The headers a typical API client sends.
    let mut wrk = lab
        .cmd(&lab.cli, "wrk")
        .args(["-t", "1", "-c", &WRK_CONNECTIONS.to_string(), "-d", "600s"])
        .args(["-H", "Accept: application/json"])
        .args(["-H", "User-Agent: billing-service/2.4.1 (python-requests/2.31)"])
        .args(["-H", "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtYmlsbGluZyIsInNjb3BlIjoiY3VzdG9tZXJzOnJlYWQifQ.c2lnbmF0dXJlLW9mLWEtdGVzdC10b2tlbg"])
        .args(["-H", "X-Request-Id: 6f1c2a9e-1b7d-4c59-9b1e-3d2a7c8f0e11"])
        .arg(&url)
        .stdout(Stdio::null())
        .spawn()?;
    let mut downloads = if large {
        let big = format!("http://{}:8081/large.bin", netns::SRV4);
        let script = format!("while true; do curl -s -o /dev/null {big}; sleep 0.2; done");
        Some(lab.cmd(&lab.cli, "sh").args(["-c", &script]).spawn()?)
    } else {
        None
    };
    let start = Instant::now();
    loop {
        let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if size >= bytes {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("capture did not reach {bytes} bytes in 10 minutes");
        }
        sleep(Duration::from_millis(200));
    }
    let _ = wrk.kill();
    let _ = wrk.wait();
    if let Some(d) = downloads.as_mut() {
        let _ = d.kill();
        let _ = d.wait();
    }
    let _ = Command::new("kill").args(["-INT", &dump.id().to_string()]).status();
    let dump_out = dump.wait_with_output()?;
    let msg = String::from_utf8_lossy(&dump_out.stderr);
    if let Some(line) = msg.lines().find(|l| l.contains("dropped by kernel")) {
        println!("  tcpdump: {}", line.trim());
    }
    stop_nginx(nginx);
    drop(lab);
    std::fs::rename(&partial, out)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

struct Run {
    secs: f64,
    packets: u64,
    transactions: u64,
    peak_rss: u64,
    /// CPU seconds per pipeline thread.
    thread_cpu: BTreeMap<String, f64>,
}

fn apiwatch_run(bin: &Path, file: &Path, workers: usize) -> Result<Run> {
    apiwatch_run_with(bin, file, workers, &[])
}

fn apiwatch_run_with(bin: &Path, file: &Path, workers: usize, extra: &[&str]) -> Result<Run> {
    let stats = tempfile::NamedTempFile::new()?;
    let out = Command::new(bin)
        .args(["replay", "-q", "-o", "/dev/null", "--workers", &workers.to_string(), "--stats"])
        .arg(stats.path())
        .args(extra)
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!("apiwatch failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(stats.path())?)?;
    Ok(Run {
        secs: v["run"]["elapsed_s"].as_f64().unwrap_or(0.0),
        packets: v["packets"]["packets"].as_u64().unwrap_or(0),
        transactions: v["http"]["transactions"].as_u64().unwrap_or(0),
        peak_rss: v["run"]["peak_rss_bytes"].as_u64().unwrap_or(0),
        thread_cpu: v["run"]["thread_cpu_s"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect())
            .unwrap_or_default(),
    })
}

fn read_only(bin: &Path, file: &Path, reader: &str) -> Result<f64> {
    let out = Command::new(bin).args(["read-only", "--reader", reader]).arg(file).output()?;
    if !out.status.success() {
        bail!("read-only failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["seconds"].as_f64().unwrap_or(0.0))
}

fn gbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs.max(1e-9) / 1e9
}

fn bench_file(bin: &Path, name: &str, file: &Path, quick: bool) -> Result<()> {
    let size = std::fs::metadata(file)?.len();
    // Warm the page cache so the first run is not a disk benchmark.
    crate::run(Command::new("cat").arg(file).stdout(Stdio::null()))?;
    let reps = 3;
    let mut libpcap = Vec::new();
    let mut ours_read = Vec::new();
    let mut one = Vec::new();
    let mut two = Vec::new();
    let mut one_off = Vec::new();
    let mut one_nocls = Vec::new();
    let mut one_nodet = Vec::new();
    let mut one_bare = Vec::new();
    let mut two_bare = Vec::new();
    for _ in 0..reps {
        libpcap.push(read_only(bin, file, "libpcap")?);
        ours_read.push(read_only(bin, file, "mmap")?);
        one.push(apiwatch_run(bin, file, 1)?);
        one_off.push(apiwatch_run_with(bin, file, 1, &["--no-inventory"])?.secs);
        one_nocls.push(apiwatch_run_with(bin, file, 1, &["--no-classify"])?.secs);
        one_nodet.push(apiwatch_run_with(bin, file, 1, &["--no-detect"])?.secs);
        one_bare.push(apiwatch_run_with(bin, file, 1, &["--no-inventory", "--no-detect"])?.secs);
        two_bare.push(apiwatch_run_with(bin, file, 2, &["--no-inventory", "--no-detect"])?.secs);
        two.push(apiwatch_run(bin, file, 2)?);
    }
    let r1_off = median(one_off);
    let r1_nocls = median(one_nocls);
    let r1_nodet = median(one_nodet);
    let r1_bare = median(one_bare);
    let r2_bare = median(two_bare);
    let r1 = median(one.iter().map(|r| r.secs).collect());
    let r2 = median(two.iter().map(|r| r.secs).collect());
    let (pk, tx) = (one[0].packets, one[0].transactions);
    let rss = one.iter().chain(two.iter()).map(|r| r.peak_rss).max().unwrap_or(0);
    let lp = median(libpcap);
    let orr = median(ours_read);

    // tshark on a slice of the file, and apiwatch on the same slice.
    let slice = tempfile::Builder::new().suffix(".pcap").tempfile()?;
    let count = if quick { "20000" } else { "200000" };
    crate::run(
        Command::new("tcpdump")
            .args(["-r"])
            .arg(file)
            .args(["-c", count, "-w"])
            .arg(slice.path())
            .stderr(Stdio::null()),
    )?;
    let slice_size = std::fs::metadata(slice.path())?.len();
    let t0 = Instant::now();
    let ts = Command::new("tshark")
        .args(["-r"])
        .arg(slice.path())
        .args(["-Y", "http.request", "-T", "fields", "-e", "http.request.method", "-e", "http.request.uri"])
        .stderr(Stdio::null())
        .output()?;
    let tshark_secs = t0.elapsed().as_secs_f64();
    let tshark_requests = ts.stdout.iter().filter(|&&b| b == b'\n').count();
    // The same with output comparable to ours: every HTTP field as newline-delimited JSON.
    let t1 = Instant::now();
    let ek = Command::new("tshark")
        .args(["-r"])
        .arg(slice.path())
        .args(["-Y", "http", "-T", "ek", "-j", "http"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let tshark_ek_secs = t1.elapsed().as_secs_f64();
    if !ek.success() {
        bail!("tshark -T ek failed");
    }
    let ours_slice =
        median((0..reps).map(|_| apiwatch_run(bin, slice.path(), 1).map(|r| r.secs)).collect::<Result<Vec<_>>>()?);
    let ours_slice2 =
        median((0..reps).map(|_| apiwatch_run(bin, slice.path(), 2).map(|r| r.secs)).collect::<Result<Vec<_>>>()?);
    let slice_tx = apiwatch_run(bin, slice.path(), 1)?.transactions;
    let bare = ["--no-inventory", "--no-detect"];
    let ours_slice_bare = median(
        (0..reps)
            .map(|_| apiwatch_run_with(bin, slice.path(), 1, &bare).map(|r| r.secs))
            .collect::<Result<Vec<_>>>()?,
    );
    let ours_slice_bare2 = median(
        (0..reps)
            .map(|_| apiwatch_run_with(bin, slice.path(), 2, &bare).map(|r| r.secs))
            .collect::<Result<Vec<_>>>()?,
    );

    println!("\n== {name}: {} ({:.0} MB, {} packets, {} transactions)", file.display(), size as f64 / 1e6, pk, tx);
    println!("  {:<46} {:>9} {:>12} {:>14}", "", "Gbit/s", "packets/s", "transactions/s");
    let row = |label: &str, secs: f64, txs: bool| {
        let t = if txs { format!("{:>14.0}", tx as f64 / secs) } else { format!("{:>14}", "-") };
        println!("  {:<46} {:>9.2} {:>12.0} {}", label, gbps(size, secs), pk as f64 / secs, t);
    };
    row("libpcap read loop (nothing else)", lp, false);
    row("our mmap reader (nothing else)", orr, false);
    row("apiwatch replay, 1 worker, transactions only", r1_bare, true);
    row("apiwatch replay, 1 worker, no inventory", r1_off, true);
    row("apiwatch replay, 1 worker, no classifier", r1_nocls, true);
    row("apiwatch replay, 1 worker, no detections", r1_nodet, true);
    row("apiwatch replay, 1 worker (default)", r1, true);
    row("apiwatch replay, 2 workers, transactions only", r2_bare, true);
    row("apiwatch replay, 2 workers (sharded)", r2, true);
    println!("  peak RSS of apiwatch: {:.1} MB", rss as f64 / 1e6);
    println!(
        "  inventory on vs off (1 worker, no classifier): {:.0} vs {:.0} transactions/s ({:.2}x; {:.2} µs per transaction)",
        tx as f64 / r1_nocls,
        tx as f64 / r1_off,
        r1_off / r1_nocls,
        (r1_nocls - r1_off).max(0.0) * 1e6 / tx.max(1) as f64
    );
    println!(
        "  classifier on vs off (1 worker, default sampling): {:.0} vs {:.0} transactions/s ({:.2}x; {:.2} µs per transaction)",
        tx as f64 / r1,
        tx as f64 / r1_nocls,
        r1_nocls / r1,
        (r1 - r1_nocls).max(0.0) * 1e6 / tx.max(1) as f64
    );
    println!(
        "  detections on vs off (1 worker, default settings): {:.0} vs {:.0} transactions/s (costs {:.1}% of throughput; {:.2} µs per transaction)",
        tx as f64 / r1,
        tx as f64 / r1_nodet,
        (1.0 - r1_nodet / r1) * 100.0,
        (r1 - r1_nodet).max(0.0) * 1e6 / tx.max(1) as f64
    );
    println!("  ratios: 1 worker = {:.2}x the libpcap read loop; 2 workers = {:.2}x 1 worker", lp / r1, r1 / r2);
    // Where the CPU goes (the median run of each): sharding adds work (segments cross
    // threads and caches), which bounds what a second core can give.
    let cpu_of = |runs: &[Run]| -> (f64, String) {
        let mut v: Vec<&Run> = runs.iter().collect();
        v.sort_by(|a, b| a.secs.partial_cmp(&b.secs).unwrap_or(std::cmp::Ordering::Equal));
        let m = v[v.len() / 2];
        let total: f64 = m.thread_cpu.values().sum();
        let parts: Vec<String> =
            m.thread_cpu.iter().filter(|(_, &s)| s >= 0.005).map(|(k, s)| format!("{k} {s:.2}")).collect();
        (total, parts.join(", "))
    };
    let (c1, _) = cpu_of(&one);
    let (c2, p2) = cpu_of(&two);
    println!("  CPU seconds: 1 worker {c1:.2}; 2 workers {c2:.2} ({p2})");
    println!(
        "  tshark on a {:.1} MB slice: {:.3} Gbit/s ({} requests) vs apiwatch {:.2} Gbit/s ({} transactions): {:.0}x",
        slice_size as f64 / 1e6,
        gbps(slice_size, tshark_secs),
        tshark_requests,
        gbps(slice_size, ours_slice),
        slice_tx,
        tshark_secs / ours_slice
    );
    println!(
        "  the same slice, transactions only (no analyzers): apiwatch {:.2} Gbit/s, {:.0}x tshark's fields ({:.2} Gbit/s, {:.0}x with 2 workers)",
        gbps(slice_size, ours_slice_bare),
        tshark_secs / ours_slice_bare,
        gbps(slice_size, ours_slice_bare2),
        tshark_secs / ours_slice_bare2
    );
    // What a ratio to tshark asks of this machine: the bare read loops bound every tool.
    let (ts_gbps, lp_gbps) = (gbps(slice_size, tshark_secs), gbps(size, lp));
    let hundredfold = 100.0 * ts_gbps;
    println!(
        "  scale: the libpcap read loop is {:.0}x tshark's fields and our bare reader {:.0}x; 100x tshark would be {:.1} Gbit/s, {:.0}% of the libpcap loop",
        lp_gbps / ts_gbps,
        gbps(size, orr) / ts_gbps,
        hundredfold,
        hundredfold / lp_gbps * 100.0
    );
    println!(
        "  tshark -T ek (all HTTP fields as NDJSON, like our output) on the slice: {:.3} Gbit/s: apiwatch is {:.0}x faster ({:.0}x with 2 workers)",
        gbps(slice_size, tshark_ek_secs),
        tshark_ek_secs / ours_slice,
        tshark_ek_secs / ours_slice2
    );
    Ok(())
}

// === live capture benchmark ===

/// Write nginx's files and configuration for the benchmarks into `dir`.
fn nginx_conf(dir: &Path) -> Result<PathBuf> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    // A typical API response: a page of a collection, about 1.3 kB of JSON; and a 4 MiB
    // download for the mixed capture.
    let items: Vec<String> = (0..8)
        .map(|i| format!("{{\"id\":{},\"name\":\"Customer {i}\",\"email\":\"c{i}@example.com\",\"plan\":\"pro\",\"created\":\"2026-01-0{}T10:00:00Z\",\"active\":true}}", 1000 + i, 1 + i % 9))
        .collect();
    std::fs::write(
        www.join("customers.json"),
        format!("{{\"page\":1,\"per_page\":8,\"items\":[{}]}}\n", items.join(",")),
    )?;
    let blob: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(www.join("large.bin"), blob)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user root; worker_processes 1; daemon off; pid {p}/nginx.pid; error_log {p}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300;\n\
               server {{ listen {srv}:8081; root {www}; }} }}\n",
            p = dir.display(),
            srv = netns::SRV4,
            www = www.display()
        ),
    )?;
    Ok(conf)
}

/// nginx in the lab's server namespace, serving the files of [`nginx_conf`].
fn start_nginx(lab: &Lab, dir: &Path) -> Result<std::process::Child> {
    let conf = nginx_conf(dir)?;
    let child = lab
        .cmd(&lab.srv, "nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    sleep(Duration::from_millis(800));
    Ok(child)
}

/// SIGTERM: nginx's master stops its workers (SIGKILL would orphan them).
fn stop_nginx(mut nginx: std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &nginx.id().to_string()]).status();
    let _ = nginx.wait();
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy CPU seconds of the whole machine (all cores), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = user to softirq, less idle and
    // iowait. Steal is time the hypervisor gave to other guests: not ours.
    let total: f64 = cpu.iter().take(7).sum();
    let idle = cpu.get(3).copied().unwrap_or(0.0) + cpu.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

fn iface_bytes(lab: &Lab) -> u64 {
    let read = |what: &str| -> u64 {
        let out = lab.cmd(&lab.srv, "cat").arg(format!("/sys/class/net/{}/statistics/{what}", lab.srv_if)).output();
        out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0)
    };
    read("rx_bytes") + read("tx_bytes")
}

fn metric(text: &str, name: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        if let Some((key, v)) = line.rsplit_once(' ') {
            m.insert(key.to_string(), v.parse().unwrap_or(0.0));
        }
    }
    m
}

fn live(root: &Path, quick: bool) -> Result<()> {
    netns::available().map_err(anyhow::Error::msg)?;
    let bin = release_binary(root)?;
    let tmp = tempfile::tempdir()?;
    let lab = Lab::new()?;
    let nginx = start_nginx(&lab, tmp.path())?;
    let secs = if quick { 3 } else { 6 };
    let levels: &[u32] = if quick { &[1, 8] } else { &[1, 4, 16, 64] };
    println!("\napiwatch live capture benchmark: wrk against nginx across a veth pair, {secs} s per level, client, server and apiwatch on the same 2 cores");
    println!(
        "  {:<6} {:>5} {:>10} {:>10} {:>6} {:>7} {:>13} {:>17}  drops",
        "backend", "conns", "offered", "captured", "lost", "Gbit/s", "apiwatch CPU", "machine CPU/1k tx"
    );
    // "none" is the same load with nothing capturing: the baseline the backends are judged by.
    for backend in ["none", "pcap", "ebpf"] {
        for &conns in levels {
            let out = tmp.path().join(format!("{backend}-{conns}.jsonl"));
            let mut aw = if backend == "none" {
                None
            } else {
                let cfg = tmp.path().join("apiwatch.toml");
                std::fs::write(
                    &cfg,
                    format!(
                        "[capture]\nbackend = \"{backend}\"\ninterfaces = [\"{}\"]\nports = [8081]\n[output]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:19465\"\n[log]\nlevel = \"warn\"\n",
                        lab.srv_if,
                        out.display()
                    ),
                )?;
                let child = lab
                    .cmd(&lab.srv, bin.to_str().unwrap_or("apiwatch"))
                    .args(["run", "--config"])
                    .arg(&cfg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                sleep(Duration::from_millis(1500));
                Some(child)
            };
            let pid = aw.as_ref().map(|c| c.id());
            let (cpu0, bytes0, sys0) = (pid.map_or(0.0, cpu_seconds), iface_bytes(&lab), machine_busy_seconds());
            let url = format!("http://{}:8081/customers.json", netns::SRV4);
            let wrk = lab
                .cmd(&lab.cli, "wrk")
                .args(["-t", &conns.min(2).to_string(), "-c", &conns.to_string(), "-d", &format!("{secs}s")])
                .args(["-H", "Accept: application/json", &url])
                .output()?;
            let text = String::from_utf8_lossy(&wrk.stdout);
            let offered: u64 = text
                .lines()
                .find(|l| l.contains("requests in"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let (bytes1, sys1) = (iface_bytes(&lab), machine_busy_seconds());
            let gbit = (bytes1 - bytes0) as f64 * 8.0 / 1e9;
            let machine = (sys1 - sys0) / (offered.max(1) as f64 / 1000.0);
            let Some(child) = aw.as_mut() else {
                println!(
                    "  {:<6} {:>5} {:>10} {:>10} {:>6} {:>7.2} {:>17} {:>11.3} s",
                    backend,
                    conns,
                    offered,
                    "-",
                    "-",
                    gbit / secs as f64,
                    "-",
                    machine
                );
                continue;
            };
            sleep(Duration::from_millis(1000));
            let cpu = cpu_seconds(child.id()) - cpu0;
            let m = lab.cmd(&lab.srv, "curl").args(["-s", "http://127.0.0.1:19465/metrics"]).output()?;
            let metrics = String::from_utf8_lossy(&m.stdout).to_string();
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            child.wait()?;
            let captured = std::fs::read_to_string(&out).map(|t| t.lines().count() as u64).unwrap_or(0);
            let drops: Vec<String> = metric(&metrics, "apiwatch_capture_drops_total")
                .into_iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(k, v)| format!("{}={v}", k.split("reason=\"").nth(1).unwrap_or("?").trim_end_matches("\"}")))
                .collect();
            println!(
                "  {:<6} {:>5} {:>10} {:>10} {:>6} {:>7.2} {:>7.2} s {:>3.1}/Gb {:>11.3} s  {}",
                backend,
                conns,
                offered,
                captured,
                offered.saturating_sub(captured),
                gbit / secs as f64,
                cpu,
                cpu / gbit.max(1e-9),
                machine,
                if drops.is_empty() { "none".to_string() } else { drops.join(" ") }
            );
        }
    }
    stop_nginx(nginx);
    drop(lab);
    println!("  offered: requests wrk completed; captured: transactions apiwatch wrote (in-flight requests at the end of a run may add a few either way)");
    println!("  apiwatch CPU: the process (user+system), and per Gbit of traffic on the interface; machine CPU: all cores busy time per 1000 requests, wrk and nginx included (the eBPF program runs in the traffic's softirq, which only this column sees), hypervisor steal excluded");
    println!("  none: the same load with nothing capturing. With one connection the rate is set by how fast idle vCPUs wake up: anything that keeps a core busy (libpcap's per-packet wakeups) raises it, so compare each backend with this row, not with each other");
    Ok(())
}

// === inventory memory ===

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Memory and update cost of the inventory at 100k endpoints: observations of 100k
/// distinct (host, method, path) that stay distinct (API words, never merged), each with a
/// response schema, fed straight to the inventory.
fn inventory_memory(quick: bool) -> Result<()> {
    use apiwatch_inventory::observe::Auth;
    use apiwatch_inventory::{Inventory, InventoryConfig, Observation};
    const W: &[&str] = &[
        "users",
        "orders",
        "items",
        "products",
        "invoices",
        "payments",
        "accounts",
        "teams",
        "projects",
        "files",
        "events",
        "reports",
        "settings",
        "tokens",
        "keys",
        "sessions",
        "groups",
        "roles",
        "policies",
        "logs",
        "metrics",
        "alerts",
        "jobs",
        "tasks",
        "builds",
        "releases",
        "tags",
        "comments",
        "messages",
        "threads",
        "channels",
        "webhooks",
        "domains",
        "records",
        "zones",
        "certificates",
        "backups",
        "snapshots",
        "volumes",
        "images",
        "regions",
        "plans",
        "subscriptions",
        "customers",
        "coupons",
        "refunds",
        "charges",
        "transfers",
        "balances",
        "statements",
    ];
    let target: usize = if quick { 20_000 } else { 100_000 };
    let body: &[u8] =
        br#"{"id":1,"name":"x","tags":["a"],"owner":{"id":2,"email":"a@b.c"},"created":"2024-01-01T00:00:00Z"}"#;
    let mut inv = Inventory::new(InventoryConfig {
        max_endpoints: 200_000,
        max_endpoints_per_host: 50_000,
        ..InventoryConfig::default()
    });
    let before = rss_bytes();
    // Call number `n`: `m /api/a/b` on host `svc<h>`, answered with `body`.
    let call = |n: usize, h: usize, m: &str, a: &str, b: &str| Observation {
        ts: n as i64 * 1000,
        host: format!("svc{h}.internal").into(),
        method: m.into(),
        path: format!("/api/{a}/{b}").into(),
        status: 200,
        latency_us: Some(800 + (n as u64 % 500)),
        req_type: None,
        resp_type: Some("application/json".into()),
        query: Vec::new(),
        auth: Auth::Bearer,
        external: n.is_multiple_of(7),
        client: "10.0.0.1".parse().expect("ip"),
        req_body: None,
        resp_body: Some(body.to_vec()),
        auth_label: "bearer".into(),
        material: None,
        picked: false,
    };
    let mut events = Vec::new();
    let mut reported = 0usize;
    let mut n = 0usize;
    let t0 = Instant::now();
    'outer: for h in 0..10 {
        for a in W {
            for b in W {
                for m in ["GET", "POST", "PUT", "DELETE"] {
                    let o = call(n, h, m, a, b);
                    inv.observe(&o, &mut events);
                    reported += events.len();
                    events.clear();
                    n += 1;
                    if n >= target {
                        break 'outer;
                    }
                }
            }
        }
    }
    let first = t0.elapsed().as_secs_f64();
    // Once every endpoint exists: the steady-state cost of an update.
    let t1 = Instant::now();
    let mut again = 0usize;
    for i in 0..n {
        // The same (host, method, path) as call i of the first pass.
        let (b, a) = (W[(i / 4) % W.len()], W[(i / 4 / W.len()) % W.len()]);
        let o = call(n + i, i / (W.len() * W.len() * 4), ["GET", "POST", "PUT", "DELETE"][i % 4], a, b);
        inv.observe(&o, &mut events);
        reported += events.len();
        events.clear();
        again += 1;
    }
    let steady = t1.elapsed().as_secs_f64();
    let after = rss_bytes();
    inv.finish(&mut events);
    reported += events.len();
    let stored: usize = inv.hosts.values().map(|h| serde_json::to_vec(h).map(|v| v.len()).unwrap_or(0)).sum();
    println!(
        "\ninventory at {} endpoints ({} hosts): {} new-endpoint events",
        inv.endpoints,
        inv.hosts.len(),
        reported
    );
    println!(
        "  memory: {:.1} MB resident for the inventory ({:.0} bytes per endpoint); stored form {:.1} MB",
        (after.saturating_sub(before)) as f64 / 1e6,
        after.saturating_sub(before) as f64 / inv.endpoints.max(1) as f64,
        stored as f64 / 1e6
    );
    println!(
        "  updates: {:.2} µs per observation creating endpoints, {:.2} µs per observation of a known endpoint",
        first * 1e6 / n as f64,
        steady * 1e6 / again.max(1) as f64
    );
    drop(inv);

    // Millions of distinct raw paths on one host (random names at three levels): the
    // templater must fold them into a few templates and stay within its node cap.
    let raw: usize = if quick { 200_000 } else { 2_000_000 };
    let mut inv = Inventory::new(InventoryConfig::default());
    let mut rng = crate::quality::Rng::new(99);
    let syll = |rng: &mut crate::quality::Rng| -> String {
        const C: &[u8] = b"bcdfghjklmnprstvz";
        const V: &[u8] = b"aeiou";
        (0..3 + rng.below(3))
            .flat_map(|_| [C[rng.below(17) as usize] as char, V[rng.below(5) as usize] as char])
            .collect()
    };
    let before = rss_bytes();
    let t2 = Instant::now();
    for i in 0..raw {
        let path = format!("/files/{}/{}/{}", syll(&mut rng), syll(&mut rng), syll(&mut rng));
        let mut o = Observation {
            ts: i as i64 * 1000,
            host: "files.internal".into(),
            method: "GET".into(),
            path: path.into(),
            status: 200,
            latency_us: Some(500),
            req_type: None,
            resp_type: None,
            query: Vec::new(),
            auth: Auth::None,
            external: false,
            client: "10.0.0.2".parse().expect("ip"),
            req_body: None,
            resp_body: None,
            auth_label: "none".into(),
            material: None,
            picked: false,
        };
        if i % 10 == 0 {
            o.method = "PUT".into();
        }
        inv.observe(&o, &mut events);
        events.clear();
    }
    let secs = t2.elapsed().as_secs_f64();
    let h = inv.hosts.get("files.internal");
    println!(
        "  {} distinct random paths on one host: {} endpoints ({}), {} live template nodes, {:.1} MB more resident, {:.2} µs per observation",
        raw,
        inv.endpoints,
        inv.views().iter().map(|v| format!("{} {}", v.method, v.template)).collect::<Vec<_>>().join(", "),
        h.map_or(0, |h| h.trie.live),
        rss_bytes().saturating_sub(before) as f64 / 1e6,
        secs * 1e6 / raw as f64
    );
    Ok(())
}
