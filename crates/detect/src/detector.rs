//! Across transactions: aggregation of repeated findings, brute force and credential
//! stuffing on login endpoints, endpoint spraying. Fed in output order by one owner (the
//! thread that writes records), with packet time, so its findings are the same whatever
//! the number of workers. Every table is capped and counts what the cap turned away.

use crate::behaviour::{self, Base, Rate, Slot, ThreatList, Volume, Welford};
use crate::inspect::Inspection;
use crate::rules::{RuleId, Severity, Side};
use apiwatch_model::EndpointFacts;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) const NS: i64 = 1_000_000_000;

/// An address range (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let (a, b) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("{s:?} is not an address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = if b.is_empty() { max } else { b.parse().map_err(|_| format!("{s:?}: bad prefix length"))? };
        if bits > max {
            return Err(format!("{s:?}: prefix longer than the address"));
        }
        Ok(Net { addr, bits })
    }
}

impl Net {
    /// First and last address of the range.
    pub(crate) fn range(&self) -> behaviour::Range {
        match self.addr {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(self.bits as u32).unwrap_or(0);
                let lo = u32::from(a) & !host;
                behaviour::Range::V4(lo, lo | host)
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(self.bits as u32).unwrap_or(0);
                let lo = u128::from(a) & !host;
                behaviour::Range::V6(lo, lo | host)
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = width - self.bits as u32;
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// Findings to leave out: all three parts that are given must match.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    pub rule: Option<RuleId>,
    pub client: Option<Net>,
    /// Matched against the endpoint's template and the request path.
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Repeats of a finding (same detection, actor and endpoint) within this many seconds
    /// of its first are counted, not reported; the count is reported when it closes. 0
    /// reports every occurrence.
    pub window_secs: u64,
    /// Open findings kept for aggregation.
    pub max_open: usize,
    /// Clients followed for brute force and spraying.
    pub max_clients: usize,
    pub disabled: Vec<RuleId>,
    pub allow: Vec<Allow>,
    /// Failed logins by one client within `login_window_secs` that make brute force.
    pub brute_force_failures: u32,
    /// Distinct user names tried by one client (with as many failures) that make
    /// credential stuffing.
    pub stuffing_users: u32,
    pub login_window_secs: u64,
    /// Distinct paths one client requests within `spray_window_secs`, most of them
    /// missing (`spray_missing_ratio`), that make endpoint spraying.
    pub spray_paths: u32,
    pub spray_missing_ratio: f64,
    pub spray_window_secs: u64,
    /// Baselines judge nothing before they have this much packet time (and `min_samples`).
    pub learning_secs: u64,
    pub min_samples: u32,
    /// Endpoints with baselines, and principals followed for exfiltration.
    pub max_endpoints: usize,
    pub max_principals: usize,
    /// A minute is a spike at `spike_ratio` times the usual rate and at least this many
    /// calls (to one endpoint, from one client).
    pub spike_ratio: f64,
    pub endpoint_spike_min: u32,
    pub client_spike_min: u32,
    /// Sizes and latency are unusual at `size_ratio` (`latency_ratio`) times the usual,
    /// and over the floor.
    pub size_ratio: f64,
    pub size_min_bytes: u64,
    pub latency_ratio: f64,
    pub latency_min_ms: u64,
    /// Consecutive object ids walked by one client.
    pub bola_walk: u32,
    /// Distinct objects one client read (2xx) within `spray_window_secs` by ids that no
    /// earlier response to it carried, once responses have given it ids.
    pub bola_unknown_ids: u32,
    /// Distinct values tried on one endpoint within `spray_window_secs`, with at least
    /// `enum_failure_ratio` refused: by one client, and by `distributed_clients` together.
    pub enum_values: u32,
    pub enum_failure_ratio: f64,
    pub distributed_enum_values: u32,
    pub distributed_clients: u32,
    /// Per principal and window: `exfil_ratio` times its usual window, and over the floors.
    pub exfil_window_secs: u64,
    pub exfil_ratio: f64,
    pub exfil_min_bytes: u64,
    pub exfil_min_records: u64,
    /// One client's requests in `spray_window_secs`, and the share of them refused (4xx
    /// other than 404), that make a high error rate.
    pub error_requests: u32,
    pub error_ratio: f64,
    /// Requests waiting on one connection that make excessive pipelining.
    pub pipeline_depth: u32,
    /// Calls an endpoint must have had before a new parameter is unusual.
    pub unseen_after_calls: u64,
    /// Addresses on threat lists.
    pub threats: Arc<ThreatList>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            window_secs: 600,
            max_open: 100_000,
            max_clients: 100_000,
            disabled: Vec::new(),
            allow: Vec::new(),
            brute_force_failures: 20,
            stuffing_users: 10,
            login_window_secs: 600,
            spray_paths: 50,
            spray_missing_ratio: 0.5,
            spray_window_secs: 1200,
            learning_secs: 1800,
            min_samples: 50,
            max_endpoints: 100_000,
            max_principals: 100_000,
            spike_ratio: 5.0,
            endpoint_spike_min: 300,
            client_spike_min: 300,
            size_ratio: 8.0,
            size_min_bytes: 256 << 10,
            latency_ratio: 8.0,
            latency_min_ms: 2000,
            bola_walk: 20,
            bola_unknown_ids: 10,
            enum_values: 100,
            enum_failure_ratio: 0.5,
            distributed_enum_values: 500,
            distributed_clients: 20,
            exfil_window_secs: 3600,
            exfil_ratio: 10.0,
            exfil_min_bytes: 100 << 20,
            exfil_min_records: 1000,
            error_requests: 50,
            error_ratio: 0.5,
            pipeline_depth: 16,
            unseen_after_calls: 1000,
            threats: Arc::new(ThreatList::default()),
        }
    }
}

/// The transaction a signal came from, as the owner knows it.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Packet time, nanoseconds.
    pub ts: i64,
    /// The client (from a trusted forwarding chain, else the peer).
    pub client: IpAddr,
    pub server: IpAddr,
    pub host: &'a str,
    pub method: &'a str,
    /// The endpoint's path template (or the path when there is no inventory).
    pub template: &'a str,
    /// Renders the template when a finding needs it (instead of `template`): rendering
    /// costs, and most transactions make no finding.
    pub template_of: Option<&'a dyn Fn() -> Option<String>>,
    pub path: &'a str,
    /// 0 when there was no response.
    pub status: u16,
    /// What the inventory knew of the endpoint (None without inventory).
    pub facts: Option<&'a EndpointFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// First time in its window.
    New,
    /// The window closed after more than one occurrence: how many, between which times.
    Repeated { count: u64, first_ts: i64, last_ts: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable for the window: a `Repeated` event carries its `New`'s id.
    pub id: String,
    pub ts: i64,
    pub event: Event,
    pub rule: RuleId,
    pub severity: Severity,
    /// The client, or the server for findings about what a server gave away.
    pub actor: IpAddr,
    pub principal: Option<String>,
    pub host: String,
    pub method: String,
    pub template: String,
    pub status: u16,
    pub location: String,
    pub signs: Vec<&'static str>,
    pub evidence: String,
}

impl Finding {
    /// A new finding of `rule` on this transaction: severity raised for a success when the
    /// rule says so; the actor by the rule's side; endpoint or `*` (a client or server as a
    /// whole).
    fn of(
        rule: RuleId,
        per_endpoint: bool,
        cx: &Context<'_>,
        ins: &Inspection,
        location: String,
        signs: Vec<&'static str>,
        evidence: String,
    ) -> Finding {
        let r = rule.rule();
        let success = (200..300).contains(&cx.status);
        Finding {
            id: String::new(),
            ts: cx.ts,
            event: Event::New,
            rule,
            severity: if r.raise_on_success && success { r.severity.raised() } else { r.severity },
            actor: if r.side == Side::Server { cx.server } else { cx.client },
            principal: if r.side == Side::Client { ins.principal.clone() } else { None },
            host: cx.host.to_string(),
            method: if per_endpoint { cx.method.to_string() } else { "*".into() },
            template: if per_endpoint { template(cx) } else { "*".into() },
            status: cx.status,
            location,
            signs,
            evidence,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetectorCounters {
    pub transactions: u64,
    pub signals: u64,
    pub findings: u64,
    /// Occurrences folded into an open finding.
    pub repeats: u64,
    pub allowed: u64,
    pub disabled: u64,
    /// Findings not opened because `max_open` findings were open (reported, not folded).
    pub open_cap_hits: u64,
    /// Clients not followed because `max_clients` were.
    pub clients_dropped_cap: u64,
    /// Endpoints without baselines because `max_endpoints` had them.
    pub endpoints_dropped_cap: u64,
    /// Principals not followed because `max_principals` were.
    pub principals_dropped_cap: u64,
}

struct Open {
    id: String,
    first_ts: i64,
    last_ts: i64,
    count: u64,
    finding: Finding,
}

/// What one client did lately (fixed size: about 200 bytes).
#[derive(Clone)]
struct Client {
    last_ts: i64,
    login_start: i64,
    failures: u32,
    failures_since_success: u32,
    users: [u32; 16],
    n_users: u8,
    spray_start: i64,
    requests: u32,
    missing: u32,
    paths: [u64; 8],
    /// Refused requests (4xx other than 404) in the spray window.
    errors: u32,
    rate: Rate,
    slots: [Slot; 2],
    /// Ids responses gave this client (a Bloom filter of 512 bits, three probes), how many
    /// responses gave ids, and the distinct unknown ids it read in the spray window.
    given: [u64; 8],
    given_by: u32,
    unknown: [u64; 2],
    unknown_reads: u32,
}

impl Client {
    fn new(ts: i64) -> Client {
        Client {
            last_ts: ts,
            login_start: ts,
            failures: 0,
            failures_since_success: 0,
            users: [0; 16],
            n_users: 0,
            spray_start: ts,
            requests: 0,
            missing: 0,
            paths: [0; 8],
            errors: 0,
            rate: Rate::default(),
            slots: [Slot::default(); 2],
            given: [0; 8],
            given_by: 0,
            unknown: [0; 2],
            unknown_reads: 0,
        }
    }

    fn probes(id: u64) -> [usize; 3] {
        let h = finish(id ^ 0x6964_7320_6769_7665);
        [(h & 511) as usize, ((h >> 9) & 511) as usize, ((h >> 18) & 511) as usize]
    }

    fn give(&mut self, id: u64) {
        for p in Client::probes(id) {
            self.given[p / 64] |= 1 << (p % 64);
        }
    }

    fn was_given(&self, id: u64) -> bool {
        Client::probes(id).iter().all(|&p| self.given[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Distinct paths seen, by linear counting over 512 bits.
    fn distinct_paths(&self) -> f64 {
        behaviour::distinct(&self.paths)
    }
}

pub struct Detector {
    pub cfg: DetectorConfig,
    pub counters: DetectorCounters,
    open: Map<u64, Open>,
    clients: Map<IpAddr, Client>,
    last_sweep: i64,
    /// Packet time the client table was last pruned (at most every 10 s when full).
    last_prune: i64,
    bases: Map<u64, Base>,
    volumes: Map<u64, Volume>,
    last_volume_prune: i64,
    /// All principals' closed windows: log bytes, log sensitive records.
    population: [Welford; 2],
    /// All clients' busy minutes: log calls.
    client_minutes: Welford,
    /// The transaction at hand's endpoint key and host hash (computed once per `observe`).
    ek: u64,
    hk: u64,
}

/// Findings of behaviour: (detection, signs, evidence, about the endpoint rather than the
/// client as a whole).
type Found = Vec<(RuleId, Vec<&'static str>, String, bool)>;

fn template(cx: &Context<'_>) -> String {
    cx.template_of.and_then(|f| f()).unwrap_or_else(|| cx.template.to_string())
}

/// The endpoint a transaction is on: the inventory's, else its host, method and template
/// (the path, without inventory).
fn endpoint_key(cx: &Context<'_>) -> u64 {
    match cx.facts {
        Some(f) => f.key,
        None => finish(hash_str(hash_str(hash_str(1, cx.host), cx.method), cx.template)),
    }
}

/// The detector's maps hash with one multiply per word under a per-process random seed:
/// SipHash showed in profiles, and a fixed function would let crafted traffic pile keys
/// into one bucket. Map order never reaches the output (closed findings are sorted).
#[derive(Clone)]
pub(crate) struct Seeded(u64);

impl Seeded {
    fn new() -> Seeded {
        use std::hash::BuildHasher;
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0x6170_6977_6174_6368u64))
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

pub(crate) struct SeededHasher(u64);

impl std::hash::Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = mix(self.0, v);
    }

    fn finish(&self) -> u64 {
        finish(self.0)
    }
}

type Map<K, V> = HashMap<K, V, Seeded>;

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(27)
}

fn hash_str(h: u64, s: &str) -> u64 {
    hash_bytes(mix(h, s.len() as u64), s.as_bytes())
}

/// Folds `b` into `h` eight bytes at a time (the detector's one byte hash: keys, its maps,
/// the JWT cache, request targets). Not finished: callers that need spread bits `finish`.
pub(crate) fn hash_bytes(mut h: u64, b: &[u8]) -> u64 {
    for c in b.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    h
}

fn hash_ip(h: u64, ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v) => mix(h, u32::from(v) as u64),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            mix(mix(h, x as u64), (x >> 64) as u64)
        }
    }
}

fn finish(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Detector {
        Detector {
            cfg,
            counters: DetectorCounters::default(),
            open: Map::with_hasher(Seeded::new()),
            clients: Map::with_hasher(Seeded::new()),
            last_sweep: i64::MIN,
            last_prune: i64::MIN,
            bases: Map::with_hasher(Seeded::new()),
            volumes: Map::with_hasher(Seeded::new()),
            last_volume_prune: i64::MIN,
            population: [Welford::default(); 2],
            client_minutes: Welford::default(),
            ek: 0,
            hk: 0,
        }
    }

    /// One transaction, with what its worker found in it; findings go to `out`.
    pub fn observe(&mut self, cx: &Context<'_>, ins: &Inspection, out: &mut Vec<Finding>) {
        self.counters.transactions += 1;
        self.counters.signals += ins.signals.len() as u64;
        self.ek = endpoint_key(cx);
        self.hk = hash_str(0x51, cx.host);
        self.sweep(cx.ts, out);
        for s in &ins.signals {
            // Versions leaked are about the server, not one endpoint.
            let per_endpoint = s.rule != RuleId::VersionDisclosure;
            let Some(key) = self.admit(s.rule, per_endpoint, cx, ins.principal.as_deref()) else { continue };
            let (loc, signs, evidence) = (s.location.to_string(), s.signs.to_vec(), s.evidence.to_string());
            let f = Finding::of(s.rule, per_endpoint, cx, ins, loc, signs, evidence);
            self.open_finding(key, f, out);
        }
        self.behaviour(cx, ins, out);
    }

    fn behaviour(&mut self, cx: &Context<'_>, ins: &Inspection, out: &mut Vec<Finding>) {
        if !self.clients.contains_key(&cx.client) {
            if self.clients.len() >= self.cfg.max_clients {
                // Forget clients idle for longer than the longest window (a scan of the
                // table, so at most every 10 s of packet time), else give up on this one.
                if cx.ts >= self.last_prune.saturating_add(10 * NS) {
                    self.last_prune = cx.ts;
                    let horizon = cx.ts - (self.cfg.login_window_secs.max(self.cfg.spray_window_secs) as i64) * NS;
                    self.clients.retain(|_, c| c.last_ts >= horizon);
                }
                if self.clients.len() >= self.cfg.max_clients {
                    self.counters.clients_dropped_cap += 1;
                    self.baselines(cx, ins, None, None, out);
                    return;
                }
            }
            self.clients.insert(cx.client, Client::new(cx.ts));
        }
        let cfg = &self.cfg;
        let Some(c) = self.clients.get_mut(&cx.client) else { return };
        c.last_ts = cx.ts;
        let mut found: Found = Vec::new();
        // Logins.
        if let Some(login) = ins.login {
            if cx.ts - c.login_start > cfg.login_window_secs as i64 * NS {
                c.login_start = cx.ts;
                c.failures = 0;
                c.n_users = 0;
            }
            if login.failed {
                c.failures += 1;
                c.failures_since_success += 1;
                if let Some(u) = login.user {
                    let u = (u >> 32) as u32 | 1;
                    let n = c.n_users as usize;
                    if !c.users[..n].contains(&u) && n < c.users.len() {
                        c.users[n] = u;
                        c.n_users += 1;
                    }
                }
                if c.failures >= cfg.brute_force_failures {
                    found.push((
                        RuleId::BruteForce,
                        vec!["failed_logins"],
                        format!("{} failed logins in {} s", c.failures, (cx.ts - c.login_start) / NS),
                        true,
                    ));
                }
                if c.n_users as u32 >= cfg.stuffing_users && c.failures >= cfg.stuffing_users {
                    found.push((
                        RuleId::CredentialStuffing,
                        vec!["many_user_names"],
                        format!("{}+ user names, {} failures", c.n_users, c.failures),
                        true,
                    ));
                }
            } else if (200..400).contains(&cx.status) {
                if c.failures_since_success >= cfg.brute_force_failures.div_ceil(2).max(1) {
                    found.push((
                        RuleId::BruteForceSuccess,
                        vec!["success_after_failures"],
                        format!("answered {} after {} failed logins", cx.status, c.failures_since_success),
                        false,
                    ));
                }
                c.failures_since_success = 0;
            }
        }
        // Spraying.
        if cx.ts - c.spray_start > cfg.spray_window_secs as i64 * NS {
            c.spray_start = cx.ts;
            c.requests = 0;
            c.missing = 0;
            c.errors = 0;
            c.paths = [0; 8];
            c.unknown = [0; 2];
            c.unknown_reads = 0;
        }
        c.requests += 1;
        if cx.status == 404 {
            c.missing += 1;
        } else if (400..500).contains(&cx.status) {
            c.errors += 1;
        }
        if c.requests >= cfg.error_requests && c.errors as f64 >= cfg.error_ratio * c.requests as f64 {
            found.push((
                RuleId::HighErrorRate,
                vec!["refused_requests"],
                format!("{} of {} requests refused (4xx other than 404)", c.errors, c.requests),
                false,
            ));
        }
        // Its rate, against its own minutes or, while it has too few, everyone's.
        if let Some(closed) = c.rate.tick(cx.ts) {
            self.client_minutes.add(behaviour::ln(closed as u64));
        }
        let learn_minutes = (cfg.learning_secs / 60).max(1) as u32;
        if !c.rate.flagged && c.rate.count >= cfg.client_spike_min {
            let own = c.rate.spike(learn_minutes, cfg.client_spike_min, cfg.spike_ratio as f32);
            let pop = &self.client_minutes;
            let crowd = c.rate.minutes < learn_minutes
                && pop.n >= 100
                && behaviour::ln(c.rate.count as u64) > pop.mean + (cfg.spike_ratio as f32).ln() + 4.0 * pop.sd();
            if own || crowd {
                c.rate.flagged = true;
                let usual = if own { c.rate.usual() } else { pop.mean.exp() - 1.0 };
                found.push((
                    RuleId::ClientRateSpike,
                    vec![if own { "above_own_rate" } else { "above_clients_rate" }],
                    format!("{} calls in a minute, usually {usual:.0}", c.rate.count),
                    false,
                ));
            }
        }
        // Objects read by ids no response gave this client (once responses give it ids), on
        // an endpoint whose clients learned to read objects by the ids they were given.
        let key = self.ek;
        let mut id_read = None;
        if let (Some(id), true, true) =
            (ins.traits.object_id, (200..300).contains(&cx.status), matches!(cx.method, "GET" | "HEAD"))
        {
            let given = c.given_by > 0 && c.was_given(id);
            let follows = self
                .bases
                .get(&key)
                .is_some_and(|b| cx.ts - b.first_ts >= cfg.learning_secs as i64 * NS && b.follows_ids(cfg.min_samples));
            // What is judged does not teach the baseline (one client's walk would erode it).
            if c.given_by > 0 && (given || !follows) {
                id_read = Some(given);
            }
            if c.given_by > 0 && !given && follows {
                let h = finish(id ^ 0x756e_6b6e_6f77_6e21);
                c.unknown[(h & 1) as usize] |= 1 << ((h >> 1) & 63);
                c.unknown_reads += 1;
                let distinct = behaviour::distinct(&c.unknown);
                if c.unknown_reads >= cfg.bola_unknown_ids && distinct >= cfg.bola_unknown_ids as f64 {
                    found.push((
                        RuleId::BolaUnknownIds,
                        vec!["ids_not_given"],
                        format!("~{distinct:.0} objects read by ids no earlier response gave this client"),
                        true,
                    ));
                }
            }
        }
        // A response that names other objects than the one asked for teaches ids (an
        // object's own id in its answer does not).
        let given = &ins.traits.given[..ins.traits.n_given as usize];
        for &id in given {
            c.give(id);
        }
        if given.iter().any(|&g| Some(g) != ins.traits.object_id) {
            c.given_by += 1;
        }
        // What it does on this endpoint: distinct values tried, walks through ids.
        let window = cfg.spray_window_secs as i64 * NS;
        let refused = (400..500).contains(&cx.status);
        let sl = behaviour::slot(&mut c.slots, key, cx.ts, window);
        sl.add(ins.traits.target, refused, ins.traits.object_id);
        if sl.walk >= cfg.bola_walk {
            found.push((
                RuleId::BolaIdWalk,
                vec!["sequential_ids"],
                format!("{} consecutive ids, now {}", sl.walk + 1, sl.last_id),
                true,
            ));
        }
        // The counts first: the estimate of distinct values costs a logarithm, and cannot
        // exceed the requests.
        let refusing =
            sl.requests >= cfg.enum_values && sl.failures as f64 >= cfg.enum_failure_ratio * sl.requests as f64;
        let tried = if refusing { sl.targets() } else { 0.0 };
        if refusing && tried >= cfg.enum_values as f64 {
            found.push((
                RuleId::ParameterEnumeration,
                vec!["one_client"],
                format!("~{tried:.0} distinct values, {} of {} refused", sl.failures, sl.requests),
                true,
            ));
        }
        let h = finish(hash_str(0, cx.path));
        c.paths[(h >> 6) as usize % 8] |= 1 << (h & 63);
        let missing = c.requests >= cfg.spray_paths && c.missing as f64 >= cfg.spray_missing_ratio * c.requests as f64;
        let distinct = if missing { c.distinct_paths() } else { 0.0 };
        if missing && distinct >= cfg.spray_paths as f64 {
            found.push((
                RuleId::EndpointSpray,
                vec!["many_missing_paths"],
                format!("~{:.0} distinct paths, {} of {} requests not found", distinct, c.missing, c.requests),
                false,
            ));
        }
        self.baselines(cx, ins, Some(found), id_read, out);
    }

    /// Findings of the baselines of endpoints and principals, and of single transactions;
    /// with `found` those of the client's table (None: the client was not followed).
    /// `id_read`: the call read an object by an id, by a client responses had taught ids;
    /// whether they had given it this one.
    fn baselines(
        &mut self,
        cx: &Context<'_>,
        ins: &Inspection,
        found: Option<Found>,
        id_read: Option<bool>,
        out: &mut Vec<Finding>,
    ) {
        let mut found = found.unwrap_or_default();
        let cfg = &self.cfg;
        let t = &ins.traits;
        let success = (200..300).contains(&cx.status);
        if !cfg.threats.is_empty() && cfg.threats.contains(cx.client) {
            found.push((
                RuleId::ThreatListIp,
                vec!["threat_list"],
                format!("{} is on a threat list", cx.client),
                false,
            ));
        }
        if t.pipelined >= cfg.pipeline_depth {
            found.push((
                RuleId::ExcessivePipelining,
                vec!["pipelined_requests"],
                format!("{} requests waiting for an answer on the connection", t.pipelined),
                false,
            ));
        }
        let learned = |first: i64| cx.ts - first >= cfg.learning_secs as i64 * NS;
        if let Some(f) = cx.facts {
            // Reads only: a write answered with what it sent (a sign-up) exposes nothing.
            let read = matches!(cx.method, "GET" | "HEAD");
            // Credentials as either half reads them (the inventory knows more places:
            // keys in the query, other cookies), so that both sides of the share agree.
            if success && !t.credentials && !f.authenticated {
                let mut signs = Vec::new();
                if read && (f.sensitive_found > 0 || f.sensitive_endpoint) {
                    signs.push("sensitive_data");
                }
                let with = f.authenticated_success;
                if with >= 20 && with * 10 >= 9 * (with + f.unauthenticated_success) {
                    signs.push("usually_authenticated");
                }
                if !signs.is_empty() {
                    if f.external {
                        signs.push("external_client");
                    }
                    let mut e = format!("{} without credentials", cx.status);
                    if signs.contains(&"usually_authenticated") {
                        e +=
                            &format!("; {with} of {} earlier successes carried them", with + f.unauthenticated_success);
                    }
                    if f.sensitive_found > 0 {
                        e += &format!("; {} sensitive values in the response", f.sensitive_found);
                    } else if signs.contains(&"sensitive_data") {
                        e += "; the endpoint has answered with sensitive data";
                    }
                    found.push((RuleId::UnauthenticatedAccess, signs, e, true));
                }
            }
            if f.calls >= cfg.unseen_after_calls && learned(f.first_seen) {
                if let Some(p) = &f.new_param {
                    let e = format!("parameter {} never seen in {} calls", crate::evidence::name(p), f.calls);
                    found.push((RuleId::UnseenParameter, vec!["new_name"], e, true));
                } else if let Some(k) = &f.new_kind {
                    let e = format!("{} never seen in {} calls", crate::evidence::name(k), f.calls);
                    found.push((RuleId::UnseenParameter, vec!["new_kind"], e, true));
                }
            }
        }
        // The endpoint's baselines.
        let key = self.ek;
        if !self.bases.contains_key(&key) {
            if self.bases.len() >= cfg.max_endpoints {
                self.counters.endpoints_dropped_cap += 1;
            } else {
                self.bases.insert(key, Base::new(cx.ts));
            }
        }
        if let Some(b) = self.bases.get_mut(&key) {
            if let Some(given) = id_read {
                b.id_reads = b.id_reads.saturating_add(1);
                b.id_reads_given = b.id_reads_given.saturating_add(given as u32);
            }
            b.rate.tick(cx.ts);
            let learn_minutes = (cfg.learning_secs / 60).max(1) as u32;
            if !b.rate.flagged && b.rate.spike(learn_minutes, cfg.endpoint_spike_min, cfg.spike_ratio as f32) {
                b.rate.flagged = true;
                found.push((
                    RuleId::TrafficSpike,
                    vec!["endpoint_rate"],
                    format!("{} calls in a minute, usually {:.0}", b.rate.count, b.rate.usual()),
                    true,
                ));
            }
            let on = learned(b.first_ts);
            let sh = &mut b.shapes[behaviour::class(cx.status)];
            let (min, ratio) = (cfg.min_samples, cfg.size_ratio as f32);
            if on && behaviour::unusual(&sh.resp, t.resp_bytes, min, cfg.size_min_bytes, ratio) {
                let usual = sh.resp.mean.exp() - 1.0;
                let e = format!("{} B answered, usually ~{usual:.0} B", t.resp_bytes);
                found.push((RuleId::UnusualResponseSize, vec!["response_bytes"], e, true));
            }
            if on && behaviour::unusual(&sh.req, t.req_bytes, min, cfg.size_min_bytes, ratio) {
                let usual = sh.req.mean.exp() - 1.0;
                let e = format!("{} B sent, usually ~{usual:.0} B", t.req_bytes);
                found.push((RuleId::UnusualRequestSize, vec!["request_bytes"], e, true));
            }
            if let Some(l) = t.latency_us {
                let floor = cfg.latency_min_ms * 1000;
                if on && behaviour::unusual(&sh.latency, l, min, floor, cfg.latency_ratio as f32) {
                    let usual = sh.latency.mean.exp() - 1.0;
                    let e = format!("answered in {} ms, usually ~{:.0} ms", l / 1000, usual / 1000.0);
                    found.push((RuleId::LatencySpike, vec!["latency"], e, true));
                }
                sh.latency.add(behaviour::ln(l));
            }
            sh.resp.add(behaviour::ln(t.resp_bytes));
            sh.req.add(behaviour::ln(t.req_bytes));
            let sp = &mut b.spread;
            if cx.ts - sp.start > cfg.spray_window_secs as i64 * NS {
                *sp = behaviour::Spread::new(cx.ts);
            }
            sp.add(t.target, finish(hash_ip(7, cx.client)), (400..500).contains(&cx.status));
            if !sp.flagged
                && sp.requests >= cfg.distributed_enum_values
                && sp.failures as f64 >= cfg.enum_failure_ratio * sp.requests as f64
                && sp.targets() >= cfg.distributed_enum_values as f64
                && sp.clients() >= cfg.distributed_clients as f64
            {
                sp.flagged = true;
                let e = format!(
                    "~{:.0} distinct values from ~{:.0} clients, {} of {} refused",
                    sp.targets(),
                    sp.clients(),
                    sp.failures,
                    sp.requests
                );
                found.push((RuleId::ParameterEnumeration, vec!["distributed"], e, true));
            }
        }
        // The principal's data (the client's address when no principal is visible).
        let who = match &ins.principal {
            Some(p) => finish(hash_str(3, p)),
            None => finish(hash_ip(5, cx.client)),
        };
        let window = cfg.exfil_window_secs as i64 * NS;
        if !self.volumes.contains_key(&who) {
            if self.volumes.len() >= cfg.max_principals && cx.ts >= self.last_volume_prune.saturating_add(10 * NS) {
                self.last_volume_prune = cx.ts;
                self.volumes.retain(|_, v| cx.ts - v.last_ts <= 2 * window);
            }
            if self.volumes.len() >= cfg.max_principals {
                self.counters.principals_dropped_cap += 1;
            } else {
                self.volumes.insert(who, Volume::default());
            }
        }
        if let Some(v) = self.volumes.get_mut(&who) {
            v.roll(cx.ts, window, &mut self.population);
            v.bytes += t.resp_bytes;
            v.records += cx.facts.map_or(0, |f| f.sensitive_found as u64);
            let learn = (cfg.learning_secs as i64 * NS / window.max(1)).max(1) as u32;
            if let (false, Some((bytes, records))) = (v.flagged, v.usual(learn, &self.population)) {
                let r = cfg.exfil_ratio;
                let much_bytes = v.bytes >= cfg.exfil_min_bytes && v.bytes as f64 > r * bytes;
                let much_records = v.records >= cfg.exfil_min_records && v.records as f64 > r * records;
                if much_bytes || much_records {
                    v.flagged = true;
                    let mut signs = Vec::new();
                    if much_bytes {
                        signs.push("response_bytes");
                    }
                    if much_records {
                        signs.push("sensitive_records");
                    }
                    let e = format!(
                        "{} B and {} sensitive values this window, usually ~{bytes:.0} B and ~{records:.0}",
                        v.bytes, v.records
                    );
                    found.push((RuleId::DataExfiltration, signs, e, false));
                }
            }
        }
        for (rule, signs, evidence, per_endpoint) in found {
            let Some(key) = self.admit(rule, per_endpoint, cx, ins.principal.as_deref()) else { continue };
            let place = if per_endpoint { "endpoint" } else { "client" };
            let f = Finding::of(rule, per_endpoint, cx, ins, place.into(), signs, evidence);
            self.open_finding(key, f, out);
        }
    }

    fn allowed(&self, rule: RuleId, cx: &Context<'_>) -> bool {
        self.cfg.allow.iter().any(|a| {
            a.rule.is_none_or(|r| r == rule)
                && a.client.is_none_or(|n| n.contains(cx.client))
                && a.path_prefix.as_deref().is_none_or(|p| cx.path.starts_with(p) || template(cx).starts_with(p))
        })
    }

    /// Whether a finding of `rule` here is to be made: not turned off, not allowed, and not
    /// a repeat of an open finding of the same (detection, actor, endpoint). A repeat is
    /// counted here without building anything: findings like a version in every answer's
    /// Server header repeat on every transaction. Some(the aggregation key) when it is.
    fn admit(&mut self, rule: RuleId, per_endpoint: bool, cx: &Context<'_>, principal: Option<&str>) -> Option<u64> {
        if self.cfg.disabled.contains(&rule) {
            self.counters.disabled += 1;
            return None;
        }
        if !self.cfg.allow.is_empty() && self.allowed(rule, cx) {
            self.counters.allowed += 1;
            return None;
        }
        let actor = if rule.rule().side == Side::Server { cx.server } else { cx.client };
        // The rule is mixed in first: XOR-ed straight with the address, detection 4 from
        // 10.77.0.12 and detection 20 from 10.77.0.28 made the same key (and one finding
        // swallowed the other).
        let mut key = hash_ip(mix(0x5851_f42d_4c95_7f2d, rule as u64), actor);
        // Exfiltration is about a principal: several behind one address are several actors.
        if rule == RuleId::DataExfiltration {
            key = hash_str(key, principal.unwrap_or(""));
        }
        key = mix(key, self.hk);
        key = finish(mix(key, if per_endpoint { self.ek } else { 0x2a }));
        if self.cfg.window_secs > 0 {
            if let Some(o) = self.open.get_mut(&key) {
                o.count += 1;
                o.last_ts = o.last_ts.max(cx.ts);
                self.counters.repeats += 1;
                return None;
            }
        }
        Some(key)
    }

    /// Report a finding `admit` let through, and open its window.
    fn open_finding(&mut self, key: u64, mut f: Finding, out: &mut Vec<Finding>) {
        f.id = format!("{:016x}", finish(mix(key, f.ts as u64)));
        self.counters.findings += 1;
        if self.cfg.window_secs == 0 {
            // No folding: every occurrence is reported (for evaluation and debugging).
        } else if self.open.len() >= self.cfg.max_open {
            self.counters.open_cap_hits += 1;
        } else {
            self.open
                .insert(key, Open { id: f.id.clone(), first_ts: f.ts, last_ts: f.ts, count: 1, finding: f.clone() });
        }
        out.push(f);
    }

    /// Close the windows that ended before `now` (packet time). Called by `observe`; call
    /// it when time passes without traffic.
    pub fn sweep(&mut self, now: i64, out: &mut Vec<Finding>) {
        let window = self.cfg.window_secs as i64 * NS;
        // At most once per tenth of a window: the scan is over every open finding.
        if now < self.last_sweep.saturating_add(window / 10) {
            return;
        }
        self.last_sweep = now;
        self.close(|o| now - o.first_ts > window, out);
    }

    /// End of input: report every open finding's repeats.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        self.close(|_| true, out);
    }

    fn close(&mut self, done: impl Fn(&Open) -> bool, out: &mut Vec<Finding>) {
        let mut closed: Vec<Open> = Vec::new();
        self.open.retain(|_, o| {
            if done(o) {
                closed.push(Open { id: std::mem::take(&mut o.id), finding: o.finding.clone(), ..*o });
                false
            } else {
                true
            }
        });
        // Deterministic order whatever the map's: by first time, then id.
        closed.sort_by(|a, b| (a.first_ts, &a.id).cmp(&(b.first_ts, &b.id)));
        for o in closed {
            if o.count > 1 {
                let mut f = o.finding;
                f.id = o.id;
                f.ts = o.last_ts;
                f.event = Event::Repeated { count: o.count, first_ts: o.first_ts, last_ts: o.last_ts };
                out.push(f);
            }
        }
    }
}
