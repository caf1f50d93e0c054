//! `cargo xtask bench ship`: records from agents to an `apiwatch sink` over mTLS on
//! loopback. Every transaction of a capture is shipped (kinds = transaction), so the
//! record count is large and known. Measured: one agent end to end (against the same
//! replay with no remote output, the peer of the same run); the spool's write rate (sink
//! down) and drain rate (sink back); two agents at once (the sink's ingest rate); delivery
//! latency p50/p99; and a sink killed and restarted at full rate, after which the store
//! must hold every record once.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sink(Child, u16);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink(bin: &Path, dir: &Path, port: u16) -> Result<Sink> {
    let cfg = dir.join("sink.toml");
    let pki = dir.join("pki");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\ndatabase = {:?}\n",
            pki.join("sink.pem"),
            pki.join("sink-key.pem"),
            pki.join("ca.pem"),
            dir.join("sink.db")
        ),
    )?;
    let mut child =
        Command::new(bin).args(["sink", "--config"]).arg(&cfg).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("sink stdout")?).read_line(&mut line)?;
    let port =
        line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).with_context(|| format!("sink said {line:?}"))?;
    Ok(Sink(child, port))
}

fn agent_config(dir: &Path, name: &str, port: u16) -> Result<PathBuf> {
    let pki = dir.join("pki");
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[inventory]\nstate_dir = {:?}\n\n[[outputs]]\ntype = \"https\"\nurl = \"https://127.0.0.1:{port}\"\nca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\nkinds = [\"transaction\"]\nspool_max_mb = 2048\n",
            dir.join(format!("state-{name}")),
            pki.join("ca.pem"),
            pki.join(format!("agent-{name}.pem")),
            pki.join(format!("agent-{name}-key.pem")),
        ),
    )?;
    Ok(p)
}

/// What one replay shipped: (seconds, summary line of the output, latency line).
fn replay(bin: &Path, cfg: Option<&Path>, file: &Path, drain: u64) -> Result<(f64, u64, String)> {
    let t = Instant::now();
    let mut c = Command::new(bin);
    c.args(["replay", "--no-inventory", "-o", "/dev/null", "--drain-timeout", &drain.to_string()]);
    if let Some(cfg) = cfg {
        c.arg("--config").arg(cfg);
    }
    let o = c.arg(file).output()?;
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    if !o.status.success() {
        bail!("replay failed: {err}");
    }
    let delivered = err
        .lines()
        .find_map(|l| l.split("): ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let latency = err.lines().find(|l| l.contains("delivery latency")).unwrap_or("").trim().to_string();
    Ok((secs, delivered, latency))
}

fn stored(bin: &Path, db: &Path) -> Result<u64> {
    let o = Command::new(bin).args(["sink", "query", "agents", "--json", "--db"]).arg(db).output()?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["records"].as_u64())
        .sum())
}

pub fn run(bin: &Path, capture: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let st = Command::new(bin)
        .args(["sink", "certs", "--sink-name", "localhost,127.0.0.1", "--agent", "a1,a2", "--out"])
        .arg(dir.join("pki"))
        .output()?;
    if !st.status.success() {
        bail!("certs: {}", String::from_utf8_lossy(&st.stderr));
    }
    println!("\nshipping benchmark: every transaction of {} shipped as a record over mTLS on loopback (2 cores shared by agent and sink)", capture.display());
    let (base, _, _) = replay(bin, None, capture, 0)?;
    let sink = start_sink(bin, dir, 0)?;
    let port = sink.1;
    let a1 = agent_config(dir, "a1", port)?;
    let (secs, n, lat) = replay(bin, Some(&a1), capture, 600)?;
    println!(
        "  one agent, end to end: {n} records in {secs:.2} s: {:.0} records/s (the same replay with no remote output: {base:.2} s)",
        n as f64 / secs
    );
    println!("    {lat}");
    // Spool: written with the sink down, then drained.
    drop(sink);
    let empty = dir.join("empty.pcap");
    std::fs::write(
        &empty,
        [
            &0xa1b2c3d4u32.to_le_bytes()[..],
            &2u16.to_le_bytes(),
            &4u16.to_le_bytes(),
            &[0; 8],
            &65535u32.to_le_bytes(),
            &1u32.to_le_bytes(),
        ]
        .concat(),
    )?;
    let (secs_w, _, _) = replay(bin, Some(&a1), capture, 0)?;
    println!(
        "  spool write (sink down): {n} records in {secs_w:.2} s: {:.0} records/s (replay included)",
        n as f64 / secs_w
    );
    let sink = start_sink(bin, dir, port)?;
    let (secs_d, m, _) = replay(bin, Some(&a1), &empty, 600)?;
    println!("  spool drain (sink back): {m} records in {secs_d:.2} s: {:.0} records/s", m as f64 / secs_d);
    // Two agents at once.
    let a2 = agent_config(dir, "a2", port)?;
    let t = Instant::now();
    let (b1, c1, f1) = (bin.to_path_buf(), a1.clone(), capture.to_path_buf());
    let (b2, c2, f2) = (bin.to_path_buf(), a2.clone(), capture.to_path_buf());
    let h1 = std::thread::spawn(move || replay(&b1, Some(&c1), &f1, 600));
    let h2 = std::thread::spawn(move || replay(&b2, Some(&c2), &f2, 600));
    let (r1, r2) = (
        h1.join().map_err(|_| anyhow::anyhow!("agent thread"))??,
        h2.join().map_err(|_| anyhow::anyhow!("agent thread"))??,
    );
    let secs2 = t.elapsed().as_secs_f64();
    println!(
        "  two agents at once: {} records in {secs2:.2} s: sink ingest {:.0} records/s",
        r1.1 + r2.1,
        (r1.1 + r2.1) as f64 / secs2
    );
    // The sink killed and restarted while an agent ships at full rate.
    let before = stored(bin, &dir.join("sink.db"))?;
    let (b1, c1, f1) = (bin.to_path_buf(), a1.clone(), capture.to_path_buf());
    let h = std::thread::spawn(move || replay(&b1, Some(&c1), &f1, 600));
    std::thread::sleep(Duration::from_millis(700));
    drop(sink);
    std::thread::sleep(Duration::from_millis(500));
    let _sink = start_sink(bin, dir, port)?;
    let (_, k, _) = h.join().map_err(|_| anyhow::anyhow!("agent thread"))??;
    let after = stored(bin, &dir.join("sink.db"))?;
    let verdict = if after - before == k { "none lost, none stored twice" } else { "MISMATCH" };
    println!("  sink killed and restarted mid-stream: {k} records shipped, {} stored: {verdict}", after - before);
    if after - before != k {
        bail!("records lost or duplicated across a sink restart");
    }
    Ok(())
}
