//! `apiwatch sink`: the central receiver. An HTTPS server (tokio, hyper, rustls) that
//! requires a client certificate from its CA, takes batches of records from agents, drops
//! the repeats of at-least-once delivery by record id, and stores the rest (SQLite).
//!
//! The protocol: `POST /v1/records`, body NDJSON (gzip if `Content-Encoding: gzip`), one
//! record a line, with `X-Apiwatch-Stream` (hex), `X-Apiwatch-First-Seq` and
//! `X-Apiwatch-Count`: record `i` of the batch has id (agent, stream, first seq + i), the
//! agent being the name in its certificate. Answers: 200 `{"stored":N,"duplicates":D}`;
//! 400 for a malformed batch (the message says what and where), 413 when too large, 415
//! for an unknown encoding, 404 elsewhere. `GET /v1/health` answers 200.

pub mod certs;
pub mod store;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `sink.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Address and port to listen on.
    #[serde(default = "d_listen")]
    pub listen: String,
    /// The sink's certificate (chain) and key, PEM.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates (PEM) whose client certificates are accepted: agents must present
    /// one.
    pub client_ca: PathBuf,
    /// `sqlite`, or `postgres` (several receivers may share one database).
    #[serde(default = "d_backend")]
    pub backend: String,
    /// With `backend = "postgres"`: a libpq connection string or URL
    /// (`host=/var/run/postgresql dbname=apiwatch user=apiwatch`).
    #[serde(default)]
    pub postgres: Option<String>,
    /// The SQLite database file.
    #[serde(default = "d_database")]
    pub database: PathBuf,
    /// Records older than this (by reception) are deleted; 0 keeps everything.
    #[serde(default = "d_retention")]
    pub retention_days: u64,
    /// Largest batch accepted, compressed and decompressed (MiB).
    #[serde(default = "d_max_batch")]
    pub max_batch_mb: usize,
}

fn d_listen() -> String {
    "0.0.0.0:8443".into()
}
fn d_backend() -> String {
    "sqlite".into()
}
fn d_database() -> PathBuf {
    PathBuf::from("/var/lib/apiwatch-sink/sink.db")
}
fn d_retention() -> u64 {
    30
}
fn d_max_batch() -> usize {
    64
}

impl SinkConfig {
    pub fn open_store(&self) -> Result<store::Store> {
        match (self.backend.as_str(), &self.postgres) {
            ("postgres", Some(url)) => store::Store::open_postgres(url),
            _ => store::Store::open(&self.database),
        }
    }

    pub fn load(path: &Path) -> Result<SinkConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: SinkConfig = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mut problems = Vec::new();
        if cfg.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("listen: {:?} is not an address:port", cfg.listen));
        }
        match (cfg.backend.as_str(), &cfg.postgres) {
            ("sqlite", _) | ("postgres", Some(_)) => {}
            ("postgres", None) => problems.push("postgres: backend = \"postgres\" needs a connection string".into()),
            (other, _) => problems.push(format!("backend: {other:?} is not a store this sink has (sqlite, postgres)")),
        }
        for (k, f) in [("cert", &cfg.cert), ("key", &cfg.key), ("client_ca", &cfg.client_ca)] {
            if !f.is_file() {
                problems.push(format!("{k}: {} is not a readable file", f.display()));
            }
        }
        if cfg.max_batch_mb == 0 {
            problems.push("max_batch_mb: must be at least 1".into());
        }
        if !problems.is_empty() {
            bail!("{}: {}", path.display(), problems.join("; "));
        }
        Ok(cfg)
    }
}

/// A batch ready for the store.
struct Job {
    agent: String,
    fingerprint: String,
    addr: String,
    stream: u64,
    first_seq: u64,
    data: Vec<u8>,
    /// Per record: its span in `data`, its kind's span, its time's span.
    recs: Vec<((usize, usize), String, Option<String>)>,
    reply: tokio::sync::oneshot::Sender<Result<(u64, u64), String>>,
}

#[derive(Default)]
pub struct SinkCounters {
    pub batches: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused_batches: AtomicU64,
    pub handshakes_failed: AtomicU64,
}

/// Run the sink until SIGTERM or SIGINT (or `stop`); `ready` is told the bound address.
pub fn serve(cfg: &SinkConfig, stop: Arc<AtomicBool>, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let tls = Arc::new(crate::tls::server_config(&cfg.cert, &cfg.key, &cfg.client_ca)?);
    let mut st = cfg.open_store()?;
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(64);
    let retention = cfg.retention_days;
    // The store has one writer: this thread.
    let writer = std::thread::Builder::new().name("sink-store".into()).spawn(move || {
        let mut last_expiry = std::time::Instant::now() - Duration::from_secs(3600);
        while let Ok(j) = jobs_rx.recv() {
            let recs: Vec<store::Record> = j
                .recs
                .iter()
                .map(|((a, z), kind, ts)| store::Record {
                    kind,
                    ts: ts.as_deref(),
                    body: std::str::from_utf8(&j.data[*a..*z]).unwrap_or(""),
                })
                .collect();
            let from = store::Sender { agent: &j.agent, fingerprint: &j.fingerprint, addr: &j.addr };
            let r = st.ingest(&from, j.stream, j.first_seq, &recs, unix_now()).map_err(|e| format!("{e:#}"));
            let _ = j.reply.send(r);
            if retention > 0 && last_expiry.elapsed() >= Duration::from_secs(600) {
                last_expiry = std::time::Instant::now();
                match st.expire(unix_now() - (retention * 86400) as i64) {
                    Ok(n) if n > 0 => tracing::info!(records = n, "expired records past retention"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "retention"),
                }
            }
        }
    })?;
    let counters = Arc::new(SinkCounters::default());
    let max_bytes = cfg.max_batch_mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listen: SocketAddr = cfg.listen.parse().context("listen")?;
    let result =
        rt.block_on(async {
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            ready(listener.local_addr()?);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                let Ok(accepted) = accepted else { continue };
                let (tcp, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        continue;
                    }
                };
                let (acceptor, jobs, counters) = (acceptor.clone(), jobs_tx.clone(), counters.clone());
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(peer = %addr, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(peer = %addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned() else {
                        tracing::warn!(peer = %addr, "no client certificate");
                        return;
                    };
                    let peer =
                        Arc::new((crate::tls::peer_name(&cert), crate::tls::fingerprint(&cert), addr.to_string()));
                    let svc = hyper::service::service_fn(move |req| {
                        let (peer, jobs, counters) = (peer.clone(), jobs.clone(), counters.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(req, &peer, jobs, &counters, max_bytes).await)
                        }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await
                    {
                        tracing::debug!(peer = %addr, error = %e, "connection ended");
                    }
                });
            }
            Ok::<(), anyhow::Error>(())
        });
    drop(jobs_tx);
    // Connections still open end with the runtime; the store thread finishes its queue.
    drop(rt);
    let _ = writer.join();
    tracing::info!(
        batches = counters.batches.load(Ordering::Relaxed),
        stored = counters.stored.load(Ordering::Relaxed),
        duplicates = counters.duplicates.load(Ordering::Relaxed),
        "sink stopped"
    );
    result
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn refuse(counters: &SinkCounters, status: StatusCode, why: String) -> Response<Full<Bytes>> {
    counters.refused_batches.fetch_add(1, Ordering::Relaxed);
    answer(status, serde_json::json!({ "error": why }).to_string())
}

/// What the sink reads of a record: our `kind` and `ts`, or an OCSF event's `class_uid` and
/// `time` (milliseconds).
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    class_uid: Option<u32>,
    #[serde(default)]
    time: Option<i64>,
}

impl Head<'_> {
    /// The kind stored: ours, or `ocsf_<class>` for OCSF events.
    fn kind(&self) -> Option<String> {
        match (&self.kind, self.class_uid) {
            (Some(k), _) if !k.is_empty() => Some(k.to_string()),
            (_, Some(2004)) => Some("ocsf_detection_finding".into()),
            (_, Some(4002)) => Some("ocsf_http_activity".into()),
            (_, Some(c)) => Some(format!("ocsf_{c}")),
            _ => None,
        }
    }

    fn ts(&self) -> Option<String> {
        self.ts.as_ref().map(|t| t.to_string()).or_else(|| {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(self.time? as i128 * 1_000_000).ok()?;
            t.format(&time::format_description::well_known::Rfc3339).ok()
        })
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    peer: &(String, String, String),
    jobs: std::sync::mpsc::SyncSender<Job>,
    counters: &SinkCounters,
    max_bytes: usize,
) -> Response<Full<Bytes>> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/v1/health") => return answer(StatusCode::OK, "{\"status\":\"ok\"}".into()),
        ("POST", "/v1/records") => {}
        _ => return answer(StatusCode::NOT_FOUND, "{\"error\":\"POST /v1/records or GET /v1/health\"}".into()),
    }
    let h = req.headers();
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(stream) = header("x-apiwatch-stream").and_then(|s| u64::from_str_radix(&s, 16).ok()) else {
        return refuse(counters, StatusCode::BAD_REQUEST, "X-Apiwatch-Stream missing or not hex".into());
    };
    let Some(first_seq) = header("x-apiwatch-first-seq").and_then(|s| s.parse::<u64>().ok()) else {
        return refuse(counters, StatusCode::BAD_REQUEST, "X-Apiwatch-First-Seq missing or not a number".into());
    };
    let Some(count) = header("x-apiwatch-count").and_then(|s| s.parse::<usize>().ok()) else {
        return refuse(counters, StatusCode::BAD_REQUEST, "X-Apiwatch-Count missing or not a number".into());
    };
    let gzip = match header("content-encoding").as_deref() {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return refuse(
                counters,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content encoding {other:?} (gzip or identity)"),
            )
        }
    };
    let body = match Limited::new(req.into_body(), max_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return refuse(counters, StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e} (at most {max_bytes} bytes)"))
        }
    };
    let data = if gzip {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&body[..]).take(max_bytes as u64 + 1).read_to_end(&mut out) {
            Ok(_) if out.len() > max_bytes => {
                return refuse(
                    counters,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("more than {max_bytes} bytes decompressed"),
                )
            }
            Ok(_) => out,
            Err(e) => return refuse(counters, StatusCode::BAD_REQUEST, format!("gzip: {e}")),
        }
    } else {
        body.to_vec()
    };
    let mut recs = Vec::with_capacity(count);
    let mut at = 0;
    for (i, line) in data.split(|&c| c == b'\n').enumerate() {
        let (a, z) = (at, at + line.len());
        at = z + 1;
        if line.is_empty() {
            continue;
        }
        if std::str::from_utf8(line).is_err() {
            return refuse(counters, StatusCode::BAD_REQUEST, format!("line {}: not UTF-8", i + 1));
        }
        match serde_json::from_slice::<Head>(line).map(|hd| (hd.kind(), hd.ts())) {
            Ok((Some(kind), ts)) => recs.push(((a, z), kind, ts)),
            Ok((None, _)) => {
                return refuse(
                    counters,
                    StatusCode::BAD_REQUEST,
                    format!("line {}: a record has a kind (or, in OCSF, a class_uid)", i + 1),
                )
            }
            Err(e) => return refuse(counters, StatusCode::BAD_REQUEST, format!("line {}: not a record: {e}", i + 1)),
        }
    }
    if recs.len() != count {
        return refuse(
            counters,
            StatusCode::BAD_REQUEST,
            format!("X-Apiwatch-Count says {count} records, the body has {}", recs.len()),
        );
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    let job = Job {
        agent: peer.0.clone(),
        fingerprint: peer.1.clone(),
        addr: peer.2.clone(),
        stream,
        first_seq,
        data,
        recs,
        reply,
    };
    // The store's queue is bounded: a full queue makes the agent wait (and retry).
    let sent = tokio::task::spawn_blocking(move || jobs.send(job).is_ok()).await;
    if !matches!(sent, Ok(true)) {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"store stopped\"}".into());
    }
    match rx.await {
        Ok(Ok((stored, dups))) => {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.stored.fetch_add(stored, Ordering::Relaxed);
            counters.duplicates.fetch_add(dups, Ordering::Relaxed);
            answer(StatusCode::OK, format!("{{\"stored\":{stored},\"duplicates\":{dups}}}"))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store");
            answer(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "error": e }).to_string())
        }
        Err(_) => answer(StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"store stopped\"}".into()),
    }
}

/// `apiwatch sink query`: what the store holds, as a table or JSON lines.
pub fn query(
    mut st: store::Store,
    what: &str,
    kinds: &[String],
    agent: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<String> {
    let mut out = String::new();
    use std::fmt::Write;
    if what == "agents" {
        let agents = st.agents()?;
        if json {
            for a in agents {
                let _ = writeln!(out, "{a}");
            }
        } else {
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>10}  {:<20} {:<20} last address",
                "agent", "records", "duplicates", "first seen", "last seen"
            );
            for a in agents {
                let _ = writeln!(
                    out,
                    "{:<24} {:>10} {:>10}  {:<20} {:<20} {}",
                    a["agent"].as_str().unwrap_or(""),
                    a["records"].as_i64().unwrap_or(0),
                    a["duplicates"].as_i64().unwrap_or(0),
                    rfc3339(a["first_seen"].as_i64().unwrap_or(0)),
                    rfc3339(a["last_seen"].as_i64().unwrap_or(0)),
                    a["last_addr"].as_str().unwrap_or("")
                );
            }
        }
        return Ok(out);
    }
    let kinds: Vec<&str> = match what {
        "findings" => vec!["sensitive_data", "detection", "ocsf_detection_finding"],
        "inventory" => vec!["inventory"],
        "records" => kinds.iter().map(String::as_str).collect(),
        other => bail!("{other:?}: agents, findings, inventory or records"),
    };
    for (agent, body) in st.records(&kinds, agent, None, limit)? {
        if json {
            // The record with the agent that sent it.
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(mut m)) => {
                    m.insert("agent".into(), agent.into());
                    let _ = writeln!(out, "{}", serde_json::Value::Object(m));
                }
                _ => {
                    let _ = writeln!(out, "{body}");
                }
            }
        } else {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let f = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
            let _ = writeln!(
                out,
                "{:<16} {:<15} {:<18} {:<24} {:<7} {:<32} {}",
                agent,
                f("kind"),
                f("event"),
                f("host"),
                f("method"),
                f("template"),
                match f("kind").as_str() {
                    "sensitive_data" => format!("{} at {} {} ({})", f("type"), f("location"), f("field"), f("masked")),
                    _ => String::new(),
                }
            );
        }
    }
    Ok(out)
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_sink_config_has_only_real_keys() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/sink.toml");
        let c: super::SinkConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).expect("parses");
        assert_eq!((c.backend.as_str(), c.retention_days), ("sqlite", 30));
    }
}
