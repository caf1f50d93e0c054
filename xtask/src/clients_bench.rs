//! `cargo xtask bench clients [--quick]`: memory and speed of a replay where every
//! transaction comes from another client address (a million of them), against the same
//! number of transactions from a thousand clients, with detections on and off.
//!
//! The captures are synthesized (nothing here can bring a million addresses to a real
//! server): one TCP connection per transaction, handshake, a GET, a small JSON answer and
//! a reset, 50 µs apart, with correct checksums. Cached beside the replay benchmark's.

use anyhow::{bail, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

pub fn run(bin: &Path, dir: &Path, quick: bool) -> Result<()> {
    let n: u32 = if quick { 100_000 } else { 1_000_000 };
    std::fs::create_dir_all(dir)?;
    let many = dir.join(format!("clients-{n}-distinct.pcap"));
    let few = dir.join(format!("clients-{n}-from-1000.pcap"));
    for (path, clients) in [(&many, n), (&few, 1000)] {
        if !path.exists() {
            println!("writing {} ({n} transactions from {clients} clients)", path.display());
            write(path, n, clients)?;
        }
    }
    println!(
        "\n{:<34} {:>12} {:>10} {:>11} {:>13} {:>16} {:>17}",
        "capture", "detections", "seconds", "peak RSS", "transactions", "clients dropped", "principals dropped"
    );
    let mut rss = Vec::new();
    for (label, path) in [(format!("{n} distinct clients"), &many), ("1000 clients".to_string(), &few)] {
        for detect in [true, false] {
            let stats = tempfile::NamedTempFile::new()?;
            let mut c = Command::new(bin);
            c.args(["replay", "-q", "-o", "/dev/null", "--workers", "1", "--stats"]).arg(stats.path());
            if !detect {
                c.arg("--no-detect");
            }
            let out = c.arg(path).output()?;
            if !out.status.success() {
                bail!("apiwatch failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(stats.path())?)?;
            let peak = v["run"]["peak_rss_bytes"].as_u64().unwrap_or(0);
            let d = &v["detect"];
            println!(
                "{:<34} {:>12} {:>10.2} {:>8.1} MB {:>13} {:>16} {:>17}",
                label,
                if detect { "on" } else { "off" },
                v["run"]["elapsed_s"].as_f64().unwrap_or(0.0),
                peak as f64 / 1e6,
                v["http"]["transactions"].as_u64().unwrap_or(0),
                d["clients_dropped_cap"].as_u64().map_or("-".into(), |x| x.to_string()),
                d["principals_dropped_cap"].as_u64().map_or("-".into(), |x| x.to_string()),
            );
            rss.push(peak as f64);
        }
    }
    println!(
        "\npeak RSS, {n} distinct clients against 1000 clients: detections on {:.2}x, off {:.2}x; \
         detections cost {:.1} MB with {n} clients and {:.1} MB with 1000",
        rss[0] / rss[2].max(1.0),
        rss[1] / rss[3].max(1.0),
        (rss[0] - rss[1]) / 1e6,
        (rss[2] - rss[3]) / 1e6
    );
    Ok(())
}

/// `n` transactions, transaction `i` from client `i % clients`, one connection each.
fn write(path: &Path, n: u32, clients: u32) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    // pcap, microseconds, Ethernet.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let server = [10, 0, 0, 2];
    let start_us: u64 = 1_764_000_000 * 1_000_000;
    let mut frame = Vec::with_capacity(2048);
    for i in 0..n {
        let c = i % clients;
        // Public addresses (external clients), 11.0.0.1 and up.
        let client = (0x0b00_0001u32 + c).to_be_bytes();
        let sport = 1024 + ((i / clients) % 60000) as u16;
        let t = start_us + i as u64 * 50;
        let (cseq, sseq) = (i.wrapping_mul(2_654_435_761), i.wrapping_mul(40_503) ^ 0x5555_0000);
        let req = format!("GET /items/{} HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1.0\r\n\r\n", i % 5000);
        let body =
            format!("{{\"id\":{},\"name\":\"item {}\",\"price\":{}.{:02}}}", i % 5000, i % 5000, i % 97, i % 100);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let up = (client, server, sport, 8080u16);
        let down = (server, client, 8080u16, sport);
        let packets: [(u64, _, u32, u32, u8, &[u8]); 5] = [
            (t, up, cseq, 0, 0x02, b""),
            (t + 100, down, sseq, cseq + 1, 0x12, b""),
            (t + 200, up, cseq + 1, sseq + 1, 0x18, req.as_bytes()),
            (t + 1000, down, sseq + 1, cseq + 1 + req.len() as u32, 0x18, resp.as_bytes()),
            (t + 1100, up, cseq + 1 + req.len() as u32, 0, 0x04, b""),
        ];
        for (ts, (src, dst, sp, dp), seq, ack, flags, payload) in packets {
            tcp_frame(&mut frame, src, dst, sp, dp, seq, ack, flags, payload);
            w.write_all(&((ts / 1_000_000) as u32).to_le_bytes())?;
            w.write_all(&((ts % 1_000_000) as u32).to_le_bytes())?;
            w.write_all(&(frame.len() as u32).to_le_bytes())?;
            w.write_all(&(frame.len() as u32).to_le_bytes())?;
            w.write_all(&frame)?;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    f: &mut Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) {
    f.clear();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let ip_at = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let sum = !fold(sum16(&f[ip_at..ip_at + 20], 0));
    f[ip_at + 10..ip_at + 12].copy_from_slice(&sum.to_be_bytes());
    let tcp_at = f.len();
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    let len = (f.len() - tcp_at) as u32;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    let sum = !fold(sum16(&f[tcp_at..], sum16(&pseudo, 0)));
    f[tcp_at + 16..tcp_at + 18].copy_from_slice(&sum.to_be_bytes());
}

fn sum16(b: &[u8], mut acc: u64) -> u64 {
    for c in b.chunks(2) {
        acc += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
    }
    acc
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}
