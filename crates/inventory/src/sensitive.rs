//! Sensitive data per endpoint: which transactions the classifier reads (sampled per
//! endpoint, after templating, within a byte budget in packet time), and what each
//! endpoint was seen to expose (type, location, field, response classes, counts).

use crate::endpoint::Counts;
use crate::observe::Observation;
use apiwatch_classify::{Classifier, DataType, Finding, Location};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct SensitiveConfig {
    pub classifier: apiwatch_classify::Config,
    /// Names of the custom types, by index (`DataType::Custom(i)`).
    pub custom_names: Vec<String>,
    /// Every one of an endpoint's first `first` transactions is scanned...
    pub first: u64,
    /// ...then one in `every`.
    pub every: u64,
    /// Bytes of each body scanned at most.
    pub max_body_bytes: usize,
    /// Bytes scanned per second of packet time, all endpoints together (a CPU budget that
    /// gives the same answer on every replay).
    pub bytes_per_sec: u64,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            classifier: apiwatch_classify::Config::default(),
            custom_names: Vec::new(),
            first: 32,
            every: 64,
            max_body_bytes: 64 << 10,
            bytes_per_sec: 16 << 20,
        }
    }
}

/// Coverage counters: how much was seen, read and skipped, so that an empty report can be
/// told from an unread one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SensitiveCounters {
    pub transactions_seen: u64,
    pub transactions_sampled: u64,
    pub skipped_rate: u64,
    pub skipped_budget: u64,
    pub bodies_scanned: u64,
    pub bodies_truncated: u64,
    pub bytes_scanned: u64,
    pub findings: u64,
    pub exposures_dropped_cap: u64,
}

/// One (type, location, field) an endpoint was seen to carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Exposure {
    #[serde(rename = "type")]
    pub ty: Box<str>,
    pub location: Box<str>,
    pub field: Box<str>,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Highest confidence seen (0-100).
    pub confidence: u8,
    /// Transactions by response class (`2xx`, `4xx`, `none`...).
    pub status_classes: Counts,
    /// Sent to or from a client outside the internal networks.
    pub external: bool,
    /// A masked example (never the value).
    pub example: Box<str>,
    /// Distinct keyed hashes seen (up to `MAX_HASHES`): how many different values.
    pub hashes: Vec<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<Box<str>>,
}

/// Exposures kept per endpoint; more are counted (`exposures_dropped_cap`).
pub const MAX_EXPOSURES: usize = 32;
pub const MAX_HASHES: usize = 8;

/// What an exposure change means for the output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// The endpoint carried this type at this place for the first time.
    New,
    /// The first time it went to (or came from) an external client.
    External,
}

pub fn class_of(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "none",
    }
}

/// Record `f` (from observation `o`) in `list`.
pub fn expose(
    list: &mut Vec<Exposure>,
    f: &Finding,
    name: &str,
    o: &Observation,
    counters: &mut SensitiveCounters,
) -> Change {
    let class = class_of(o.status);
    let i = list.iter().position(|x| &*x.ty == name && &*x.location == f.location.name() && *x.field == *f.field);
    let (x, mut change) = match i {
        Some(i) => (&mut list[i], Change::None),
        None if list.len() >= MAX_EXPOSURES => {
            counters.exposures_dropped_cap += 1;
            return Change::None;
        }
        None => {
            list.push(Exposure {
                ty: name.into(),
                location: f.location.name().into(),
                field: f.field.as_str().into(),
                first_seen: o.ts,
                example: f.masked.as_str().into(),
                detail: f.detail.as_deref().map(Into::into),
                ..Exposure::default()
            });
            (list.last_mut().expect("just pushed"), Change::New)
        }
    };
    x.count += 1;
    x.first_seen = x.first_seen.min(o.ts);
    x.last_seen = x.last_seen.max(o.ts);
    x.confidence = x.confidence.max(f.confidence);
    x.status_classes.add(class, 1, 8);
    let hex = f.hash.hex();
    if x.hashes.len() < MAX_HASHES && !x.hashes.iter().any(|h| **h == *hex) {
        x.hashes.push((*hex).into());
    }
    if o.external && !x.external {
        x.external = true;
        if change == Change::None {
            change = Change::External;
        }
    }
    change
}

/// Merge `from` into `into` (templates merged two endpoints).
pub fn merge(into: &mut Vec<Exposure>, from: &[Exposure]) {
    for f in from {
        let at = into.iter().position(|x| x.ty == f.ty && x.location == f.location && x.field == f.field);
        match at {
            Some(i) => {
                let x = &mut into[i];
                x.count += f.count;
                x.first_seen = x.first_seen.min(f.first_seen);
                x.last_seen = x.last_seen.max(f.last_seen);
                x.confidence = x.confidence.max(f.confidence);
                x.status_classes.merge(&f.status_classes, 8);
                x.external |= f.external;
                for h in &f.hashes {
                    if x.hashes.len() < MAX_HASHES && !x.hashes.contains(h) {
                        x.hashes.push(h.clone());
                    }
                }
            }
            None if into.len() < MAX_EXPOSURES => into.push(f.clone()),
            None => {}
        }
    }
}

/// Where transactions are parsed (in each worker): whether one's material goes to the
/// inventory. The inventory scans an endpoint's first `first` calls, then the calls picked
/// by a hash of the transaction (one in `every`). The gate lets through every picked call
/// and each call whose exact (host, method, path) it has seen at most `first` times: an
/// endpoint has had at least as many calls as any one of its paths, so everything the
/// inventory will want arrives, whatever the number of workers, and after warm-up only one
/// call in `every` carries its heads and bodies across threads. The table of counts is
/// small and direct-mapped; a path that loses its slot starts again from zero, which only
/// lets more through.
pub struct MaterialGate {
    first: u64,
    every: u64,
    seen: Box<[(u64, u64)]>,
}

const GATE_SLOTS: usize = 4096;

impl MaterialGate {
    pub fn new(first: u64, every: u64) -> MaterialGate {
        MaterialGate { first, every: every.max(1), seen: vec![(0, 0); GATE_SLOTS].into_boxed_slice() }
    }

    /// Take over the counts per path of the gate this one replaces (a configuration
    /// reload changes the rates, not what was seen).
    pub fn keep_counts(&mut self, old: &mut MaterialGate) {
        std::mem::swap(&mut self.seen, &mut old.seen);
    }

    /// (carry the material, picked by the rate).
    pub fn check(&mut self, o: &Observation, tx: &apiwatch_model::Transaction) -> (bool, bool) {
        use std::hash::{Hash, Hasher};
        // A fixed hash: the same picks on every run and every machine.
        let mut h = Mix64::default();
        (tx.client, tx.server, tx.trans_depth, o.ts).hash(&mut h);
        let picked = h.finish().is_multiple_of(self.every);
        let mut k = Mix64::default();
        (&o.host, &o.method, &o.path).hash(&mut k);
        let key = k.finish() | 1;
        let slot = &mut self.seen[(key as usize) % GATE_SLOTS];
        if slot.0 != key {
            *slot = (key, 0);
        }
        slot.1 += 1;
        (picked || slot.1 <= self.first, picked)
    }
}

/// A small fixed-key hasher (multiply and rotate per 8 bytes, a SplitMix64 finish): the
/// sampling decisions must not depend on the process, the machine or the Rust release, and
/// SipHash cost a few percent of replay time here.
#[derive(Default)]
struct Mix64(u64);

impl Mix64 {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    }
}

impl std::hash::Hasher for Mix64 {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ (rest.len() as u64) << 59);
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v) | 1 << 62);
    }

    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v) | 2 << 62);
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Clone for MaterialGate {
    /// A fresh gate (counts start again: safe, it only lets more through).
    fn clone(&self) -> Self {
        MaterialGate::new(self.first, self.every)
    }
}

impl std::fmt::Debug for MaterialGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterialGate").field("first", &self.first).field("every", &self.every).finish()
    }
}

/// The classifier with its sampling state.
pub struct Sensitive {
    classifier: Classifier,
    pub cfg: SensitiveConfig,
    tokens: f64,
    last: i64,
    pub counters: SensitiveCounters,
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensitive").field("counters", &self.counters).finish()
    }
}

impl Sensitive {
    pub fn new(cfg: SensitiveConfig) -> Sensitive {
        let budget = cfg.bytes_per_sec as f64;
        Sensitive {
            classifier: Classifier::new(cfg.classifier.clone()),
            cfg,
            tokens: budget,
            last: i64::MIN,
            counters: SensitiveCounters::default(),
        }
    }

    /// New settings for a running classifier (a configuration reload): types, key,
    /// redaction, sampling and budget. Counters and the budget's state carry on.
    pub fn reconfigure(&mut self, cfg: SensitiveConfig) {
        self.classifier = Classifier::new(cfg.classifier.clone());
        self.tokens = self.tokens.min(cfg.bytes_per_sec as f64);
        self.cfg = cfg;
    }

    pub fn type_name(&self, t: DataType) -> String {
        match t {
            DataType::Custom(i) => self.cfg.custom_names.get(i as usize).cloned().unwrap_or_else(|| "custom".into()),
            t => t.name().to_string(),
        }
    }

    /// Whether the endpoint's `n`-th transaction (1-based) is read, at packet time `ts`,
    /// costing `bytes`.
    fn wants(&mut self, n: u64, picked: bool, ts: i64, bytes: usize) -> bool {
        self.counters.transactions_seen += 1;
        if n > self.cfg.first && !picked {
            self.counters.skipped_rate += 1;
            return false;
        }
        // Token bucket refilled by packet time, holding at most one second of budget.
        let rate = self.cfg.bytes_per_sec as f64;
        if self.last != i64::MIN && ts > self.last {
            self.tokens = (self.tokens + (ts - self.last) as f64 * 1e-9 * rate).min(rate);
        }
        self.last = self.last.max(ts);
        if self.tokens < bytes as f64 && bytes > 0 {
            self.counters.skipped_budget += 1;
            return false;
        }
        self.tokens -= bytes as f64;
        self.counters.transactions_sampled += 1;
        true
    }

    /// Scan the observation's material if the endpoint's `n`-th call is sampled; findings
    /// go to `out` (cleared first).
    pub fn scan(&mut self, o: &Observation, n: u64, out: &mut Vec<Finding>) {
        out.clear();
        let Some(m) = o.material.as_deref() else {
            // The gate keeps back only what the rule below would skip.
            self.counters.transactions_seen += 1;
            self.counters.skipped_rate += 1;
            return;
        };
        let cap = self.cfg.max_body_bytes;
        let body_len = |b: &[u8]| b.len().min(cap);
        let req_body = o.req_body.as_deref().unwrap_or(&m.req_body);
        let resp_body = o.resp_body.as_deref().unwrap_or(&m.resp_body);
        let cost = body_len(req_body)
            + body_len(resp_body)
            + m.query.len()
            + o.path.len()
            + m.req_head.raw.len()
            + m.resp_head.as_ref().map_or(0, |h| h.raw.len());
        if !self.wants(n, o.picked, o.ts, cost) {
            return;
        }
        self.counters.bytes_scanned += cost as u64;
        let c = &self.classifier;
        // Path segments, each under the name of the segment before it (`/ssn/536-90-1234`).
        let mut prev = "";
        for (i, seg) in o.path.split('/').filter(|s| !s.is_empty()).enumerate().take(32) {
            let v = apiwatch_classify::percent_decode(seg.as_bytes());
            c.scan_value(Location::Path, &format!("/{i}"), prev, &v, out);
            prev = seg;
        }
        if !m.query.is_empty() {
            c.scan_form(Location::Query, m.query.as_bytes(), out);
        }
        scan_head(c, Location::RequestHeader, &m.req_head, out);
        if let Some(h) = &m.resp_head {
            scan_head(c, Location::ResponseHeader, h, out);
        }
        for (loc, body, ty) in [
            (Location::RequestBody, req_body, o.req_type.as_deref()),
            (Location::ResponseBody, resp_body, o.resp_type.as_deref()),
        ] {
            if body.is_empty() {
                continue;
            }
            self.counters.bodies_scanned += 1;
            if body.len() > cap {
                self.counters.bodies_truncated += 1;
            }
            c.scan_body(loc, ty, &body[..body.len().min(cap)], out);
        }
        self.counters.findings += out.len() as u64;
    }
}

/// Header values under their names; cookies split into name=value pairs. The request line
/// and Host are not personal data; Content-Length and the like are numbers.
fn scan_head(c: &Classifier, loc: Location, head: &apiwatch_model::MessageHead, out: &mut Vec<Finding>) {
    const SKIP: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "date",
        "etag",
        "accept",
        "accept-encoding",
        "user-agent",
        "connection",
        "cache-control",
        "last-modified",
        "expires",
        "server",
        "vary",
        "transfer-encoding",
        "content-encoding",
        "keep-alive",
    ];
    for (n, v) in head.iter() {
        if SKIP.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(n)) {
            continue;
        }
        let name = String::from_utf8_lossy(n).to_ascii_lowercase();
        let value = String::from_utf8_lossy(v);
        if name == "cookie" || name == "set-cookie" {
            let pairs = if name == "cookie" {
                value.split(';').collect::<Vec<_>>()
            } else {
                value.split(';').take(1).collect()
            };
            for p in pairs {
                let (k, v) = p.trim().split_once('=').unwrap_or((p.trim(), ""));
                let field = format!("{name}:{k}");
                let ctx = if is_session_cookie(k) { "session" } else { k };
                c.scan_value(loc, &field, ctx, v, out);
            }
            continue;
        }
        if name == "authorization" || name == "proxy-authorization" {
            // `Bearer <jwt>` is found by its shape; other schemes are credentials by name.
            let token = value.split_once(' ').map_or(value.as_ref(), |(_, t)| t.trim());
            c.scan_value(loc, &name, if token.starts_with("eyJ") { "" } else { "secret" }, token, out);
            continue;
        }
        c.scan_value(loc, &name, &name, &value, out);
    }
}

fn is_session_cookie(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("sess") || l == "sid" || l == "connect.sid" || l.ends_with("_sid") || l == "jsessionid"
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiwatch_model::{Flags, Transaction};

    fn tx(port: u16, depth: u32) -> Transaction {
        Transaction {
            conn_id: port as u64,
            trans_depth: depth,
            pipelined: 0,
            client: ("10.0.0.9".parse().unwrap(), port),
            server: ("10.0.0.1".parse().unwrap(), 80),
            community_id: "".into(),
            request: None,
            response: None,
            flags: Flags::default(),
        }
    }

    /// Whatever the split of transactions across workers, every call the inventory will
    /// want (an endpoint's first ones, or picked) carries its material; later unpicked ones
    /// mostly do not.
    #[test]
    fn the_gate_lets_through_everything_the_inventory_wants() {
        let (first, every) = (8, 16);
        let mut o = crate::observe::Observation {
            ts: 0,
            host: "h".into(),
            method: "GET".into(),
            path: "".into(),
            status: 200,
            latency_us: None,
            req_type: None,
            resp_type: None,
            query: Vec::new(),
            auth: crate::observe::Auth::None,
            external: false,
            client: "10.0.0.9".parse().unwrap(),
            req_body: None,
            resp_body: None,
            auth_label: "none".into(),
            material: None,
            picked: false,
        };
        for workers in [1usize, 2, 3] {
            let mut gates: Vec<MaterialGate> = (0..workers).map(|_| MaterialGate::new(first, every)).collect();
            let (mut carried, mut endpoint_calls) = (0, 0u64);
            for i in 0..3000u32 {
                // Three raw paths of one endpoint (/a/{id}), calls spread over connections.
                o.path = format!("/a/{}", i % 3).into();
                o.ts = i as i64 * 1000;
                let port = 1024 + (i % 97) as u16;
                let t = tx(port, i / 97);
                let (carry, picked) = gates[port as usize % workers].check(&o, &t);
                endpoint_calls += 1;
                let wanted = endpoint_calls <= first || picked;
                assert!(!wanted || carry, "call {i} wanted but held back ({workers} workers)");
                carried += carry as u32;
            }
            assert!(carried < 3000 / every as u32 * 2 + 3 * first as u32 * workers as u32, "{carried} carried");
        }
    }
}
