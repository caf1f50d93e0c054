//! The inventory: hosts, their templater tries and endpoints, caps and counters, events,
//! and the comparison with declared specs.

use crate::endpoint::Endpoint;
use crate::observe::Observation;
use crate::spec::{decl_segments, match_score, DeclSeg, DeclaredApi, DeclaredOp};
use crate::template::{Learning, Trie};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub max_hosts: usize,
    pub max_endpoints: usize,
    pub max_endpoints_per_host: usize,
    pub max_nodes_per_host: usize,
    /// Template nodes of all hosts together.
    pub max_nodes_total: usize,
    /// A new endpoint is reported once it has existed this long (packet time) without being
    /// merged into a template, or at the end of the input.
    pub settle_ns: i64,
    /// A declared operation without traffic for this long is inactive.
    pub inactive_ns: i64,
    /// Templates fixed by the user: (host or None for every host, template).
    pub pins: Vec<(Option<String>, String)>,
    pub specs: Vec<DeclaredApi>,
    /// Declared paths shape the templates of the hosts they apply to.
    pub templates_from_specs: bool,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_hosts: 10_000,
            max_endpoints: 200_000,
            max_endpoints_per_host: 20_000,
            max_nodes_per_host: 50_000,
            max_nodes_total: 2_000_000,
            settle_ns: 60_000_000_000,
            inactive_ns: 30 * 86_400 * 1_000_000_000,
            pins: Vec::new(),
            specs: Vec::new(),
            templates_from_specs: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub observations: u64,
    pub hosts_dropped_cap: u64,
    pub endpoints_dropped_cap: u64,
    pub nodes_capped: u64,
    pub segments_truncated: u64,
    pub endpoints_merged: u64,
    /// Endpoints dropped with a variable that turned out to stand for names.
    #[serde(default)]
    pub endpoints_undone: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Host {
    pub trie: Trie,
    /// Boxed: a free or spare slot costs a pointer, not an endpoint.
    pub slots: Vec<Option<Box<Endpoint>>>,
    free: Vec<u32>,
    pub endpoints: usize,
    pub first_seen: i64,
    pub last_seen: i64,
    #[serde(skip)]
    pub dirty: bool,
}

impl Host {
    fn alloc(&mut self, e: Endpoint) -> u32 {
        self.endpoints += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(Box::new(e));
                i
            }
            None => {
                self.slots.push(Some(Box::new(e)));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn apply(&mut self, l: &Learning) -> u64 {
        for &slot in &l.removed {
            if self.slots.get_mut(slot as usize).and_then(Option::take).is_some() {
                self.free.push(slot);
                self.endpoints -= 1;
            }
        }
        let mut n = 0;
        for &(from, into) in &l.merged {
            if let Some(e) = self.slots.get_mut(from as usize).and_then(Option::take) {
                self.free.push(from);
                self.endpoints -= 1;
                if let Some(Some(dst)) = self.slots.get_mut(into as usize) {
                    dst.merge(&e);
                }
                n += 1;
            }
        }
        n
    }

    pub fn endpoint(&self, slot: u32) -> Option<&Endpoint> {
        self.slots.get(slot as usize).and_then(|s| s.as_deref())
    }
}

/// Where an observed endpoint stands against the declared inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// No spec was loaded: nothing to compare with.
    Unknown,
    Documented,
    /// Not in any spec.
    Shadow,
    /// Deprecated in its spec, or an older version of a path whose newer version is declared.
    Zombie,
}

#[derive(Debug, Clone, Serialize)]
pub struct Posture {
    pub standing: Standing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undocumented_query: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undocumented_status: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undocumented_types: Vec<String>,
}

/// An `inventory` record for the output stream.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryEvent {
    pub event: &'static str,
    /// Packet time the event was decided at.
    pub ts: i64,
    pub host: String,
    pub method: String,
    pub template: String,
    pub confidence: f64,
    pub first_seen: i64,
    pub calls: u64,
    pub auth: Vec<String>,
    pub external: bool,
    pub posture: Posture,
    /// For `new_exposure` and `external_exposure` events: what was found.
    #[serde(skip)]
    pub exposure: Option<Box<ExposureEvent>>,
}

/// A sensitive-data event: one finding that was new for its endpoint (or newly external).
#[derive(Debug, Clone)]
pub struct ExposureEvent {
    pub ty: String,
    pub location: &'static str,
    pub field: String,
    pub status_class: &'static str,
    pub confidence: u8,
    pub masked: String,
    pub hash: String,
    pub detail: Option<String>,
}

/// One endpoint as reports show it.
pub struct EndpointView<'a> {
    pub host: &'a str,
    pub method: &'a str,
    pub template: String,
    pub node: u32,
    pub confidence: f64,
    pub endpoint: &'a Endpoint,
}

impl Posture {
    pub fn unknown() -> Posture {
        Posture {
            standing: Standing::Unknown,
            spec: None,
            declared_path: None,
            reason: None,
            undocumented_query: Vec::new(),
            undocumented_status: Vec::new(),
            undocumented_types: Vec::new(),
        }
    }
}

pub struct Inventory {
    pub cfg: InventoryConfig,
    pub hosts: BTreeMap<Box<str>, Host>,
    pub endpoints: usize,
    /// Live template nodes of all hosts.
    pub nodes: usize,
    pub counters: Counters,
    /// Latest packet time seen: the inventory's clock.
    pub clock: i64,
    next_scan: i64,
    learning: Learning,
    decl: Vec<Vec<(DeclaredOp, Vec<DeclSeg>)>>,
    /// The sensitive-data classifier, when it is on.
    pub sensitive: Option<crate::sensitive::Sensitive>,
    /// The classifier's findings for the observation at hand (a buffer kept between calls).
    findings: Vec<apiwatch_classify::Finding>,
    /// The template node the last observation landed on (for [`Inventory::last_template`]).
    last_at: Option<u32>,
    /// What the endpoint of the last observation was before it (for detections).
    pub last_facts: Option<apiwatch_model::EndpointFacts>,
    /// Template variables on probation in all hosts (each keeps up to 128 value hashes):
    /// at [`MAX_PROBATIONS`] new ones are confirmed at once.
    probations: usize,
}

/// Variables on probation at once, all hosts together (about 2 KiB each at most).
pub const MAX_PROBATIONS: usize = 1024;

/// What `e` (None: new) knew before observation `o`, for the detections.
fn facts(host: &str, slot: u32, e: Option<&Endpoint>, o: &Observation) -> apiwatch_model::EndpointFacts {
    let mut key = 0xcbf2_9ce4_8422_2325u64;
    for b in host.bytes() {
        key = (key ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut f = apiwatch_model::EndpointFacts {
        key: key ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        first_seen: o.ts,
        external: o.external,
        authenticated: o.auth != crate::observe::Auth::None,
        ..Default::default()
    };
    let Some(e) = e else { return f };
    f.first_seen = e.first_seen;
    f.calls = e.count;
    f.sensitive_endpoint = e.sensitive.iter().any(|x| x.location.starts_with("response"));
    f.authenticated_success = e.authenticated[2];
    f.unauthenticated_success = e.unauthenticated[2];
    for (k, kind) in &o.query {
        match e.query.get(k) {
            None if e.query_overflow == 0 => {
                f.new_param.get_or_insert_with(|| k.clone());
            }
            Some(ks) if breaks_type(*ks, *kind) => {
                f.new_kind.get_or_insert_with(|| format!("{k}: {}", kind.name()).into());
            }
            _ => {}
        }
    }
    f
}

/// A value of kind `new` for a parameter whose values so far were all of one type
/// (`integer`, `uuid`, `date`...) that `new` does not fit. Free text (`string`, slugs,
/// tokens) takes anything; an integer fits a number, a date a date-time.
fn breaks_type(seen: crate::segment::Kinds, new: crate::segment::Kind) -> bool {
    use crate::segment::Kind;
    if seen.0 & new.bit() != 0 || new == Kind::Empty || seen.iter().all(|k| k == Kind::Empty) {
        return false;
    }
    if matches!(seen.summary(), Kind::String | Kind::Slug | Kind::Token) {
        return false;
    }
    let mut all = seen;
    all.add(new);
    all.summary() == Kind::String
}

fn host_matches(hosts: &[String], host: &str) -> bool {
    hosts.is_empty() || hosts.iter().any(|h| h == host || host.split(':').next() == Some(h.as_str()))
}

impl Inventory {
    pub fn new(cfg: InventoryConfig) -> Inventory {
        let decl =
            cfg.specs.iter().map(|a| a.ops.iter().map(|o| (o.clone(), decl_segments(&o.path))).collect()).collect();
        Inventory {
            cfg,
            hosts: BTreeMap::new(),
            endpoints: 0,
            nodes: 0,
            counters: Counters::default(),
            clock: i64::MIN,
            next_scan: i64::MIN,
            learning: Learning::default(),
            decl,
            sensitive: None,
            findings: Vec::new(),
            last_at: None,
            last_facts: None,
            probations: 0,
        }
    }

    /// New settings for a running inventory (a configuration reload): caps, settle and
    /// inactivity periods, declared specs and pinned templates. What was learned stays; pins
    /// and declared paths are added to every known host (a pinned literal splits later calls
    /// off a learned variable), and endpoints reported from now on (and exports) are judged
    /// against the new specs.
    /// Caps lowered below what is held refuse new entries, they do not evict.
    pub fn reconfigure(&mut self, cfg: InventoryConfig) {
        self.decl =
            cfg.specs.iter().map(|a| a.ops.iter().map(|o| (o.clone(), decl_segments(&o.path))).collect()).collect();
        self.cfg = cfg;
        let names: Vec<Box<str>> = self.hosts.keys().cloned().collect();
        for name in names {
            if let Some(mut h) = self.hosts.remove(&name) {
                self.nodes -= h.trie.live;
                self.pin_into(&name, &mut h);
                self.nodes += h.trie.live;
                h.dirty = true;
                self.hosts.insert(name, h);
            }
        }
    }

    /// The path template of the endpoint the last observation (of host `host`) landed on.
    pub fn last_template(&self, host: &str) -> Option<String> {
        let at = self.last_at?;
        self.hosts.get(host).map(|h| h.trie.template(at))
    }

    /// Restore a host saved by an earlier run. Pinned and declared templates of the current
    /// configuration apply to it from now on (a pinned literal splits future calls off a
    /// learned variable).
    pub fn restore(&mut self, name: &str, mut host: Host) {
        self.endpoints += host.endpoints;
        self.clock = self.clock.max(host.last_seen);
        self.pin_into(name, &mut host);
        self.nodes += host.trie.live;
        self.hosts.insert(name.into(), host);
    }

    fn new_host(&self, name: &str) -> Host {
        let mut h = Host::default();
        self.pin_into(name, &mut h);
        h
    }

    fn pin_into(&self, name: &str, h: &mut Host) {
        for (only, t) in &self.cfg.pins {
            if only.as_deref().is_none_or(|o| o == name) {
                h.trie.pin(t);
            }
        }
        if self.cfg.templates_from_specs {
            for api in &self.cfg.specs {
                if host_matches(&api.hosts, name) {
                    for op in &api.ops {
                        h.trie.pin(&op.path);
                    }
                }
            }
        }
    }

    /// Add one observation; events that became due are appended to `events`.
    pub fn observe(&mut self, o: &Observation, events: &mut Vec<InventoryEvent>) {
        self.counters.observations += 1;
        self.clock = self.clock.max(o.ts);
        self.last_at = None;
        self.last_facts = None;
        if !self.hosts.contains_key(o.host.as_ref()) {
            if self.hosts.len() >= self.cfg.max_hosts {
                self.counters.hosts_dropped_cap += 1;
                return;
            }
            let h = self.new_host(&o.host);
            self.nodes += h.trie.live;
            self.hosts.insert(o.host.clone(), h);
        }
        let (per_host, max_all) = (self.cfg.max_endpoints_per_host, self.cfg.max_endpoints);
        let Some(host) = self.hosts.get_mut(o.host.as_ref()) else { return };
        // This host may grow to its own cap, or as far as the global budget allows.
        let before = host.trie.live;
        let max_nodes = self.cfg.max_nodes_per_host.min(before + self.cfg.max_nodes_total.saturating_sub(self.nodes));
        if host.endpoints == 0 && host.first_seen == 0 {
            host.first_seen = o.ts;
        }
        host.last_seen = host.last_seen.max(o.ts);
        host.dirty = true;
        self.learning.merged.clear();
        host.trie.no_probation = self.probations >= MAX_PROBATIONS;
        let at = host.trie.learn(&o.path, max_nodes, &mut self.learning);
        self.probations += std::mem::take(&mut host.trie.probations_started);
        self.last_at = Some(at);
        self.nodes = (self.nodes + host.trie.live).saturating_sub(before);
        self.counters.nodes_capped += std::mem::take(&mut self.learning.capped);
        self.counters.segments_truncated += std::mem::take(&mut self.learning.truncated);
        let merged = host.apply(&self.learning);
        self.endpoints -= merged as usize;
        self.counters.endpoints_merged += merged;
        let slot = match host.trie.endpoint(at, &o.method) {
            Some(slot) => {
                if let Some(Some(e)) = host.slots.get_mut(slot as usize) {
                    self.last_facts = Some(facts(&o.host, slot, Some(e), o));
                    e.observe(o);
                }
                Some(slot)
            }
            None if host.endpoints >= per_host || self.endpoints >= max_all => {
                self.counters.endpoints_dropped_cap += 1;
                None
            }
            None => {
                let mut e = Endpoint::default();
                e.observe(o);
                let slot = host.alloc(e);
                self.last_facts = Some(facts(&o.host, slot, None, o));
                host.trie.add_endpoint(at, &o.method, slot);
                self.endpoints += 1;
                Some(slot)
            }
        };
        if let (Some(s), Some(slot)) = (self.sensitive.as_mut(), slot) {
            if let Some(Some(e)) = host.slots.get_mut(slot as usize) {
                e.sensitive_seen += 1;
                let n = e.sensitive_seen;
                let mut findings = std::mem::take(&mut self.findings);
                s.scan(o, n, &mut findings);
                if let Some(x) = self.last_facts.as_mut() {
                    use apiwatch_classify::Location::{ResponseBody, ResponseHeader};
                    x.sensitive_found =
                        findings.iter().filter(|f| matches!(f.location, ResponseBody | ResponseHeader)).count() as u32;
                    x.sensitive_endpoint |= x.sensitive_found > 0;
                }
                for f in &findings {
                    let name = s.type_name(f.ty);
                    let change = crate::sensitive::expose(&mut e.sensitive, f, &name, o, &mut s.counters);
                    if change == crate::sensitive::Change::None {
                        continue;
                    }
                    events.push(InventoryEvent {
                        event: if change == crate::sensitive::Change::New {
                            "new_exposure"
                        } else {
                            "external_exposure"
                        },
                        ts: o.ts,
                        host: o.host.to_string(),
                        method: o.method.to_string(),
                        template: host.trie.template(at),
                        confidence: f64::from(f.confidence) / 100.0,
                        first_seen: e.first_seen,
                        calls: e.count,
                        auth: vec![o.auth_label.to_string()],
                        external: o.external,
                        posture: Posture::unknown(),
                        exposure: Some(Box::new(ExposureEvent {
                            ty: name,
                            location: f.location.name(),
                            field: f.field.clone(),
                            status_class: crate::sensitive::class_of(o.status),
                            confidence: f.confidence,
                            masked: f.masked.to_string(),
                            hash: f.hash.to_string(),
                            detail: f.detail.clone(),
                        })),
                    });
                }
                self.findings = findings;
            }
        }
        if self.clock >= self.next_scan {
            self.scan(false, events);
        }
    }

    /// Packet time advanced without traffic (live capture ticks).
    pub fn tick(&mut self, now: i64, events: &mut Vec<InventoryEvent>) {
        self.clock = self.clock.max(now);
        if self.clock >= self.next_scan {
            self.scan(false, events);
        }
    }

    /// End of input: report every endpoint not yet reported.
    pub fn finish(&mut self, events: &mut Vec<InventoryEvent>) {
        self.scan(true, events);
    }

    /// Report endpoints that have settled (or all of them at the end).
    fn scan(&mut self, all: bool, events: &mut Vec<InventoryEvent>) {
        self.next_scan = self.clock.saturating_add(self.cfg.settle_ns / 4);
        let due = self.clock.saturating_sub(self.cfg.settle_ns);
        // Names that turned out to be values of one parameter (same sub-resources) merge
        // before their endpoints are reported.
        // Young variables that turned out to stand for names are undone.
        self.probations = 0;
        for h in self.hosts.values_mut() {
            self.learning.merged.clear();
            self.learning.removed.clear();
            let before = h.trie.live;
            self.probations += h.trie.review(&mut self.learning);
            h.trie.merge_alike(&mut self.learning);
            if h.trie.live != before {
                self.nodes = (self.nodes + h.trie.live).saturating_sub(before);
                let endpoints = h.endpoints;
                let merged = h.apply(&self.learning);
                let undone = (endpoints - h.endpoints) as u64 - merged;
                self.endpoints -= endpoints - h.endpoints;
                self.counters.endpoints_merged += merged;
                self.counters.endpoints_undone += undone;
                h.dirty = true;
                // The last observation's node may be gone.
                self.last_at = None;
            }
            self.learning.removed.clear();
        }
        // Due endpoints, by host and template; templates are built for those only.
        /// (host, template, node, method, endpoint slot)
        type Due = (Box<str>, String, u32, Box<str>, u32);
        let mut found: Vec<Due> = Vec::new();
        for (name, h) in &self.hosts {
            let start = found.len();
            for (node, n) in h.trie.nodes.iter().enumerate() {
                for (m, slot) in &n.endpoints {
                    if h.endpoint(*slot).is_some_and(|e| !e.reported && (all || e.first_seen <= due)) {
                        found.push((name.clone(), h.trie.template(node as u32), node as u32, m.clone(), *slot));
                    }
                }
            }
            // Stable: a node's methods keep their order.
            found[start..].sort_by(|a, b| a.1.cmp(&b.1));
        }
        for (name, template, node, method, slot) in found {
            let Some(h) = self.hosts.get(name.as_ref()) else { continue };
            let Some(e) = h.endpoint(slot) else { continue };
            let posture = self.posture(&name, &method, &template, e);
            let event = match posture.standing {
                Standing::Shadow => "shadow_endpoint",
                Standing::Zombie => "zombie_endpoint",
                _ => "new_endpoint",
            };
            events.push(InventoryEvent {
                event,
                ts: self.clock,
                host: name.to_string(),
                method: method.to_string(),
                confidence: round2(h.trie.confidence(node)),
                template,
                first_seen: e.first_seen,
                calls: e.count,
                auth: e.auth.by.keys().map(String::from).collect(),
                external: e.external_calls > 0,
                posture,
                exposure: None,
            });
            if let Some(Some(e)) = self.hosts.get_mut(name.as_ref()).and_then(|h| h.slots.get_mut(slot as usize)) {
                e.reported = true;
            }
            if let Some(h) = self.hosts.get_mut(name.as_ref()) {
                h.dirty = true;
            }
        }
    }

    /// Compare one endpoint with the declared inventory.
    pub fn posture(&self, host: &str, method: &str, template: &str, e: &Endpoint) -> Posture {
        let mut p = Posture::unknown();
        if self.cfg.specs.is_empty() {
            return p;
        }
        let segs: Vec<&str> = crate::template::segments(template).collect();
        let mut best: Option<(usize, usize, &DeclaredOp)> = None;
        for (ai, api) in self.cfg.specs.iter().enumerate() {
            if !host_matches(&api.hosts, host) {
                continue;
            }
            for (op, ds) in &self.decl[ai] {
                if op.method != method {
                    continue;
                }
                if let Some(score) = match_score(&segs, ds) {
                    if best.is_none_or(|b| score > b.0) {
                        best = Some((score, ai, op));
                    }
                }
            }
        }
        let Some((_, ai, op)) = best else {
            p.standing = Standing::Shadow;
            if let Some((reason, spec)) = self.newer_version(host, method, &segs, e) {
                p.standing = Standing::Zombie;
                p.reason = Some(reason);
                p.spec = Some(spec);
            } else {
                p.reason = Some("no declared operation matches".into());
            }
            return p;
        };
        p.spec = Some(self.cfg.specs[ai].name.clone());
        p.declared_path = Some(op.path.clone());
        p.standing = if op.deprecated { Standing::Zombie } else { Standing::Documented };
        if op.deprecated {
            p.reason = Some("deprecated in the spec and still called".into());
        }
        p.undocumented_query = e.query.keys().filter(|k| !op.query.contains(*k)).map(String::from).collect();
        let declared_codes = &op.responses;
        if !declared_codes.contains("default") {
            p.undocumented_status = e
                .status
                .by
                .keys()
                .filter(|c| {
                    *c != "none"
                        && !declared_codes.contains(*c)
                        && !declared_codes.contains(&format!("{}XX", &c[..1]))
                        && !declared_codes.contains(&format!("{}xx", &c[..1]))
                })
                .map(String::from)
                .collect();
        }
        let mut types = BTreeSet::new();
        if !op.request_types.is_empty() {
            types.extend(e.req_types.by.keys().filter(|t| !op.request_types.contains(*t)).map(String::from));
        }
        if !op.response_types.is_empty() {
            types.extend(
                e.resp_types
                    .by
                    .keys()
                    .filter(|t| !op.response_types.contains(*t) && !op.response_types.contains("*/*"))
                    .map(String::from),
            );
        }
        p.undocumented_types = types.into_iter().collect();
        p
    }

    /// For an undeclared path with a `vN` segment that still answers: a declared path equal
    /// but for a higher version.
    fn newer_version(&self, host: &str, method: &str, segs: &[&str], e: &Endpoint) -> Option<(String, String)> {
        let answered = e.status.by.keys().any(|c| c.starts_with('2') || c.starts_with('3'));
        if !answered {
            return None;
        }
        let (i, v) = segs.iter().enumerate().find_map(|(i, s)| version(s).map(|v| (i, v)))?;
        for (ai, api) in self.cfg.specs.iter().enumerate() {
            if !host_matches(&api.hosts, host) {
                continue;
            }
            for (op, ds) in &self.decl[ai] {
                if op.method != method || ds.len() != segs.len() {
                    continue;
                }
                let DeclSeg::Lit(dv) = &ds[i] else { continue };
                let Some(newer) = version(dv).filter(|n| *n > v) else { continue };
                let mut probe: Vec<&str> = segs.to_vec();
                probe[i] = dv;
                if match_score(&probe, ds).is_some() {
                    let reason = format!("{} still answers; {} is declared ({})", segs[i], dv, op.path);
                    let _ = newer;
                    return Some((reason, api.name.clone()));
                }
            }
        }
        None
    }

    /// Every endpoint, in a stable order (host, template, method).
    pub fn views(&self) -> Vec<EndpointView<'_>> {
        let mut out = Vec::new();
        for (name, h) in &self.hosts {
            for (template, node) in h.trie.endpoint_nodes() {
                let mut eps: Vec<&(Box<str>, u32)> = h.trie.nodes[node as usize].endpoints.iter().collect();
                eps.sort();
                for (m, slot) in eps {
                    if let Some(e) = h.endpoint(*slot) {
                        out.push(EndpointView {
                            host: name,
                            method: m,
                            template: template.clone(),
                            node,
                            confidence: round2(h.trie.confidence(node)),
                            endpoint: e,
                        });
                    }
                }
            }
        }
        out
    }

    /// Declared operations with their activity: `active`, `inactive` (no call for the
    /// configured period before the inventory's clock) or `never_seen`.
    pub fn declared_activity(&self) -> Vec<DeclaredActivity> {
        let views = self.views();
        let mut out = Vec::new();
        for (ai, api) in self.cfg.specs.iter().enumerate() {
            for (op, ds) in &self.decl[ai] {
                let mut last: Option<i64> = None;
                let mut calls = 0;
                for v in &views {
                    if v.method != op.method || !host_matches(&api.hosts, v.host) {
                        continue;
                    }
                    let segs: Vec<&str> = crate::template::segments(&v.template).collect();
                    if match_score(&segs, ds).is_some() {
                        last = Some(last.map_or(v.endpoint.last_seen, |l: i64| l.max(v.endpoint.last_seen)));
                        calls += v.endpoint.count;
                    }
                }
                let activity = match last {
                    None => "never_seen",
                    Some(t) if t < self.clock.saturating_sub(self.cfg.inactive_ns) => "inactive",
                    Some(_) => "active",
                };
                out.push(DeclaredActivity {
                    spec: api.name.clone(),
                    method: op.method.clone(),
                    path: op.path.clone(),
                    deprecated: op.deprecated,
                    activity,
                    last_seen: last,
                    calls,
                });
            }
        }
        out
    }

    /// Hosts changed since the last call (for incremental saving).
    pub fn take_dirty(&mut self) -> Vec<(&str, &Host)> {
        let mut names: BTreeSet<Box<str>> = BTreeSet::new();
        for (name, h) in self.hosts.iter_mut() {
            if std::mem::take(&mut h.dirty) {
                names.insert(name.clone());
            }
        }
        self.hosts.iter().filter(|(n, _)| names.contains(*n)).map(|(n, h)| (n.as_ref(), h)).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeclaredActivity {
    pub spec: String,
    pub method: String,
    pub path: String,
    pub deprecated: bool,
    pub activity: &'static str,
    pub last_seen: Option<i64>,
    pub calls: u64,
}

fn version(s: &str) -> Option<u32> {
    let d = s.strip_prefix('v').or_else(|| s.strip_prefix('V'))?;
    d.parse().ok()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_value_breaks_a_parameter_type_only_when_the_type_was_narrow() {
        use crate::segment::{Kind, Kinds};
        let of = |ks: &[Kind]| {
            let mut k = Kinds::default();
            ks.iter().for_each(|&x| k.add(x));
            k
        };
        assert!(super::breaks_type(of(&[Kind::Integer]), Kind::String));
        assert!(super::breaks_type(of(&[Kind::Uuid]), Kind::Integer));
        assert!(!super::breaks_type(of(&[Kind::Integer]), Kind::Number), "an integer is a number");
        assert!(!super::breaks_type(of(&[Kind::Date]), Kind::DateTime));
        assert!(!super::breaks_type(of(&[Kind::String]), Kind::Integer), "free text takes digits");
        assert!(!super::breaks_type(of(&[Kind::Slug, Kind::Integer]), Kind::Uuid));
        assert!(!super::breaks_type(of(&[Kind::Integer]), Kind::Empty));
        assert!(!super::breaks_type(of(&[Kind::Integer]), Kind::Integer));
    }
    use super::*;
    use crate::observe::Auth;
    use crate::spec::load;

    fn obs(ts_s: i64, method: &str, path: &str, status: u16) -> Observation {
        Observation {
            ts: ts_s * 1_000_000_000,
            host: "api.example.com".into(),
            method: method.into(),
            path: path.into(),
            status,
            latency_us: Some(1500),
            req_type: None,
            resp_type: Some("application/json".into()),
            query: vec![("page".into(), crate::segment::Kind::Integer)],
            auth: Auth::None,
            external: true,
            client: "203.0.113.9".parse().unwrap(),
            req_body: None,
            resp_body: None,
            auth_label: "none".into(),
            material: None,
            picked: false,
        }
    }

    const SPEC: &str = r#"
openapi: 3.0.0
info: {title: t}
servers: [{url: 'https://api.example.com'}]
paths:
  /v2/users/{id}:
    get: {responses: {'200': {description: ok}}}
  /v2/users/me:
    get: {responses: {'200': {description: ok}}}
  /v2/legacy:
    get: {deprecated: true, responses: {'200': {description: ok}}}
  /v2/idle:
    get: {responses: {'200': {description: ok}}}
"#;

    fn spec() -> DeclaredApi {
        load("s.yaml", &mut |_| Ok(SPEC.to_string())).unwrap()
    }

    /// A call whose response body carries an email and a card number.
    fn leaky(ts_s: i64, path: &str, external: bool) -> Observation {
        let mut o = obs(ts_s, "GET", path, 200);
        o.external = external;
        o.resp_body = Some(br#"{"email":"jane@example.com","card":{"number":"4111111111111111"}}"#.to_vec());
        o.material = Some(Box::default());
        // As the gate's hash would pick one call in four.
        o.picked = ts_s % 4 == 3;
        o
    }

    #[test]
    fn sensitive_data_is_sampled_per_endpoint_and_reported_once_per_place() {
        let mut inv = Inventory::new(InventoryConfig::default());
        let cfg = crate::sensitive::SensitiveConfig { first: 2, every: 4, ..Default::default() };
        inv.sensitive = Some(crate::sensitive::Sensitive::new(cfg));
        let mut ev = Vec::new();
        for i in 0..10 {
            inv.observe(&leaky(i, &format!("/accounts/{}", 1000 + i), false), &mut ev);
        }
        let exposures: Vec<(&str, String, String)> =
            ev.iter().filter_map(|e| e.exposure.as_ref().map(|x| (e.event, x.ty.clone(), x.field.clone()))).collect();
        assert_eq!(
            exposures,
            vec![
                ("new_exposure", "email".to_string(), "$.email".to_string()),
                ("new_exposure", "credit_card".to_string(), "$.card.number".to_string())
            ]
        );
        let x = ev.iter().find_map(|e| e.exposure.as_ref()).unwrap();
        assert_eq!((x.masked.as_str(), x.status_class, x.location), ("j***@e***.com", "2xx", "response_body"));
        // Calls 1, 2 (the first two), then those the rate picked (4 and 8): the first calls
        // are counted per endpoint after templating (/accounts/{id}), not per raw path.
        let c = &inv.sensitive.as_ref().unwrap().counters;
        assert_eq!((c.transactions_seen, c.transactions_sampled, c.skipped_rate), (10, 4, 6));
        // An external client: one more event per place, then nothing new.
        ev.clear();
        let (mut a, mut b) = (leaky(20, "/accounts/1", true), leaky(21, "/accounts/2", true));
        (a.picked, b.picked) = (true, true);
        inv.observe(&a, &mut ev);
        inv.observe(&b, &mut ev);
        // Without material (the gate held it back), nothing is read.
        let mut c = leaky(23, "/accounts/3", true);
        c.material = None;
        inv.observe(&c, &mut ev);
        let kinds: Vec<&str> = ev.iter().filter(|e| e.exposure.is_some()).map(|e| e.event).collect();
        assert_eq!(kinds, vec!["external_exposure", "external_exposure"]);
        inv.finish(&mut ev);
        let views = inv.views();
        let e = views.iter().find(|v| v.template == "/accounts/{id}").expect("templated").endpoint;
        assert_eq!(e.sensitive.len(), 2);
        assert!(e.sensitive.iter().all(|x| x.external && x.count == 6 && x.hashes.len() == 1));
    }

    #[test]
    fn the_byte_budget_holds_in_packet_time() {
        let mut inv = Inventory::new(InventoryConfig::default());
        // Room for about one body per second.
        let cfg = crate::sensitive::SensitiveConfig { bytes_per_sec: 120, first: 1000, ..Default::default() };
        inv.sensitive = Some(crate::sensitive::Sensitive::new(cfg));
        let mut ev = Vec::new();
        for i in 0..40 {
            // Four calls per second of packet time.
            inv.observe(&leaky(i / 4, "/accounts/7", false), &mut ev);
        }
        let c = &inv.sensitive.as_ref().unwrap().counters;
        assert_eq!(c.transactions_seen, 40);
        assert!((9..=11).contains(&c.transactions_sampled), "{c:?}");
        assert_eq!(c.skipped_budget, 40 - c.transactions_sampled);
    }

    fn by_template(events: &[InventoryEvent]) -> BTreeMap<String, &InventoryEvent> {
        events.iter().map(|e| (format!("{} {}", e.method, e.template), e)).collect()
    }

    #[test]
    fn documented_shadow_zombie_and_inactive() {
        let cfg = InventoryConfig { specs: vec![spec()], ..InventoryConfig::default() };
        let mut inv = Inventory::new(cfg);
        let mut ev = Vec::new();
        inv.observe(&obs(0, "GET", "/v2/idle", 200), &mut ev);
        let day = 86_400;
        for (i, p) in ["/v2/users/17", "/v2/users/me", "/v2/users/alice", "/v1/users/3", "/v2/legacy", "/v2/debug"]
            .iter()
            .enumerate()
        {
            inv.observe(&obs(40 * day + i as i64, "GET", p, if *p == "/v2/users/17" { 418 } else { 200 }), &mut ev);
        }
        inv.finish(&mut ev);
        let e = by_template(&ev);
        assert_eq!(e["GET /v2/users/{id}"].posture.standing, Standing::Documented);
        assert_eq!(e["GET /v2/users/{id}"].posture.undocumented_status, vec!["418".to_string()]);
        assert_eq!(e["GET /v2/users/{id}"].posture.undocumented_query, vec!["page".to_string()]);
        assert_eq!(e["GET /v2/users/me"].posture.standing, Standing::Documented);
        assert_eq!(e["GET /v2/legacy"].posture.standing, Standing::Zombie);
        assert_eq!(e["GET /v1/users/{id}"].posture.standing, Standing::Zombie, "older version still answering");
        assert_eq!(e["GET /v2/debug"].posture.standing, Standing::Shadow);
        assert_eq!(e["GET /v2/debug"].event, "shadow_endpoint");
        assert!(!e.contains_key("GET /v2/users/alice"), "declared variable: values go to it");
        let act: BTreeMap<String, &str> =
            inv.declared_activity().iter().map(|d| (d.path.clone(), d.activity)).collect();
        assert_eq!(act["/v2/idle"], "inactive");
        assert_eq!(act["/v2/users/{id}"], "active");
    }

    #[test]
    fn new_endpoints_wait_to_settle_and_merged_values_are_not_reported() {
        let mut inv = Inventory::new(InventoryConfig { settle_ns: 60_000_000_000, ..InventoryConfig::default() });
        let mut ev = Vec::new();
        let names = [
            "kavoru", "telimo", "brasko", "quendi", "zorvath", "mulpex", "dravin", "colmar", "fistra", "yelbon",
            "garnix", "hopwel", "irvane",
        ];
        for (i, n) in names.iter().enumerate() {
            inv.observe(&obs(i as i64, "GET", &format!("/people/{n}"), 200), &mut ev);
        }
        assert!(ev.is_empty(), "nothing settled yet: {:?}", ev.iter().map(|e| &e.template).collect::<Vec<_>>());
        inv.observe(&obs(100, "GET", "/people/zzkrt", 200), &mut ev);
        let t: Vec<&str> = ev.iter().map(|e| e.template.as_str()).collect();
        assert_eq!(t, vec!["/people/{id}"]);
        assert_eq!(ev[0].calls, 14, "the facts of the merged values were kept");
        inv.finish(&mut ev);
        assert_eq!(ev.len(), 1, "reported once");
    }

    #[test]
    fn caps_hold_and_are_counted() {
        let cfg = InventoryConfig { max_hosts: 2, max_endpoints_per_host: 5, ..InventoryConfig::default() };
        let mut inv = Inventory::new(cfg);
        let mut ev = Vec::new();
        for h in 0..4 {
            for p in 0..10 {
                let mut o = obs(
                    p,
                    if p % 2 == 0 { "GET" } else { "POST" },
                    &format!("/r{h}/words{}", (b'a' + p as u8) as char),
                    200,
                );
                o.host = format!("h{h}").into();
                inv.observe(&o, &mut ev);
            }
        }
        assert_eq!(inv.hosts.len(), 2);
        assert_eq!(inv.counters.hosts_dropped_cap, 20);
        assert!(inv.hosts.values().all(|h| h.endpoints <= 5));
        assert_eq!(inv.counters.endpoints_dropped_cap, 10);

        // Template nodes: per host and in all, vocabulary included.
        let cfg = InventoryConfig { max_nodes_per_host: 40, max_nodes_total: 100, ..InventoryConfig::default() };
        let mut inv = Inventory::new(cfg);
        let words = ["users", "orders", "items", "teams", "files", "tags", "jobs", "logs", "keys", "plans"];
        for h in 0..5 {
            for a in words {
                for b in words {
                    let mut o = obs(1, "GET", &format!("/{a}/{b}"), 200);
                    o.host = format!("h{h}").into();
                    inv.observe(&o, &mut ev);
                }
            }
        }
        // A node at the cap may still get its one variable child: at most twice the cap.
        let live: Vec<usize> = inv.hosts.values().map(|h| h.trie.live).collect();
        assert!(live.iter().all(|&n| n <= 80), "{live:?}");
        assert!(inv.nodes <= 200 && inv.nodes == live.iter().sum::<usize>(), "{} {live:?}", inv.nodes);
        assert!(inv.counters.nodes_capped > 0);
    }

    #[test]
    fn state_survives_serialization() {
        let mut inv = Inventory::new(InventoryConfig::default());
        let mut ev = Vec::new();
        inv.observe(&obs(1, "GET", "/orders/5", 200), &mut ev);
        let saved: Vec<(String, String)> =
            inv.take_dirty().into_iter().map(|(n, h)| (n.to_string(), serde_json::to_string(h).unwrap())).collect();
        let mut back = Inventory::new(InventoryConfig::default());
        for (n, h) in saved {
            back.restore(&n, serde_json::from_str(&h).unwrap());
        }
        back.observe(&obs(2, "GET", "/orders/6", 200), &mut ev);
        let v = back.views();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].template, "/orders/{id}");
        assert_eq!(v[0].endpoint.count, 2);
        // A literal pinned in a later configuration splits future calls off the variable.
        let saved: Vec<(String, String)> =
            back.take_dirty().into_iter().map(|(n, h)| (n.to_string(), serde_json::to_string(h).unwrap())).collect();
        let cfg = InventoryConfig { pins: vec![(None, "/orders/7".into())], ..InventoryConfig::default() };
        let mut split = Inventory::new(cfg);
        for (n, h) in saved {
            split.restore(&n, serde_json::from_str(&h).unwrap());
        }
        split.observe(&obs(3, "GET", "/orders/7", 200), &mut ev);
        split.observe(&obs(4, "GET", "/orders/8", 200), &mut ev);
        let t: Vec<(String, u64)> = split.views().iter().map(|v| (v.template.clone(), v.endpoint.count)).collect();
        assert_eq!(t, vec![("/orders/7".to_string(), 1), ("/orders/{id}".to_string(), 3)]);
    }

    #[test]
    fn a_running_inventory_takes_new_pins_and_specs() {
        let mut inv = Inventory::new(InventoryConfig::default());
        let mut ev = Vec::new();
        inv.observe(&obs(1, "GET", "/orders/5", 200), &mut ev);
        inv.observe(&obs(2, "GET", "/v2/debug", 200), &mut ev);
        let nodes = inv.nodes;
        inv.reconfigure(InventoryConfig {
            pins: vec![(None, "/orders/7".into())],
            specs: vec![spec()],
            ..InventoryConfig::default()
        });
        assert!(inv.nodes > nodes, "the pin and the declared paths became nodes");
        assert_eq!(inv.nodes, inv.hosts.values().map(|h| h.trie.live).sum::<usize>());
        inv.observe(&obs(3, "GET", "/orders/7", 200), &mut ev);
        inv.observe(&obs(4, "GET", "/orders/8", 200), &mut ev);
        let views = inv.views();
        let t: Vec<(&str, u64)> = views.iter().map(|v| (v.template.as_str(), v.endpoint.count)).collect();
        assert!(t.contains(&("/orders/7", 1)) && t.contains(&("/orders/{id}", 2)), "{t:?}");
        // Judged against the spec loaded by the reload.
        let debug = views.iter().find(|v| v.template == "/v2/debug").unwrap();
        assert_eq!(inv.posture("api.example.com", "GET", "/v2/debug", debug.endpoint).standing, Standing::Shadow);
    }

    #[test]
    fn a_cold_start_template_of_names_is_undone_and_counted() {
        let names = [
            "kazomi", "turelo", "bivado", "nofeta", "lucaro", "pemizu", "godaki", "ravune", "sotiba", "hejofu",
            "mikaro", "dunepa",
        ];
        let mut inv = Inventory::new(InventoryConfig { settle_ns: 4_000_000_000, ..InventoryConfig::default() });
        let mut ev = Vec::new();
        for (i, n) in names.iter().enumerate() {
            inv.observe(&obs(i as i64, "GET", &format!("/api/{n}"), 200), &mut ev);
        }
        assert_eq!(inv.views().iter().map(|v| v.template.as_str()).collect::<Vec<_>>(), ["/api/{id}"]);
        for i in 0..300 {
            inv.observe(&obs(20 + i / 10, "GET", &format!("/api/{}", names[i as usize % names.len()]), 200), &mut ev);
        }
        assert_eq!(inv.counters.endpoints_undone, 1);
        let t: Vec<String> = inv.views().iter().map(|v| v.template.clone()).collect();
        assert_eq!(t.len(), names.len(), "{t:?}");
        assert!(t.contains(&"/api/kazomi".to_string()), "{t:?}");
        assert_eq!(inv.endpoints, names.len());
        assert_eq!(inv.nodes, inv.hosts.values().map(|h| h.trie.live).sum::<usize>());
    }
}
