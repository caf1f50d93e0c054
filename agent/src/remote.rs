//! Remote outputs: records shipped to an `apiwatch sink` over HTTPS (mTLS).
//!
//! The output thread offers every record it writes; a remote output keeps those of the
//! kinds it takes, seals them into batches (by count, size and age), gzips each batch and
//! appends it to its spool on disk. A sender thread of its own reads the spool and posts
//! the batches in order, one at a time, acknowledging them in the spool only when the sink
//! has answered 200. So a slow or dead sink never stalls capture: the spool takes the
//! records (up to its cap, then the oldest go, counted). Delivery is at least once; each
//! record's id is (the spool's stream, its seq), from which the sink drops repeats.

use crate::spool::{Spool, FLAG_GZIP};
use crate::tls::{self, ClientTls};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The record kinds, as in each record's `kind`.
pub const KINDS: &[&str] = &["transaction", "inventory", "sensitive_data", "detection"];

/// `[[outputs]]` in the configuration file (see packaging/apiwatch.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// A name for logs and metrics (default: the URL's host).
    #[serde(default)]
    pub name: Option<String>,
    /// `https` (an `apiwatch sink`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `https://sink.example:8443` (path `/v1/records` unless given), or
    /// `tls://siem.example:6514` for syslog.
    #[serde(default)]
    pub url: String,
    /// For `file` outputs: the NDJSON file, rotated at `max_mb` into `path.1` ... `path.N`
    /// (`keep` files besides the current one).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "d_max_mb")]
    pub max_mb: u64,
    #[serde(default = "d_keep")]
    pub keep: u32,
    /// CA certificates (PEM) that may issue the sink's certificate; default: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This agent's certificate and key (PEM), for sinks that require them (mTLS).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// SHA-256 fingerprints of sink certificates to accept (on top of verification).
    #[serde(default)]
    pub pin_sha256: Vec<String>,
    /// Record kinds sent; default: all but transactions.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Where the spool lives (default: `<inventory.state_dir>/spool/<name>`).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    #[serde(default = "d_spool_mb")]
    pub spool_max_mb: u64,
    #[serde(default = "d_batch_records")]
    pub batch_records: u32,
    #[serde(default = "d_batch_kb")]
    pub batch_kb: usize,
    #[serde(default = "d_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// `gzip` or `none`.
    #[serde(default = "d_compression")]
    pub compression: String,
    /// `native` (our records), `ocsf` (OCSF 1.3.0: Detection Finding, HTTP Activity), or,
    /// for syslog, `cef` (its default).
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
}

fn d_spool_mb() -> u64 {
    256
}
fn d_batch_records() -> u32 {
    2000
}
fn d_batch_kb() -> usize {
    1024
}
fn d_batch_wait_ms() -> u64 {
    1000
}
fn d_compression() -> String {
    "gzip".into()
}
fn d_max_mb() -> u64 {
    100
}
fn d_keep() -> u32 {
    5
}
fn d_timeout() -> u64 {
    10
}

/// The kind of a record line: our records start `{"kind":"...`. Empty for other lines.
pub fn record_kind(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"{\"kind\":\"").and_then(|r| r.iter().position(|&c| c == b'"').map(|e| &r[..e])).unwrap_or(b"")
}

/// Where a sink listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("tls://") {
        // Syslog over TLS (RFC 5425).
        (r, 6514)
    } else {
        return Err(format!("{url:?}: https:// (a sink) or tls:// (syslog over TLS) URLs only"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/records"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
        let port = v6[end + 1..].strip_prefix(':');
        (&v6[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
        None => default_port,
    };
    Ok(Endpoint {
        host: host.to_string(),
        port,
        path: if path.is_empty() { "/v1/records".into() } else { path.into() },
    })
}

impl RemoteConfig {
    /// The record format sent: as configured, else `cef` for syslog and `native` for https.
    pub fn format(&self) -> &str {
        self.format.as_deref().unwrap_or(if self.kind == "syslog" { "cef" } else { "native" })
    }

    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| match (&self.path, parse_url(&self.url)) {
            (Some(p), _) if self.kind == "file" => p.display().to_string(),
            (_, Ok(e)) => e.host,
            _ => "remote".into(),
        })
    }

    pub fn problems(&self, i: usize) -> Vec<crate::config::Problem> {
        let key = |k: &str| format!("outputs[{i}].{k}");
        let mut v = Vec::new();
        let mut p = |k: &str, m: String| v.push(crate::config::problem(&key(k), m));
        let scheme = match self.kind.as_str() {
            "https" => "https://",
            "syslog" => "tls://",
            "file" => "",
            other => {
                p("type", format!("{other:?} is not an output type (https, syslog, file)"));
                ""
            }
        };
        if self.kind == "file" {
            match &self.path {
                None => p("path", "a file output needs a path".into()),
                Some(f) if f.parent().is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()) => {
                    p("path", format!("{}: its directory does not exist", f.display()))
                }
                Some(_) => {}
            }
            if self.max_mb == 0 {
                p("max_mb", "must be at least 1".into());
            }
        } else {
            match parse_url(&self.url) {
                Err(e) => p("url", e),
                Ok(_) if !scheme.is_empty() && !self.url.starts_with(scheme) => {
                    p("url", format!("a {} output takes a {scheme} URL", self.kind))
                }
                Ok(_) => {}
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            p("client_cert", "client_cert and client_key go together".into());
        }
        for (f, path) in
            [("ca_file", &self.ca_file), ("client_cert", &self.client_cert), ("client_key", &self.client_key)]
        {
            if let Some(path) = path {
                if !path.is_file() {
                    p(f, format!("{} is not a readable file", path.display()));
                }
            }
        }
        for (k, pin) in self.pin_sha256.iter().enumerate() {
            let hex = pin.replace(':', "");
            if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                p(&format!("pin_sha256[{k}]"), format!("{pin:?} is not a SHA-256 fingerprint (64 hex digits)"));
            }
        }
        for k in self.kinds.iter().flatten() {
            if !KINDS.contains(&k.as_str()) {
                p("kinds", format!("{k:?} is not a record kind ({})", KINDS.join(", ")));
            }
        }
        let format = self.format();
        let formats: &[&str] = match self.kind.as_str() {
            "syslog" => &["cef", "native", "ocsf"],
            "file" => &["native", "ocsf", "cef"],
            _ => &["native", "ocsf"],
        };
        if !formats.contains(&format) {
            p("format", format!("{format:?}: {}", formats.join(", ")));
        } else if format == "ocsf" {
            for k in self.kinds.iter().flatten() {
                if KINDS.contains(&k.as_str()) && !crate::ocsf::KINDS.contains(&k.as_str()) {
                    p("kinds", format!("{k:?} records have no OCSF class: leave them out of an ocsf output"));
                }
            }
        }
        if !matches!(self.compression.as_str(), "gzip" | "none") {
            p("compression", format!("{:?}: gzip or none", self.compression));
        }
        for (k, n) in [
            ("spool_max_mb", self.spool_max_mb),
            ("batch_records", self.batch_records as u64),
            ("batch_kb", self.batch_kb as u64),
            ("batch_wait_ms", self.batch_wait_ms),
            ("timeout_secs", self.timeout_secs),
        ] {
            if n == 0 {
                p(k, "must be at least 1".into());
            }
        }
        v
    }
}

/// Counters of a remote output, shared with its sender and the metrics.
#[derive(Debug, Default)]
pub struct RemoteCounters {
    pub offered: AtomicU64,
    pub spooled: AtomicU64,
    pub sent_records: AtomicU64,
    pub sent_batches: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub failures: AtomicU64,
    /// Records the sink refused as malformed (a 4xx other than auth, timeout, rate).
    pub rejected: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub spool_pending: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Delivery latency of the last batch: from sealing to the sink's answer (µs).
    pub last_latency_us: AtomicU64,
}

struct Shared {
    spool: Mutex<Spool>,
    wake: Condvar,
    stop: AtomicBool,
    counters: RemoteCounters,
    /// When each batch still in the spool was sealed, by first seq (for latency), bounded.
    sealed_at: Mutex<std::collections::VecDeque<(u64, Instant)>>,
    /// Why the last delivery failed (empty once one succeeds).
    last_error: Mutex<String>,
    /// Delivery latency of each batch (µs, from sealing to the sink's answer), the first
    /// MAX_LATENCIES of a run.
    latencies: Mutex<Vec<u32>>,
}

const MAX_LATENCIES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Native,
    Ocsf,
    Cef,
}

pub struct Remote {
    pub name: String,
    url: String,
    kinds: Vec<String>,
    gzip: bool,
    format: Format,
    batch_records: u32,
    batch_bytes: usize,
    batch_wait: Duration,
    buf: Vec<u8>,
    n: u32,
    started: Option<Instant>,
    shared: Arc<Shared>,
    sender: Option<std::thread::JoinHandle<()>>,
}

/// What a remote output did, when it finished.
#[derive(Debug, Clone)]
pub struct RemoteReport {
    pub name: String,
    pub url: String,
    pub sent: u64,
    pub pending: u64,
    pub dropped: u64,
    pub rejected: u64,
    /// Why delivery failed last, if the last attempt failed.
    pub last_error: Option<String>,
    /// Delivery latency of batches sealed in this run (sealing to the sink's answer): p50
    /// and p99, in milliseconds, and how many batches.
    pub latency_ms: Option<(f64, f64, usize)>,
}

impl Remote {
    /// Open the spool and start the sender. `state_dir` holds the spool unless the
    /// configuration names one.
    pub fn start(cfg: &RemoteConfig, state_dir: Option<&Path>) -> Result<Remote> {
        let name = cfg.display_name();
        let ep = parse_url(&cfg.url).map_err(anyhow::Error::msg)?;
        let client = tls::client_config(&ClientTls {
            ca_file: cfg.ca_file.clone(),
            client_cert: cfg.client_cert.clone(),
            client_key: cfg.client_key.clone(),
            pins: cfg.pin_sha256.clone(),
        })
        .with_context(|| format!("output {name}: TLS settings"))?;
        let dir = match (&cfg.spool_dir, state_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(s)) => s.join("spool").join(&name),
            (None, None) => bail!("output {name}: no spool_dir and no state directory to keep a spool in"),
        };
        let max = cfg.spool_max_mb << 20;
        let spool = Spool::open(&dir, max, (max / 16).clamp(1 << 20, 64 << 20))
            .with_context(|| format!("output {name}: spool"))?;
        if spool.pending_records() > 0 {
            tracing::info!(output = %name, records = spool.pending_records(), "records left in the spool from before will be sent first");
        }
        let shared = Arc::new(Shared {
            counters: RemoteCounters::default(),
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            sealed_at: Mutex::new(Default::default()),
            last_error: Mutex::new(String::new()),
            latencies: Mutex::new(Vec::new()),
        });
        let sender = {
            let (shared, name, timeout) = (shared.clone(), name.clone(), Duration::from_secs(cfg.timeout_secs));
            let syslog = cfg.kind == "syslog";
            std::thread::Builder::new()
                .name(format!("ship-{name}"))
                .spawn(move || sender(shared, name, ep, Arc::new(client), timeout, syslog))?
        };
        let r = Remote {
            name,
            url: cfg.url.clone(),
            kinds: cfg.kinds.clone().unwrap_or_else(|| {
                let ocsf = cfg.format() == "ocsf";
                KINDS
                    .iter()
                    .filter(|k| **k != "transaction" && (!ocsf || crate::ocsf::KINDS.contains(k)))
                    .map(|k| k.to_string())
                    .collect()
            }),
            // Syslog sends line by line: its batches stay plain in the spool.
            gzip: cfg.compression == "gzip" && cfg.kind != "syslog",
            format: match cfg.format() {
                "ocsf" => Format::Ocsf,
                "cef" => Format::Cef,
                _ => Format::Native,
            },
            batch_records: cfg.batch_records,
            batch_bytes: cfg.batch_kb << 10,
            batch_wait: Duration::from_millis(cfg.batch_wait_ms),
            buf: Vec::new(),
            n: 0,
            started: None,
            shared,
            sender: Some(sender),
        };
        r.publish();
        Ok(r)
    }

    /// The counters as (metric suffix, kind, value), for the metrics endpoint.
    pub fn snapshot(&self) -> (String, Vec<(&'static str, &'static str, u64)>) {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            self.name.clone(),
            vec![
                ("offered_records_total", "counter", l(&c.offered)),
                ("spooled_records_total", "counter", l(&c.spooled)),
                ("sent_records_total", "counter", l(&c.sent_records)),
                ("sent_batches_total", "counter", l(&c.sent_batches)),
                ("sent_bytes_total", "counter", l(&c.sent_bytes)),
                ("failures_total", "counter", l(&c.failures)),
                ("rejected_records_total", "counter", l(&c.rejected)),
                ("spool_dropped_records_total", "counter", l(&c.spool_dropped)),
                ("spool_pending_records", "gauge", l(&c.spool_pending)),
                ("spool_bytes", "gauge", l(&c.spool_bytes)),
                ("delivery_latency_microseconds", "gauge", l(&c.last_latency_us)),
            ],
        )
    }

    /// Records (whole NDJSON lines) the output thread wrote: keep those of our kinds.
    pub fn offer(&mut self, lines: &[u8]) -> Result<()> {
        let mut rest = lines;
        while !rest.is_empty() {
            let end = memchr_nl(rest).map_or(rest.len(), |i| i + 1);
            let line = &rest[..end];
            rest = &rest[end..];
            if line.len() <= 1 || !self.wants(line) {
                continue;
            }
            self.shared.counters.offered.fetch_add(1, Ordering::Relaxed);
            if self.format == Format::Ocsf {
                let Some(converted) = crate::ocsf::convert(line) else { continue };
                self.buf.extend_from_slice(&converted);
            } else if self.format == Format::Cef {
                // The syslog severity first (one digit), then the CEF line.
                let Some((cef, sev)) = crate::cef::convert(line) else { continue };
                self.buf.extend_from_slice(format!("{sev} {cef}\n").as_bytes());
            } else {
                self.buf.extend_from_slice(line);
                if line.last() != Some(&b'\n') {
                    self.buf.push(b'\n');
                }
            }
            self.started.get_or_insert_with(Instant::now);
            self.n += 1;
            if self.n >= self.batch_records || self.buf.len() >= self.batch_bytes {
                self.seal()?;
            }
        }
        Ok(())
    }

    fn wants(&self, line: &[u8]) -> bool {
        let kind = record_kind(line);
        self.kinds.iter().any(|k| k.as_bytes() == kind)
    }

    /// Seal the batch if it is old enough (called a few times a second).
    pub fn tick(&mut self) -> Result<()> {
        if self.started.is_some_and(|t| t.elapsed() >= self.batch_wait) {
            self.seal()?;
        }
        self.publish();
        Ok(())
    }

    /// The batch so far goes to the spool.
    pub fn seal(&mut self) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let (payload, flags) = if self.gzip {
            let mut z =
                flate2::write::GzEncoder::new(Vec::with_capacity(self.buf.len() / 4), flate2::Compression::fast());
            z.write_all(&self.buf)?;
            (z.finish()?, FLAG_GZIP)
        } else {
            (std::mem::take(&mut self.buf), 0)
        };
        let first = {
            let mut sp = self.shared.spool.lock().unwrap_or_else(|e| e.into_inner());
            let dropped_before = sp.counters.dropped_records;
            let first = sp.append(self.n, flags, &payload).with_context(|| format!("output {}: spool", self.name))?;
            let lost = sp.counters.dropped_records - dropped_before;
            if lost > 0 {
                tracing::warn!(output = %self.name, records = lost, "spool full: the oldest records were dropped");
            }
            first
        };
        {
            let mut s = self.shared.sealed_at.lock().unwrap_or_else(|e| e.into_inner());
            if s.len() >= 4096 {
                s.pop_front();
            }
            s.push_back((first, Instant::now()));
        }
        self.shared.counters.spooled.fetch_add(self.n as u64, Ordering::Relaxed);
        self.buf.clear();
        self.n = 0;
        self.started = None;
        self.shared.wake.notify_all();
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let sp = self.shared.spool.lock().unwrap_or_else(|e| e.into_inner());
        let c = &self.shared.counters;
        c.spool_pending.store(sp.pending_records(), Ordering::Relaxed);
        c.spool_bytes.store(sp.bytes(), Ordering::Relaxed);
        c.spool_dropped.store(sp.counters.dropped_records, Ordering::Relaxed);
    }

    /// Seal what is left, give the sender up to `drain` to deliver the spool, then stop it.
    /// What is not delivered stays in the spool for the next start.
    pub fn finish(mut self, drain: Duration) -> Result<RemoteReport> {
        self.seal()?;
        let deadline = Instant::now() + drain;
        loop {
            let pending = self.shared.spool.lock().unwrap_or_else(|e| e.into_inner()).pending_records();
            if pending == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(t) = self.sender.take() {
            let _ = t.join();
        }
        let mut sp = self.shared.spool.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sp.sync();
        let c = &self.shared.counters;
        Ok(RemoteReport {
            name: self.name.clone(),
            url: self.url.clone(),
            sent: c.sent_records.load(Ordering::Relaxed),
            pending: sp.pending_records(),
            dropped: sp.counters.dropped_records,
            rejected: c.rejected.load(Ordering::Relaxed),
            last_error: Some(self.shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .filter(|e| !e.is_empty()),
            latency_ms: {
                let mut l = self.shared.latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
                l.sort_unstable();
                let q = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
                (!l.is_empty()).then(|| (q(0.5), q(0.99), l.len()))
            },
        })
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// How a post ended.
enum Posted {
    Ok,
    /// The sink refused the batch as malformed: retrying cannot help.
    Rejected(String),
}

/// The sender: posts the spool's batches in order until told to stop.
fn sender(
    shared: Arc<Shared>,
    name: String,
    ep: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    syslog: bool,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(output = %name, error = %e, "cannot start the sender");
            return;
        }
    };
    let stream_id = shared.spool.lock().unwrap_or_else(|e| e.into_inner()).stream();
    rt.block_on(async move {
        let mut conn: Option<Conn> = None;
        let mut conn2: Option<Conn> = None;
        let mut sys: Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> = None;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "-".into());
        let mut backoff = Duration::from_millis(100);
        let mut last_error = String::new();
        let mut jitter = Jitter::new();
        // The reason the sink gave last in this run of failures: a refused certificate shows
        // on one connection's end, and the next attempt may only see the connection closed.
        let mut reason: Option<String> = None;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            // Two batches at a time to a sink (the sink reads one while it stores the
            // other); syslog, one.
            let batches = match shared.spool.lock().unwrap_or_else(|e| e.into_inner()).peek_n(if syslog { 1 } else { 2 }) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(output = %name, error = %format!("{e:#}"), "cannot read the spool");
                    Vec::new()
                }
            };
            if batches.is_empty() {
                // Nothing to send: wait for a sealed batch (or a stop).
                let sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
                let _ = shared.wake.wait_timeout(sp, Duration::from_millis(200));
                continue;
            }
            let late = |r: Result<Result<Posted, String>, tokio::time::error::Elapsed>| {
                r.unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
            };
            let results = if syslog {
                vec![late(tokio::time::timeout(timeout, write_syslog(&mut sys, &ep, &tls, &host, stream_id, &batches[0])).await)]
            } else if batches.len() == 1 {
                vec![late(tokio::time::timeout(timeout, post(&mut conn, &ep, &tls, stream_id, &batches[0])).await)]
            } else {
                let (a, b) = tokio::join!(
                    tokio::time::timeout(timeout, post(&mut conn, &ep, &tls, stream_id, &batches[0])),
                    tokio::time::timeout(timeout, post(&mut conn2, &ep, &tls, stream_id, &batches[1])),
                );
                vec![late(a), late(b)]
            };
            // In order: a batch counts only if every one before it went through (the spool
            // acknowledges a prefix; a later one that went through is sent again, and the
            // sink keeps one copy).
            let mut failed = None;
            for (batch, res) in batches.iter().zip(results) {
                match res {
                    Ok(outcome) => delivered(&shared, &name, batch, &outcome),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let c = &shared.counters;
            match failed {
                None => {
                    if !last_error.is_empty() {
                        tracing::info!(output = %name, "the sink is reachable again");
                        last_error.clear();
                        shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    }
                    backoff = Duration::from_millis(100);
                    reason = None;
                }
                Some(e) => {
                    conn = None;
                    conn2 = None;
                    sys = None;
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    let e = match e.split_once(" // ") {
                        Some((what, why)) => {
                            reason = Some(why.to_string());
                            format!("{what}: {why}")
                        }
                        None => match &reason {
                            Some(r) => format!("{e} (the sink's last reason: {r})"),
                            None => e,
                        },
                    };
                    if e != last_error {
                        tracing::warn!(output = %name, error = %e, "cannot deliver to the sink; records stay in the spool, retrying");
                        shared.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone_from(&e);
                        last_error = e;
                    }
                    // Exponential backoff with jitter (half to full), capped at 30 s; a stop
                    // request ends the wait.
                    let wait = backoff.mul_f64(0.5 + 0.5 * jitter.next());
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !shared.stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20).min(wait)).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
}

/// A batch went through (or was refused as malformed, and is dropped): count it, note its
/// latency, acknowledge it in the spool.
fn delivered(shared: &Shared, name: &str, batch: &crate::spool::Batch, outcome: &Posted) {
    let c = &shared.counters;
    if let Posted::Rejected(why) = outcome {
        c.rejected.fetch_add(batch.count as u64, Ordering::Relaxed);
        tracing::error!(output = %name, first_seq = batch.first_seq, records = batch.count, reason = %why, "the sink refused a batch; it is dropped");
    } else {
        c.sent_records.fetch_add(batch.count as u64, Ordering::Relaxed);
        c.sent_batches.fetch_add(1, Ordering::Relaxed);
        c.sent_bytes.fetch_add(batch.payload.len() as u64, Ordering::Relaxed);
    }
    {
        let mut s = shared.sealed_at.lock().unwrap_or_else(|e| e.into_inner());
        while s.front().is_some_and(|(f, _)| *f < batch.first_seq) {
            s.pop_front();
        }
        if s.front().is_some_and(|(f, _)| *f == batch.first_seq) {
            if let Some((_, t)) = s.pop_front() {
                let us = t.elapsed().as_micros() as u64;
                c.last_latency_us.store(us, Ordering::Relaxed);
                let mut l = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() < MAX_LATENCIES {
                    l.push(us.min(u32::MAX as u64) as u32);
                }
            }
        }
    }
    let mut sp = shared.spool.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = sp.ack(batch.first_seq + batch.count as u64) {
        tracing::error!(output = %name, error = %format!("{e:#}"), "cannot record the acknowledgement");
    }
    c.spool_pending.store(sp.pending_records(), Ordering::Relaxed);
    c.spool_bytes.store(sp.bytes(), Ordering::Relaxed);
}

/// A small xorshift for jitter (seeded from the clock: jitter needs no secrecy).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Jitter(seed | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// TCP then TLS to `ep`, the sink's certificate verified; errors in words.
async fn tls_connect(
    ep: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", ep.host, ep.port))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
        .map_err(|e| format!("{:?} is not a valid server name: {e}", ep.host))?;
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}:{}: {}", ep.host, ep.port, tls::explain(&e)))
}

/// A connection to the sink, and where its driver leaves the error that ended it (TLS 1.3
/// servers refuse a client certificate after the handshake, so that is where it shows).
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    ended: Arc<Mutex<Option<String>>>,
}

async fn connect(ep: &Endpoint, tls: &Arc<rustls::ClientConfig>) -> Result<Conn, String> {
    let mut stream = tls_connect(ep, tls).await?;
    refused(&mut stream).await.map_err(|e| format!("TLS with {}:{}: {e}", ep.host, ep.port))?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP with {}:{}: {e}", ep.host, ep.port))?;
    let ended = Arc::new(Mutex::new(None));
    let slot = ended.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(tls::explain(&e));
        }
    });
    Ok(Conn { send, ended })
}

/// In TLS 1.3 the client's handshake ends before the server has checked the client's
/// certificate: a refusal comes as an alert just after. Wait a moment for it, so that the
/// reason is known (a sink that accepts sends nothing; the wait then ends by its timeout).
async fn refused<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut probe = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut probe)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => {
            Err("the sink closed the connection after the handshake (did it refuse this agent's certificate?)".into())
        }
        Ok(Ok(_)) => Err("the sink spoke first, which it does not".into()),
        Ok(Err(e)) => Err(tls::explain(&e)),
    }
}

/// Send a batch to a syslog receiver over TLS (RFC 5425: each message octet-counted):
/// RFC 5424 messages from facility local0, app `apiwatch`, the record kind as MSGID; CEF
/// lines get `externalId=<stream>-<seq>` so that a SIEM can drop repeats. Done when written:
/// syslog has no acknowledgement.
async fn write_syslog(
    conn: &mut Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    ep: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    stream: u64,
    b: &crate::spool::Batch,
) -> Result<Posted, String> {
    use tokio::io::AsyncWriteExt;
    if conn.is_none() {
        *conn = Some(tls_connect(ep, tls).await?);
    }
    let s = conn.as_mut().ok_or("no connection")?;
    {
        // A receiver that closed the connection since the last batch would take the next
        // write into a dead socket: look for its end first.
        use tokio::io::AsyncReadExt;
        let mut probe = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
            *conn = None;
            return Err(match r {
                Ok(0) => "the syslog receiver closed the connection".to_string(),
                Ok(_) => "the syslog receiver sent data (it should not)".to_string(),
                Err(e) => format!("connection to the syslog receiver: {}", tls::explain(&e)),
            });
        }
    }
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into());
    let mut out = Vec::with_capacity(b.payload.len() + 128 * b.count as usize);
    for (i, line) in b.payload.split(|&c| c == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let seq = b.first_seq + i as u64;
        let text = String::from_utf8_lossy(line);
        // CEF lines come with their syslog severity first.
        let (sev, body, msgid) = match text.split_once(' ') {
            Some((d, rest)) if d.len() == 1 && rest.starts_with("CEF:") => {
                let kind = rest.split('|').nth(4).and_then(|s| s.split(':').next()).unwrap_or("-").to_string();
                (d.parse::<u8>().unwrap_or(6), format!("{rest} externalId={stream:016x}-{seq}"), kind)
            }
            _ => (6, text.to_string(), "record".to_string()),
        };
        let msg = format!("<{}>1 {now} {host} apiwatch - {msgid} - {body}", 16 * 8 + sev as u32);
        out.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
    }
    s.write_all(&out).await.map_err(|e| format!("writing to the syslog receiver: {}", tls::explain(&e)))?;
    s.flush().await.map_err(|e| format!("writing to the syslog receiver: {}", tls::explain(&e)))?;
    Ok(Posted::Ok)
}

async fn post(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    tls: &Arc<rustls::ClientConfig>,
    stream: u64,
    b: &crate::spool::Batch,
) -> Result<Posted, String> {
    if conn.as_ref().is_none_or(|c| c.send.is_closed()) {
        *conn = Some(connect(ep, tls).await?);
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let ended = c.ended.clone();
    // Why the connection ended, if its driver said (it may need a moment to).
    let why = |e: String| async move {
        for _ in 0..50 {
            if let Some(w) = ended.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return format!("{e} // {w}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        e
    };
    let send = &mut c.send;
    if let Err(e) = send.ready().await {
        return Err(why(format!("connection to the sink lost ({e})")).await);
    }
    let mut req = hyper::Request::post(&ep.path)
        .header("host", format!("{}:{}", ep.host, ep.port))
        .header("content-type", "application/x-ndjson")
        .header("user-agent", concat!("apiwatch/", env!("CARGO_PKG_VERSION")))
        .header("x-apiwatch-stream", format!("{stream:016x}"))
        .header("x-apiwatch-first-seq", b.first_seq.to_string())
        .header("x-apiwatch-count", b.count.to_string());
    if b.flags & FLAG_GZIP != 0 {
        req = req.header("content-encoding", "gzip");
    }
    let req = req.body(Full::new(Bytes::from(b.payload.clone()))).map_err(|e| e.to_string())?;
    let resp = match send.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Err(why(format!("sending to the sink ({e})")).await),
    };
    let status = resp.status();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string();
    match status.as_u16() {
        200..=299 => Ok(Posted::Ok),
        401 | 403 | 408 | 429 => Err(format!("the sink answered {status}: {text}")),
        400..=499 => Ok(Posted::Rejected(format!("{status}: {text}"))),
        _ => Err(format!("the sink answered {status}: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://sink.example:8443").unwrap(),
            Endpoint { host: "sink.example".into(), port: 8443, path: "/v1/records".into() }
        );
        assert_eq!(
            parse_url("https://[::1]/x").unwrap(),
            Endpoint { host: "::1".into(), port: 443, path: "/x".into() }
        );
        assert!(parse_url("http://sink").unwrap_err().contains("URLs only"));
        assert_eq!(parse_url("tls://siem:6514").unwrap().port, 6514);
        assert_eq!(parse_url("tls://siem").unwrap().port, 6514);
        assert!(parse_url("https://sink:99999").unwrap_err().contains("not a port"));
    }
}
