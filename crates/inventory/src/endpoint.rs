//! Facts about one endpoint (host, method, path template), all mergeable: when the templater
//! learns that `/users/alice` and `/users/bob` are `/users/{id}`, their facts are summed.

use crate::observe::{Auth, Observation};
use crate::schema::Schema;
use crate::segment::Kinds;
use crate::smallmap::SmallMap;
use serde::{Deserialize, Serialize};

/// Caps on the small maps of one endpoint; what does not fit is counted in `other`.
pub const MAX_STATUS: usize = 32;
pub const MAX_TYPES: usize = 8;
pub const MAX_QUERY: usize = 64;
pub const MAX_AUTH: usize = 8;

/// Counts by name, capped; the rest in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub by: SmallMap<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Counts {
    pub fn add(&mut self, k: &str, n: u64, cap: usize) {
        if let Some(c) = self.by.get_mut(k) {
            *c += n;
        } else if self.by.len() < cap {
            self.by.insert(k, n);
        } else {
            self.other += n;
        }
    }
    pub fn merge(&mut self, o: &Counts, cap: usize) {
        for (k, n) in o.by.iter() {
            self.add(k, *n, cap);
        }
        self.other += o.other;
    }
}

/// Latency histogram: log buckets four to an octave (±9%), sparse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub buckets: Vec<(u8, u64)>,
}

impl Latency {
    fn bucket(us: u64) -> u8 {
        if us == 0 {
            return 0;
        }
        let lz = 63 - us.leading_zeros() as u64; // floor(log2)
                                                 // Two bits below the leading one pick the quarter-octave.
        let frac = if lz >= 2 { (us >> (lz - 2)) & 3 } else { (us << (2 - lz)) & 3 };
        (1 + lz * 4 + frac).min(255) as u8
    }

    /// Lower bound of a bucket, in microseconds.
    fn lower(b: u8) -> u64 {
        if b == 0 {
            return 0;
        }
        let b = (b - 1) as u64;
        let (oct, q) = (b / 4, b % 4);
        ((4 + q) << oct) >> 2
    }

    pub fn add(&mut self, us: u64, n: u64) {
        let b = Self::bucket(us);
        match self.buckets.binary_search_by_key(&b, |x| x.0) {
            Ok(i) => self.buckets[i].1 += n,
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    pub fn merge(&mut self, o: &Latency) {
        for (b, n) in &o.buckets {
            self.add(Self::lower(*b), *n);
        }
    }

    /// The `q` quantile (0..=1), in microseconds (the middle of its bucket).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().map(|b| b.1).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut acc = 0;
        for (b, n) in &self.buckets {
            acc += n;
            if acc >= rank {
                let lo = Self::lower(*b);
                let hi = Self::lower(b.saturating_add(1)).max(lo + 1);
                return Some((lo + hi) / 2);
            }
        }
        None
    }
}

/// Calls by response class: index 0 no response, 1..=5 for 1xx..5xx.
pub type ByClass = [u64; 6];

pub fn class_of(status: u16) -> usize {
    match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: u64,
    pub status: Counts,
    pub latency: Latency,
    pub req_types: Counts,
    pub resp_types: Counts,
    /// Query parameter names and the kinds of their values.
    pub query: SmallMap<Kinds>,
    #[serde(default)]
    pub query_overflow: u64,
    pub req_schema: Option<Schema>,
    pub resp_schema: Option<Schema>,
    /// Calls by credential scheme (`Auth::label`).
    pub auth: Counts,
    pub unauthenticated: ByClass,
    pub authenticated: ByClass,
    pub internal_calls: u64,
    pub external_calls: u64,
    pub last_external: Option<i64>,
    /// Calls seen in cleartext (every call captured off the wire without TLS).
    pub cleartext_calls: u64,
    /// A new-endpoint event was emitted for it.
    #[serde(default)]
    pub reported: bool,
    /// Bodies whose schema was inferred (the first 16, then one call in 64).
    #[serde(default)]
    pub schema_samples: u64,
    /// Sensitive data seen in its transactions (sampled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<crate::sensitive::Exposure>,
    /// Transactions offered to the classifier (its sampling counts these).
    #[serde(default)]
    pub sensitive_seen: u64,
}

/// Schemas are inferred from the first bodies of an endpoint, then from one call in this many.
pub const SCHEMA_EVERY: u64 = 64;
pub const SCHEMA_FIRST: u64 = 16;

impl Endpoint {
    pub fn observe(&mut self, o: &Observation) {
        if self.count == 0 || o.ts < self.first_seen {
            self.first_seen = o.ts;
        }
        self.last_seen = self.last_seen.max(o.ts);
        self.count += 1;
        let code =
            [b'0' + (o.status / 100 % 10) as u8, b'0' + (o.status / 10 % 10) as u8, b'0' + (o.status % 10) as u8];
        let status = if o.status == 0 { "none" } else { std::str::from_utf8(&code).unwrap_or("none") };
        self.status.add(status, 1, MAX_STATUS);
        if let Some(l) = o.latency_us {
            self.latency.add(l, 1);
        }
        if let Some(t) = &o.req_type {
            self.req_types.add(t, 1, MAX_TYPES);
        }
        if let Some(t) = &o.resp_type {
            self.resp_types.add(t, 1, MAX_TYPES);
        }
        for (k, kind) in &o.query {
            if let Some(ks) = self.query.get_mut(k.as_ref()) {
                ks.add(*kind);
            } else if self.query.len() < MAX_QUERY {
                let mut ks = Kinds::default();
                ks.add(*kind);
                self.query.insert(k, ks);
            } else {
                self.query_overflow += 1;
            }
        }
        if self.schema_samples < SCHEMA_FIRST || self.count.is_multiple_of(SCHEMA_EVERY) {
            let mut sampled = false;
            if let Some(s) = o.req_body.as_deref().and_then(Schema::infer) {
                merge_schema(&mut self.req_schema, Some(&s));
                sampled = true;
            }
            if let Some(s) = o.resp_body.as_deref().filter(|_| (200..300).contains(&o.status)).and_then(Schema::infer) {
                merge_schema(&mut self.resp_schema, Some(&s));
                sampled = true;
            }
            self.schema_samples += sampled as u64;
        }
        self.auth.add(&o.auth_label, 1, MAX_AUTH);
        let c = class_of(o.status);
        if o.auth == Auth::None {
            self.unauthenticated[c] += 1;
        } else {
            self.authenticated[c] += 1;
        }
        if o.external {
            self.external_calls += 1;
            self.last_external = Some(self.last_external.map_or(o.ts, |t| t.max(o.ts)));
        } else {
            self.internal_calls += 1;
        }
        self.cleartext_calls += 1;
    }

    pub fn merge(&mut self, o: &Endpoint) {
        if o.count == 0 {
            return;
        }
        self.first_seen = if self.count == 0 { o.first_seen } else { self.first_seen.min(o.first_seen) };
        self.last_seen = self.last_seen.max(o.last_seen);
        self.count += o.count;
        self.status.merge(&o.status, MAX_STATUS);
        self.latency.merge(&o.latency);
        self.req_types.merge(&o.req_types, MAX_TYPES);
        self.resp_types.merge(&o.resp_types, MAX_TYPES);
        for (k, ks) in o.query.iter() {
            if let Some(mine) = self.query.get_mut(k) {
                mine.union(*ks);
            } else if self.query.len() < MAX_QUERY {
                self.query.insert(k, *ks);
            } else {
                self.query_overflow += 1;
            }
        }
        self.query_overflow += o.query_overflow;
        merge_schema(&mut self.req_schema, o.req_schema.as_ref());
        merge_schema(&mut self.resp_schema, o.resp_schema.as_ref());
        self.auth.merge(&o.auth, MAX_AUTH);
        for i in 0..6 {
            self.unauthenticated[i] += o.unauthenticated[i];
            self.authenticated[i] += o.authenticated[i];
        }
        self.internal_calls += o.internal_calls;
        self.external_calls += o.external_calls;
        self.last_external = match (self.last_external, o.last_external) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.cleartext_calls += o.cleartext_calls;
        self.reported |= o.reported;
        self.schema_samples += o.schema_samples;
        crate::sensitive::merge(&mut self.sensitive, &o.sensitive);
        self.sensitive_seen += o.sensitive_seen;
    }

    /// Share of successful (2xx) calls that carried no credentials.
    pub fn unauthenticated_success_share(&self) -> Option<f64> {
        let ok = self.unauthenticated[2] + self.authenticated[2];
        (ok > 0).then(|| self.unauthenticated[2] as f64 / ok as f64)
    }
}

fn merge_schema(mine: &mut Option<Schema>, o: Option<&Schema>) {
    match (mine.as_mut(), o) {
        (Some(m), Some(o)) => m.merge(o),
        (None, Some(o)) => *mine = Some(o.clone()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_within_a_bucket() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.add(us * 100, 1);
        }
        let p50 = l.quantile(0.5).unwrap() as f64;
        let p99 = l.quantile(0.99).unwrap() as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.15, "{p50}");
        assert!((p99 / 99_000.0 - 1.0).abs() < 0.15, "{p99}");
        let mut m = Latency::default();
        m.merge(&l);
        assert_eq!(m.quantile(0.5), l.quantile(0.5));
        for b in 9..200u8 {
            assert_eq!(Latency::bucket(Latency::lower(b)), b, "bucket {b}");
        }
    }
}
