//! Across transactions: aggregation of repeated findings, brute force and credential
//! stuffing on login endpoints, endpoint spraying. Fed in output order by one owner (the
//! thread that writes records), with packet time, so its findings are the same whatever
//! the number of workers. Every table is capped and counts what the cap turned away.

use crate::inspect::Inspection;
use crate::rules::{RuleId, Severity, Side};
use std::collections::HashMap;
use std::net::IpAddr;

const NS: i64 = 1_000_000_000;

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
        }
    }
}

/// The transaction a signal came from, as the owner knows it.
#[derive(Debug, Clone, Copy)]
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
    pub path: &'a str,
    /// 0 when there was no response.
    pub status: u16,
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
        }
    }

    /// Distinct paths seen, by linear counting over 512 bits.
    fn distinct_paths(&self) -> f64 {
        let m: f64 = 512.0;
        let zeros = self.paths.iter().map(|w| w.count_zeros()).sum::<u32>() as f64;
        if zeros == 0.0 {
            return m * m.ln();
        }
        -m * (zeros / m).ln()
    }
}

pub struct Detector {
    pub cfg: DetectorConfig,
    pub counters: DetectorCounters,
    open: HashMap<u64, Open>,
    clients: HashMap<IpAddr, Client>,
    last_sweep: i64,
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(27)
}

fn hash_str(h: u64, s: &str) -> u64 {
    let mut h = mix(h, s.len() as u64);
    for c in s.as_bytes().chunks(8) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(b));
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
            open: HashMap::new(),
            clients: HashMap::new(),
            last_sweep: i64::MIN,
        }
    }

    /// One transaction, with what its worker found in it; findings go to `out`.
    pub fn observe(&mut self, cx: &Context<'_>, ins: &Inspection, out: &mut Vec<Finding>) {
        self.counters.transactions += 1;
        self.counters.signals += ins.signals.len() as u64;
        self.sweep(cx.ts, out);
        let success = (200..300).contains(&cx.status);
        for s in &ins.signals {
            let rule = s.rule.rule();
            let mut severity = rule.severity;
            if rule.raise_on_success && success {
                severity = severity.raised();
            }
            let f = Finding {
                id: String::new(),
                ts: cx.ts,
                event: Event::New,
                rule: s.rule,
                severity,
                actor: if rule.side == Side::Server { cx.server } else { cx.client },
                principal: if rule.side == Side::Client { ins.principal.clone() } else { None },
                host: cx.host.to_string(),
                method: cx.method.to_string(),
                template: cx.template.to_string(),
                status: cx.status,
                location: s.location.clone(),
                signs: s.signs.clone(),
                evidence: s.evidence.clone(),
            };
            self.report(f, cx, out);
        }
        self.behaviour(cx, ins, out);
    }

    fn behaviour(&mut self, cx: &Context<'_>, ins: &Inspection, out: &mut Vec<Finding>) {
        if !self.clients.contains_key(&cx.client) {
            if self.clients.len() >= self.cfg.max_clients {
                // Forget clients idle for longer than the longest window, then give up.
                let horizon = cx.ts - (self.cfg.login_window_secs.max(self.cfg.spray_window_secs) as i64) * NS;
                self.clients.retain(|_, c| c.last_ts >= horizon);
                if self.clients.len() >= self.cfg.max_clients {
                    self.counters.clients_dropped_cap += 1;
                    return;
                }
            }
            self.clients.insert(cx.client, Client::new(cx.ts));
        }
        let cfg = &self.cfg;
        let Some(c) = self.clients.get_mut(&cx.client) else { return };
        c.last_ts = cx.ts;
        let mut found: Vec<(RuleId, Vec<&'static str>, String, bool)> = Vec::new();
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
            c.paths = [0; 8];
        }
        c.requests += 1;
        if cx.status == 404 {
            c.missing += 1;
        }
        let h = finish(hash_str(0, cx.path));
        c.paths[(h >> 6) as usize % 8] |= 1 << (h & 63);
        let distinct = c.distinct_paths();
        if distinct >= cfg.spray_paths as f64 && c.missing as f64 >= cfg.spray_missing_ratio * c.requests as f64 {
            found.push((
                RuleId::EndpointSpray,
                vec!["many_missing_paths"],
                format!("~{:.0} distinct paths, {} of {} requests not found", distinct, c.missing, c.requests),
                false,
            ));
        }
        for (rule, signs, evidence, per_endpoint) in found {
            let f = Finding {
                id: String::new(),
                ts: cx.ts,
                event: Event::New,
                rule,
                severity: rule.rule().severity,
                actor: cx.client,
                principal: ins.principal.clone(),
                host: cx.host.to_string(),
                method: if per_endpoint { cx.method.to_string() } else { "*".into() },
                template: if per_endpoint { cx.template.to_string() } else { "*".into() },
                status: cx.status,
                location: if per_endpoint { "endpoint".into() } else { "client".into() },
                signs,
                evidence,
            };
            self.report(f, cx, out);
        }
    }

    fn allowed(&self, f: &Finding, cx: &Context<'_>) -> bool {
        self.cfg.allow.iter().any(|a| {
            a.rule.is_none_or(|r| r == f.rule)
                && a.client.is_none_or(|n| n.contains(cx.client))
                && a.path_prefix.as_deref().is_none_or(|p| cx.path.starts_with(p) || cx.template.starts_with(p))
        })
    }

    fn report(&mut self, mut f: Finding, cx: &Context<'_>, out: &mut Vec<Finding>) {
        if self.cfg.disabled.contains(&f.rule) {
            self.counters.disabled += 1;
            return;
        }
        if self.allowed(&f, cx) {
            self.counters.allowed += 1;
            return;
        }
        // Leaks of versions are about the server, not one endpoint.
        if f.rule == RuleId::VersionDisclosure {
            f.method = "*".into();
            f.template = "*".into();
        }
        let mut key = hash_ip(f.rule as u64, f.actor);
        for s in [&f.host, &f.method, &f.template] {
            key = hash_str(key, s);
        }
        let key = finish(key);
        if self.cfg.window_secs == 0 {
            // No folding: every occurrence is reported (for evaluation and debugging).
            f.id = format!("{:016x}", finish(mix(key, f.ts as u64)));
            self.counters.findings += 1;
            out.push(f);
            return;
        }
        if let Some(o) = self.open.get_mut(&key) {
            o.count += 1;
            o.last_ts = o.last_ts.max(f.ts);
            self.counters.repeats += 1;
            return;
        }
        f.id = format!("{:016x}", finish(mix(key, f.ts as u64)));
        self.counters.findings += 1;
        if self.open.len() >= self.cfg.max_open {
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
