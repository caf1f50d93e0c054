//! The detection stage: the worker half ([`inspect`]) runs where transactions are parsed;
//! the owner half ([`DetectStage`]) runs in the thread that writes records, after the
//! inventory has placed the transaction on an endpoint, and writes `detection` records.

use crate::output::NdjsonOutput;
use anyhow::Result;
use apiwatch_detect::{Context, Detector, DetectorConfig, Event, Finding, Inspection, Inspector};
use apiwatch_inventory::Observation;
use apiwatch_model::format_rfc3339_micros;
use apiwatch_model::Transaction;
use std::net::IpAddr;

/// What the owner needs of one transaction for detections (moved across threads).
#[derive(Debug, Default)]
pub struct Detected {
    pub ins: Inspection,
    pub ts: i64,
    pub peer: Option<IpAddr>,
    pub server: Option<IpAddr>,
    pub status: u16,
    /// Host, method and path when the transaction makes no observation (inventory off, or
    /// not an API call: an invalid method, no request).
    pub fallback: Option<Box<(String, String, String)>>,
}

/// The worker half: inspect a transaction before the observation takes its bodies.
pub fn inspect(inspector: &mut Inspector, tx: &Transaction) -> Detected {
    let mut d = Detected {
        ts: tx.ts(),
        peer: Some(tx.client.0),
        server: Some(tx.server.0),
        status: tx.response.as_deref().map_or(0, |r| r.status),
        ..Detected::default()
    };
    inspector.inspect(tx, &mut d.ins);
    d
}

/// Host, method and path of a transaction that made no observation.
pub fn fallback(tx: &Transaction) -> Option<Box<(String, String, String)>> {
    let req = tx.request.as_deref();
    let s = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or(b"")).chars().take(256).collect::<String>();
    let uri = req.map(|r| r.uri()).unwrap_or(b"");
    let path = &uri[..uri.iter().position(|&c| c == b'?').unwrap_or(uri.len())];
    Some(Box::new((s(req.and_then(|r| r.host())), s(req.map(|r| r.method())), s(Some(path)))))
}

pub struct DetectStage {
    pub detector: Detector,
    findings: Vec<Finding>,
    line: Vec<u8>,
}

impl DetectStage {
    pub fn new(cfg: DetectorConfig) -> DetectStage {
        DetectStage { detector: Detector::new(cfg), findings: Vec::new(), line: Vec::new() }
    }

    /// One transaction, after the inventory saw its observation (`template` gives the
    /// endpoint it landed on, computed only when a finding may need it).
    pub fn observe(
        &mut self,
        d: &Detected,
        o: Option<&Observation>,
        facts: Option<&apiwatch_model::EndpointFacts>,
        template: &dyn Fn() -> Option<String>,
        out: &mut NdjsonOutput,
    ) -> Result<()> {
        let unknown = IpAddr::from([0, 0, 0, 0]);
        let (host, method, path, client) = match (o, &d.fallback) {
            (Some(o), _) => (&*o.host, &*o.method, &*o.path, o.client),
            (None, Some(f)) => (f.0.as_str(), f.1.as_str(), f.2.as_str(), d.peer.unwrap_or(unknown)),
            (None, None) => ("", "", "", d.peer.unwrap_or(unknown)),
        };
        let cx = Context {
            ts: d.ts,
            client,
            server: d.server.unwrap_or(unknown),
            host,
            method,
            template: path,
            template_of: o.map(|_| template),
            path,
            status: d.status,
            facts,
        };
        self.detector.observe(&cx, &d.ins, &mut self.findings);
        self.write(out)
    }

    /// Time passed (packet time) without traffic: close the windows that ended.
    pub fn tick(&mut self, now: i64, out: &mut NdjsonOutput) -> Result<()> {
        self.detector.sweep(now, &mut self.findings);
        self.write(out)
    }

    pub fn finish(&mut self, out: &mut NdjsonOutput) -> Result<()> {
        self.detector.finish(&mut self.findings);
        self.write(out)
    }

    fn write(&mut self, out: &mut NdjsonOutput) -> Result<()> {
        for f in self.findings.drain(..) {
            self.line.clear();
            render(&f, &mut self.line);
            out.raw(&self.line, 1)?;
        }
        Ok(())
    }
}

/// `{"kind":"detection","schema_version":1,"ts":...,"event":"new"|"repeated",...}`.
pub fn render(f: &Finding, out: &mut Vec<u8>) {
    #[derive(serde::Serialize)]
    struct Mitre {
        tactic: &'static str,
        technique: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Actor<'a> {
        ip: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        principal: Option<&'a str>,
        side: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Endpoint<'a> {
        host: &'a str,
        method: &'a str,
        template: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Record<'a> {
        kind: &'static str,
        schema_version: u32,
        ts: String,
        event: &'static str,
        id: &'a str,
        detection: &'static str,
        owasp: &'static str,
        mitre: Mitre,
        severity: &'static str,
        actor: Actor<'a>,
        endpoint: Endpoint<'a>,
        status: u16,
        location: &'a str,
        signs: &'a [&'static str],
        evidence: &'a str,
        explanation: &'static str,
        count: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        first_ts: Option<String>,
    }
    let rule = f.rule.rule();
    let (event, count, first) = match &f.event {
        Event::New => ("new", 1, None),
        Event::Repeated { count, first_ts, .. } => ("repeated", *count, Some(format_rfc3339_micros(*first_ts))),
    };
    let r = Record {
        kind: "detection",
        schema_version: apiwatch_model::SCHEMA_VERSION,
        ts: format_rfc3339_micros(f.ts),
        event,
        id: &f.id,
        detection: rule.name,
        owasp: rule.owasp,
        mitre: Mitre { tactic: rule.mitre_tactic, technique: rule.mitre_technique },
        severity: f.severity.name(),
        actor: Actor {
            ip: f.actor.to_string(),
            principal: f.principal.as_deref(),
            side: match rule.side {
                apiwatch_detect::rules::Side::Client => "client",
                apiwatch_detect::rules::Side::Server => "server",
            },
        },
        endpoint: Endpoint { host: &f.host, method: &f.method, template: &f.template },
        status: f.status,
        location: &f.location,
        signs: &f.signs,
        evidence: &f.evidence,
        explanation: rule.explain,
        count,
        first_ts: first,
    };
    let _ = serde_json::to_writer(&mut *out, &r);
    out.push(b'\n');
}
