//! Path templating: one trie of path segments per host. A segment is a literal child, or a
//! variable child (`{id}`, with an optional extension: `{id}.json`). Values that look like
//! identifiers (numbers, UUIDs, hex, tokens, emails) are variables at once; dates and slugs
//! once a second distinct one is seen at the same place; other literals when their siblings
//! show the cardinality of values rather than of names. Words of API vocabulary, pinned
//! templates and paths declared in specs stay literal.
//!
//! Endpoints hang off trie nodes (one per method), so learning that a position is variable
//! merges the subtrees under it and, with them, the endpoints' facts.

use crate::segment::{classify, is_vocabulary, split_ext, Kind, Kinds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Distinct non-vocabulary literals at one place before their cardinality is judged (3/4 of
/// them must have been called once).
pub const MIN_SIBLINGS: usize = 12;
/// With this many, a median of one call per value is enough (robust to hot values).
pub const MANY_SIBLINGS: usize = 64;
/// With this many, the place is variable whatever the counts.
pub const MAX_SIBLINGS: usize = 256;
pub const MAX_SEGMENTS: usize = 32;
pub const MAX_SEGMENT_LEN: usize = 128;
pub const MAX_EXAMPLES: usize = 4;

/// How a variable position was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learned {
    /// Values looked like identifiers.
    Shape,
    /// Two or more distinct dates or slugs.
    Soft,
    /// Many distinct values, each rarely repeated.
    Cardinality,
    /// A pinned template or a declared path says so.
    Pinned,
    /// The node cap of the host was reached.
    Capped,
    /// Sibling names with the same sub-resources under an id (`/packages/npm/{id}/versions`
    /// and `/packages/maven/{id}/versions`): values of one parameter.
    Alike,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub kinds: Kinds,
    /// A few values, masked when they could be personal or secret.
    pub examples: Vec<String>,
    /// Distinct literals merged into this variable.
    pub merged: u64,
    pub learned: Option<Learned>,
    /// While a variable learned from cardinality is young: what its values do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<Box<Probation>>,
}

/// A 64-bit FNV-1a hash of a segment or a label (stable across runs and machines).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3))
}

/// Values kept on probation at most, and calls after which the verdict is given.
pub const PROBATION_VALUES: usize = 128;
pub const PROBATION_CALLS: u32 = 256;

/// The values a variable learned from cardinality takes in its first calls. At a cold
/// start a dozen names each called once look like values; names then repeat, values do
/// not. After [`PROBATION_CALLS`], few distinct values (a quarter of the calls or fewer)
/// mean names: the variable is undone. More than [`PROBATION_VALUES`], or a spread
/// verdict, confirm it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probation {
    /// Hashes of the values and their calls.
    values: Vec<(u64, u32)>,
    calls: u32,
    overflow: bool,
}

impl Probation {
    fn note(&mut self, value: &str, calls: u32) {
        let h = fnv(value);
        self.calls = self.calls.saturating_add(calls);
        if let Some(v) = self.values.iter_mut().find(|v| v.0 == h) {
            v.1 = v.1.saturating_add(calls);
        } else if self.values.len() < PROBATION_VALUES {
            self.values.push((h, calls));
        } else {
            self.overflow = true;
        }
    }

    /// None: not yet; Some(true): names after all; Some(false): values.
    fn verdict(&self) -> Option<bool> {
        if self.overflow {
            return Some(false);
        }
        if self.calls < PROBATION_CALLS {
            return None;
        }
        Some(self.values.len() * 4 <= self.calls as usize)
    }
}

impl Evidence {
    fn note(&mut self, kind: Kind, value: &str) {
        self.kinds.add(kind);
        if self.examples.len() < MAX_EXAMPLES {
            let ex = example(kind, value);
            if !self.examples.contains(&ex) {
                self.examples.push(ex);
            }
        }
    }

    fn merge(&mut self, o: &Evidence) {
        self.kinds.union(o.kinds);
        for e in &o.examples {
            if self.examples.len() < MAX_EXAMPLES && !self.examples.contains(e) {
                self.examples.push(e.clone());
            }
        }
        self.merged += o.merged;
        self.learned = match (self.learned, o.learned) {
            (Some(Learned::Pinned), _) | (_, Some(Learned::Pinned)) => Some(Learned::Pinned),
            (a, b) => a.or(b),
        };
    }

    /// How sure we are that this position is variable.
    pub fn confidence(&self) -> f64 {
        match self.learned {
            Some(Learned::Pinned) => 1.0,
            Some(Learned::Shape) => 0.95,
            Some(Learned::Soft) => 0.8,
            Some(Learned::Cardinality) => (0.6 + self.merged as f64 / 100.0).min(0.9),
            Some(Learned::Alike) => (0.6 + self.merged as f64 / 20.0).min(0.9),
            Some(Learned::Capped) | None => 0.5,
        }
    }
}

/// A value as evidence: numbers, UUIDs and dates as they are; anything that could be a
/// name, an address or a secret reduced to its shape.
fn example(kind: Kind, v: &str) -> String {
    let v: String = v.chars().take(64).collect();
    match kind {
        Kind::Integer | Kind::Number | Kind::Uuid | Kind::Date | Kind::DateTime | Kind::Boolean => v,
        Kind::Email => match v.find('@') {
            Some(i) => format!("{}***{}", &v[..1.min(i)], &v[i..]),
            None => "***".into(),
        },
        _ => {
            let head: String = v.chars().take(2).collect();
            format!("{head}*** ({} chars)", v.chars().count())
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Node {
    /// The literal, or for a variable `{id}` plus its extension.
    pub label: Box<str>,
    pub var: bool,
    pub parent: u32,
    pub lits: BTreeMap<Box<str>, u32>,
    /// Variable children by extension (`""`, `".json"`).
    pub vars: Vec<(Box<str>, u32)>,
    /// Unknown literals here go to a variable child.
    pub variable: bool,
    /// Observations that passed through this node.
    pub hits: u64,
    /// A literal that looks like a date or slug.
    pub soft: bool,
    /// A literal that must stay (vocabulary, pinned, declared).
    pub keep: bool,
    /// A pinned or declared variable child: every literal not pinned here goes to it.
    pub strict: bool,
    /// A literal pinned or declared: never merged.
    #[serde(default)]
    pub pinned: bool,
    /// Its children were once merged by cardinality and turned out to be names: only
    /// [`MAX_SIBLINGS`] of them make it variable again.
    #[serde(default)]
    pub names: bool,
    pub evidence: Option<Box<Evidence>>,
    /// Endpoint slots by method.
    pub endpoints: Vec<(Box<str>, u32)>,
}

impl Node {
    /// A slot on the free list (a node merged away): no label, no parent, nothing below.
    fn free_slot(&self) -> bool {
        self.label.is_empty() && self.lits.is_empty() && self.vars.is_empty() && self.endpoints.is_empty()
    }
}

/// The trie of one host. Node 0 is the root (`/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trie {
    pub nodes: Vec<Node>,
    free: Vec<u32>,
    pub live: usize,
    /// Moves with every node or endpoint added: [`Trie::merge_alike`] looks again only
    /// when the shape changed.
    #[serde(default)]
    changes: u64,
    #[serde(default)]
    alike_seen: u64,
    /// Set by the owner when the probation budget is spent: new variables are then
    /// confirmed at once.
    #[serde(skip)]
    pub no_probation: bool,
    /// Probations started since the owner last looked.
    #[serde(skip)]
    pub probations_started: usize,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node { label: "".into(), ..Node::default() }],
            free: Vec::new(),
            live: 1,
            changes: 0,
            alike_seen: 0,
            no_probation: false,
            probations_started: 0,
        }
    }
}

/// Literal siblings with the same sub-resources are merged when at least this many agree.
pub const MIN_ALIKE: usize = 3;

/// Subtrees with more names than this are not compared (enumerated values have small
/// ones), which bounds the cost of a pass.
pub const ALIKE_MAX_NAMES: usize = 64;

/// What [`Trie::merge_alike`] knows of a subtree: its names (hashes of relative paths,
/// sorted), and whether one is below a variable (a named sub-resource under an id).
#[derive(Clone)]
struct Shape {
    names: Box<[u64]>,
    deep: bool,
}

/// Two subtrees are alike when at least two thirds of the names either has are in both
/// (traffic may not yet have called every sub-resource of every value).
fn alike(a: &[u64], b: &[u64]) -> bool {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    both > 0 && both * 3 >= union * 2
}

/// Side effects of learning that the inventory applies to its endpoint slots.
#[derive(Debug, Default)]
pub struct Learning {
    /// (from, into): merge endpoint slot `from` into `into` and free `from`.
    pub merged: Vec<(u32, u32)>,
    /// Endpoint slots of a variable undone (names, not values): drop them.
    pub removed: Vec<u32>,
    pub capped: u64,
    pub truncated: u64,
}

/// Split a path into segments, dropping empty ones (`//`, a trailing `/`).
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl Trie {
    fn alloc(&mut self, n: Node) -> u32 {
        self.live += 1;
        self.changes += 1;
        if let Some(i) = self.free.pop() {
            self.nodes[i as usize] = n;
            i
        } else {
            self.nodes.push(n);
            (self.nodes.len() - 1) as u32
        }
    }

    fn var_child(&mut self, at: u32, ext: &str) -> u32 {
        if let Some((_, c)) = self.nodes[at as usize].vars.iter().find(|(e, _)| e.as_ref() == ext) {
            return *c;
        }
        let c = self.alloc(Node {
            label: format!("{{id}}{ext}").into(),
            var: true,
            parent: at,
            evidence: Some(Box::default()),
            ..Node::default()
        });
        self.nodes[at as usize].vars.push((ext.into(), c));
        c
    }

    /// Walk `path`, learning from it; returns the node the endpoint hangs off.
    pub fn learn(&mut self, path: &str, max_nodes: usize, out: &mut Learning) -> u32 {
        let mut at = 0u32;
        self.nodes[0].hits += 1;
        for (depth, seg) in segments(path).enumerate() {
            if depth >= MAX_SEGMENTS {
                out.truncated += 1;
                break;
            }
            at = self.step(at, depth, seg, max_nodes, out);
            self.nodes[at as usize].hits += 1;
        }
        at
    }

    fn step(&mut self, at: u32, depth: usize, seg: &str, max_nodes: usize, out: &mut Learning) -> u32 {
        if let Some(&c) = self.nodes[at as usize].lits.get(seg) {
            return c;
        }
        let (stem, ext) = split_ext(seg);
        let kind = if seg.len() > MAX_SEGMENT_LEN { Kind::Token } else { classify(stem) };
        let strict = self.nodes[at as usize].strict;
        let keep = !strict && (is_vocabulary(seg) || is_vocabulary(stem));
        // A date or slug where dates or slugs were already found to vary.
        let soft_var = kind.is_soft() && self.nodes[at as usize].vars.iter().any(|(e, _)| e.as_ref() == ext);
        let id = kind.is_id() && depth > 0 || strict || soft_var;
        // At the node cap even vocabulary goes to a variable: nothing grows past the cap.
        if id || (self.nodes[at as usize].variable && !keep) || self.live >= max_nodes {
            let learned = if id {
                Learned::Shape
            } else if self.live >= max_nodes && !self.nodes[at as usize].variable {
                out.capped += 1;
                Learned::Capped
            } else {
                Learned::Cardinality
            };
            // At the cap, one variable per node (no per-extension ones): a node may then
            // add at most one child, so a trie never exceeds twice its cap.
            let c = self.var_child(at, if self.live >= max_nodes { "" } else { ext });
            let ev = self.nodes[c as usize].evidence.get_or_insert_with(Box::default);
            ev.note(kind, stem);
            if let Some(p) = ev.probation.as_mut() {
                p.note(seg, 1);
            }
            if ev.learned.is_none() || learned == Learned::Shape && ev.learned == Some(Learned::Cardinality) {
                ev.learned = Some(learned);
            }
            return c;
        }
        let soft = kind.is_soft() || kind.is_id();
        let c = self.alloc(Node { label: seg.into(), parent: at, soft, keep, ..Node::default() });
        self.nodes[at as usize].lits.insert(seg.into(), c);
        if !keep {
            self.judge(at, out);
        }
        // The literal may have been merged into a variable just now.
        match self.nodes[at as usize].lits.get(seg) {
            Some(&c) => c,
            None => self.var_child(at, ext),
        }
    }

    /// Decide whether the literals under `at` are values rather than names, and merge them.
    fn judge(&mut self, at: u32, out: &mut Learning) {
        let node = &self.nodes[at as usize];
        let soft: Vec<u32> = node.lits.values().copied().filter(|&c| self.nodes[c as usize].soft).collect();
        if soft.len() >= 2 {
            self.merge_lits(at, &soft, Learned::Soft, out);
        }
        let node = &self.nodes[at as usize];
        let mut hits: Vec<u64> = Vec::new();
        let mut free: Vec<u32> = Vec::new();
        for &c in node.lits.values() {
            let n = &self.nodes[c as usize];
            if !n.keep {
                free.push(c);
                hits.push(n.hits.max(1));
            }
        }
        let n = free.len();
        if n < MIN_SIBLINGS {
            return;
        }
        // Values are mostly seen once each; names repeat. Judged on the share of literals
        // called once, so that a hot static sibling does not hide the values next to it.
        let singletons = hits.iter().filter(|&&h| h <= 1).count();
        let mid = n / 2;
        let median = *hits.clone().select_nth_unstable(mid).1;
        let variable = if self.nodes[at as usize].names {
            n >= MAX_SIBLINGS
        } else {
            singletons * 4 >= n * 3 || n >= MAX_SIBLINGS || (n >= MANY_SIBLINGS && median <= 1)
        };
        if variable {
            self.nodes[at as usize].variable = true;
            // Literals called far more than the rest stay: static routes next to values.
            let hot = (4 * median).max(8);
            let merge: Vec<u32> = free.into_iter().filter(|&c| self.nodes[c as usize].hits < hot).collect();
            self.merge_lits(at, &merge, Learned::Cardinality, out);
        }
    }

    fn merge_lits(&mut self, at: u32, lits: &[u32], how: Learned, out: &mut Learning) {
        for &c in lits {
            let label = self.nodes[c as usize].label.clone();
            // Still a literal child of `at` (an earlier merge may have moved it).
            if self.nodes[at as usize].lits.get(&label) != Some(&c) {
                continue;
            }
            let (stem, ext) = split_ext(&label);
            let v = self.var_child(at, ext);
            let hits = self.nodes[c as usize].hits;
            if let Some(ev) = self.nodes[v as usize].evidence.as_mut() {
                ev.note(classify(stem), stem);
                ev.merged += 1;
                if ev.learned.is_none() || ev.learned == Some(Learned::Capped) {
                    ev.learned = Some(how);
                    if how == Learned::Cardinality && !self.no_probation {
                        ev.probation = Some(Box::default());
                        self.probations_started += 1;
                    }
                }
                if let Some(p) = ev.probation.as_mut() {
                    p.note(&label, hits.clamp(1, u64::from(u32::MAX)) as u32);
                }
            }
            self.nodes[at as usize].lits.remove(&label);
            self.merge_node(c, v, out);
        }
    }

    /// Merge the subtree at `src` into `dst` (children, counts, endpoints) and free `src`.
    fn merge_node(&mut self, src: u32, dst: u32, out: &mut Learning) {
        let s = std::mem::take(&mut self.nodes[src as usize]);
        {
            let d = &mut self.nodes[dst as usize];
            d.hits += s.hits;
            d.variable |= s.variable;
            if let (Some(de), Some(se)) = (d.evidence.as_mut(), s.evidence.as_ref()) {
                de.merge(se);
            }
        }
        for (m, e) in s.endpoints {
            let d = &mut self.nodes[dst as usize];
            match d.endpoints.iter().find(|(dm, _)| *dm == m) {
                Some(&(_, into)) => out.merged.push((e, into)),
                None => d.endpoints.push((m, e)),
            }
        }
        for (label, c) in s.lits {
            match self.nodes[dst as usize].lits.get(&label).copied() {
                Some(existing) => self.merge_node(c, existing, out),
                None if self.nodes[dst as usize].variable && !self.nodes[c as usize].keep => {
                    let (stem, ext) = split_ext(&label);
                    let v = self.var_child(dst, ext);
                    if let Some(ev) = self.nodes[v as usize].evidence.as_mut() {
                        ev.note(classify(stem), stem);
                        ev.merged += 1;
                    }
                    self.merge_node(c, v, out);
                }
                None => {
                    self.nodes[c as usize].parent = dst;
                    self.nodes[dst as usize].lits.insert(label, c);
                }
            }
        }
        for (ext, c) in s.vars {
            match self.nodes[dst as usize].vars.iter().find(|(e, _)| *e == ext).map(|x| x.1) {
                Some(existing) => self.merge_node(c, existing, out),
                None => {
                    self.nodes[c as usize].parent = dst;
                    self.nodes[dst as usize].vars.push((ext, c));
                }
            }
        }
        // `take` left a default node behind; return the slot.
        self.nodes[src as usize] = Node::default();
        self.free.push(src);
        self.live -= 1;
        // The merged-in literals may now be many enough to judge.
        if self.nodes[dst as usize].lits.len() >= MIN_SIBLINGS && !self.nodes[dst as usize].variable {
            self.judge(dst, out);
        }
    }

    /// Make `template` (`/users/{id}/orders`, `{x}` for a variable) a fixed part of the trie:
    /// its literals are kept, its variables are variables.
    pub fn pin(&mut self, template: &str) -> u32 {
        let mut at = 0u32;
        for seg in segments(template).take(MAX_SEGMENTS) {
            let (stem, ext) = split_ext(seg);
            at = if stem.starts_with('{') && stem.ends_with('}') {
                self.nodes[at as usize].strict = true;
                self.nodes[at as usize].variable = true;
                let v = self.var_child(at, ext);
                if let Some(ev) = self.nodes[v as usize].evidence.as_mut() {
                    ev.learned = Some(Learned::Pinned);
                }
                v
            } else if let Some(&c) = self.nodes[at as usize].lits.get(seg) {
                self.nodes[c as usize].keep = true;
                self.nodes[c as usize].pinned = true;
                c
            } else {
                let c = self.alloc(Node { label: seg.into(), parent: at, keep: true, pinned: true, ..Node::default() });
                self.nodes[at as usize].lits.insert(seg.into(), c);
                c
            };
        }
        at
    }

    /// The template of a node: `/users/{id}/orders`.
    pub fn template(&self, mut at: u32) -> String {
        let mut parts = Vec::new();
        while at != 0 {
            let n = &self.nodes[at as usize];
            parts.push(n.label.as_ref());
            at = n.parent;
        }
        if parts.is_empty() {
            return "/".into();
        }
        let mut s = String::new();
        for p in parts.iter().rev() {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    /// Nodes from the root to `at` (root excluded).
    pub fn chain(&self, mut at: u32) -> Vec<u32> {
        let mut v = Vec::new();
        while at != 0 {
            v.push(at);
            at = self.nodes[at as usize].parent;
        }
        v.reverse();
        v
    }

    /// The confidence of a template: its least sure variable; for a literal whose siblings
    /// look like values (but not yet enough to tell), lowered in proportion.
    pub fn confidence(&self, at: u32) -> f64 {
        let mut c: f64 = 1.0;
        for n in self.chain(at) {
            let node = &self.nodes[n as usize];
            if let Some(ev) = &node.evidence {
                c = c.min(ev.confidence());
            } else if !node.keep {
                let parent = &self.nodes[node.parent as usize];
                let unsure = parent.lits.values().filter(|&&s| !self.nodes[s as usize].keep).count();
                if unsure > 1 {
                    c = c.min(1.0 - 0.5 * (unsure as f64 / MIN_SIBLINGS as f64).min(1.0));
                }
            }
        }
        c
    }

    /// The endpoint slot for `method` at `at`, if any.
    pub fn endpoint(&self, at: u32, method: &str) -> Option<u32> {
        self.nodes[at as usize].endpoints.iter().find(|(m, _)| m.as_ref() == method).map(|x| x.1)
    }

    pub fn add_endpoint(&mut self, at: u32, method: &str, slot: u32) {
        self.nodes[at as usize].endpoints.push((method.into(), slot));
        self.changes += 1;
    }

    /// Merge literal siblings that have the same named sub-resources under ids, when at
    /// least [`MIN_ALIKE`] agree (`/packages/{npm,maven,nuget}/{id}/versions/{id}`): they are
    /// values of one parameter, an enumeration. A literal alike a variable learned so joins
    /// it. Shapes without a name under an id (`/labels/{id}`, `/keys/{id}`) are as common
    /// among resources as among values, so they never count; different sub-resources
    /// (`/calls/{id}/recordings`, `/queues/{id}/members`) tell resources apart; pinned
    /// literals stay. Called from time to time, not per observation: it walks the trie.
    pub fn merge_alike(&mut self, out: &mut Learning) {
        if self.changes == self.alike_seen {
            return;
        }
        let mut shapes = vec![None; self.nodes.len()];
        // Every subtree small enough gets a shape, whatever the size of the whole.
        for at in 0..self.nodes.len() {
            if shapes[at].is_none() && !self.nodes[at].lits.is_empty() {
                self.shape(at as u32, &mut shapes, 0);
            }
        }
        let mut merges: Vec<(u32, Vec<u32>)> = Vec::new();
        for (at, node) in self.nodes.iter().enumerate() {
            if node.lits.len() < MIN_ALIKE && node.vars.is_empty() || node.strict {
                continue;
            }
            let shape_of = |c: u32| shapes.get(c as usize).and_then(|s| s.as_ref()).filter(|s: &&Shape| s.deep);
            // Candidates: literals that are not pinned, with a name below an id.
            let cands: Vec<(u32, &Shape)> = node
                .lits
                .values()
                .filter(|&&c| !self.nodes[c as usize].pinned && split_ext(&self.nodes[c as usize].label).1.is_empty())
                .filter_map(|&c| shape_of(c).map(|sh| (c, sh)))
                .collect();
            // Alike pairs joined into groups (union-find over the candidates).
            let mut root: Vec<usize> = (0..cands.len()).collect();
            fn find(root: &mut [usize], i: usize) -> usize {
                let mut i = i;
                while root[i] != i {
                    root[i] = root[root[i]];
                    i = root[i];
                }
                i
            }
            for i in 0..cands.len() {
                for j in i + 1..cands.len() {
                    if alike(&cands[i].1.names, &cands[j].1.names) {
                        let (a, b) = (find(&mut root, i), find(&mut root, j));
                        root[a] = b;
                    }
                }
            }
            let mut size = vec![0usize; cands.len()];
            for i in 0..cands.len() {
                size[find(&mut root, i)] += 1;
            }
            // A variable an earlier pass learned from alike names takes those like it.
            let alike_var = node
                .vars
                .iter()
                .find(|(e, c)| {
                    e.is_empty()
                        && self.nodes[*c as usize]
                            .evidence
                            .as_ref()
                            .is_some_and(|ev| ev.learned == Some(Learned::Alike))
                })
                .and_then(|(_, v)| shape_of(*v));
            // A group is most of the names there: an enumeration's values fill their place
            // (`/packages/` holds package types), while resources that happen to share a
            // shape are a few among many (`/v2/floating_ips` and `/v2/reserved_ips` among
            // sixty others).
            let names = node.lits.values().filter(|&&c| !self.nodes[c as usize].pinned).count();
            let lits: Vec<u32> = (0..cands.len())
                .filter(|&i| {
                    let n = size[find(&mut root, i)];
                    n >= MIN_ALIKE && n * 2 >= names || alike_var.is_some_and(|v| alike(&cands[i].1.names, &v.names))
                })
                .map(|i| cands[i].0)
                .collect();
            if !lits.is_empty() {
                merges.push((at as u32, lits));
            }
        }
        for (at, lits) in merges {
            self.merge_lits(at, &lits, Learned::Alike, out);
            // Below the new variable, names that were read as values (where a variable sits
            // beside them) join that variable: `/packages/{id}/jofeke` from a value whose
            // packages were still literals, next to `/packages/{id}/{id}`.
            let vars: Vec<u32> = self.nodes[at as usize].vars.iter().map(|x| x.1).collect();
            for v in vars {
                self.fold_values(v, 0, out);
            }
        }
        self.alike_seen = self.changes;
    }

    /// Give the verdict on variables on probation (see [`Probation`]): confirmed ones drop
    /// their record; undone ones go, with their subtree and its endpoints (`out.removed`),
    /// and their parent takes names as literals again. Their calls so far are lost: they
    /// were counted under a template that was wrong. Called with [`Trie::merge_alike`].
    /// Returns how many variables are still on probation.
    pub fn review(&mut self, out: &mut Learning) -> usize {
        let mut undo = Vec::new();
        let mut pending = 0;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let Some(ev) = n.evidence.as_mut() else { continue };
            match ev.probation.as_ref().map(|p| p.verdict()) {
                Some(Some(true)) if !n.strict => undo.push(i as u32),
                Some(Some(_)) => ev.probation = None,
                Some(None) => pending += 1,
                None => {}
            }
        }
        for v in undo {
            let p = self.nodes[v as usize].parent;
            self.nodes[p as usize].vars.retain(|(_, c)| *c != v);
            self.nodes[p as usize].variable = false;
            self.nodes[p as usize].names = true;
            self.drop_subtree(v, out);
            self.changes += 1;
        }
        pending
    }

    /// Free `at` and everything below it; their endpoint slots go to `out.removed`.
    fn drop_subtree(&mut self, at: u32, out: &mut Learning) {
        let mut stack = vec![at];
        while let Some(n) = stack.pop() {
            let node = std::mem::take(&mut self.nodes[n as usize]);
            out.removed.extend(node.endpoints.iter().map(|(_, e)| *e));
            stack.extend(node.lits.values().copied());
            stack.extend(node.vars.iter().map(|(_, c)| *c));
            self.free.push(n);
            self.live -= 1;
        }
    }

    /// Merge the literals under `at` that may be values into the variable beside them, and
    /// so on down the variables.
    fn fold_values(&mut self, at: u32, depth: usize, out: &mut Learning) {
        if depth >= MAX_SEGMENTS || self.nodes[at as usize].free_slot() {
            return;
        }
        let node = &self.nodes[at as usize];
        let lits: Vec<u32> = node
            .lits
            .values()
            .copied()
            .filter(|&c| {
                let n = &self.nodes[c as usize];
                let ext = split_ext(&n.label).1;
                !n.keep && !n.pinned && node.vars.iter().any(|(e, _)| e.as_ref() == ext)
            })
            .collect();
        if !lits.is_empty() {
            self.merge_lits(at, &lits, Learned::Alike, out);
        }
        let vars: Vec<u32> = self.nodes[at as usize].vars.iter().map(|x| x.1).collect();
        for v in vars {
            self.fold_values(v, depth + 1, out);
        }
    }

    /// The shape of the subtree at `at`, recorded for every node under it: the names below
    /// it (vocabulary and pinned literals), each as its relative path in which other
    /// literals, which may be values, read as variables (so that `/{id}/versions` is the
    /// same below a value whose ids were merged and below one whose ids are still
    /// literals). Subtrees with more than [`ALIKE_MAX_NAMES`] have none (nor their
    /// ancestors). Returns the names.
    fn shape(&self, at: u32, shapes: &mut Vec<Option<Shape>>, depth: usize) -> Option<Vec<u64>> {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mix = |h: u64, x: u64| (h ^ x).wrapping_mul(K).rotate_left(31);
        let node = &self.nodes[at as usize];
        let mut names: Vec<u64> = Vec::new();
        let (mut deep, mut whole) = (false, depth < MAX_SEGMENTS);
        let children =
            node.lits.iter().map(|(l, &c)| (l.as_ref(), c)).chain(node.vars.iter().map(|(e, c)| (e.as_ref(), *c)));
        for (label, c) in children {
            let n = &self.nodes[c as usize];
            let name = !n.var && n.keep;
            let key = if name { fnv(label) } else { fnv("{}") ^ fnv(split_ext(&n.label).1) };
            let Some(sub) = (if whole { self.shape(c, shapes, depth + 1) } else { None }) else {
                whole = false;
                continue;
            };
            if name {
                names.push(mix(K, key));
            }
            names.extend(sub.iter().map(|&x| mix(key, x)));
            deep |= !name && !sub.is_empty() || shapes[c as usize].as_ref().is_some_and(|s| s.deep);
        }
        names.sort_unstable();
        names.dedup();
        if !whole || names.len() > ALIKE_MAX_NAMES {
            return None;
        }
        shapes[at as usize] = Some(Shape { names: names.clone().into_boxed_slice(), deep });
        Some(names)
    }

    /// Every node that has endpoints, in a stable order (by template).
    pub fn endpoint_nodes(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.endpoints.is_empty())
            .map(|(i, _)| (self.template(i as u32), i as u32))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn_all(t: &mut Trie, paths: &[&str]) -> Learning {
        let mut out = Learning::default();
        for p in paths {
            let at = t.learn(p, 10_000, &mut out);
            if t.endpoint(at, "GET").is_none() {
                t.add_endpoint(at, "GET", 0);
            }
        }
        out
    }

    fn tpl(t: &mut Trie, p: &str) -> String {
        let mut out = Learning::default();
        let at = t.learn(p, 10_000, &mut out);
        t.template(at)
    }

    #[test]
    fn ids_are_variables_at_once() {
        let mut t = Trie::default();
        assert_eq!(tpl(&mut t, "/users/123/orders/9f8e7c6d5b"), "/users/{id}/orders/{id}");
        assert_eq!(tpl(&mut t, "/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301"), "/users/{id}");
        assert_eq!(tpl(&mut t, "/users/me"), "/users/me");
        assert_eq!(tpl(&mut t, "/v1/items"), "/v1/items");
        assert_eq!(tpl(&mut t, "/v2/items"), "/v2/items");
        assert_eq!(
            tpl(&mut t, "/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA0123456789abcdef0123456789abcdef.json"),
            "/Accounts/{id}/Calls/{id}.json"
        );
        assert_eq!(tpl(&mut t, "/2010-04-01/Accounts"), "/2010-04-01/Accounts");
    }

    #[test]
    fn dates_need_two_values() {
        let mut t = Trie::default();
        assert_eq!(tpl(&mut t, "/reports/2024-01-01"), "/reports/2024-01-01");
        assert_eq!(tpl(&mut t, "/reports/2024-01-02"), "/reports/{id}");
        assert_eq!(tpl(&mut t, "/reports/2023-12-31"), "/reports/{id}");
    }

    #[test]
    fn names_merge_by_cardinality_and_vocabulary_stays() {
        let mut t = Trie::default();
        let names = [
            "kavoru", "telimo", "brasko", "quendi", "zorvath", "mulpex", "dravin", "colmar", "fistra", "yelbon",
            "garnix", "hopwel", "irvane",
        ];
        for n in names {
            tpl(&mut t, &format!("/user/{n}"));
            tpl(&mut t, "/user/login");
        }
        assert_eq!(tpl(&mut t, "/user/anyone"), "/user/{id}");
        assert_eq!(tpl(&mut t, "/user/login"), "/user/login");
        assert_eq!(tpl(&mut t, "/user/createWithList"), "/user/createWithList");
    }

    #[test]
    fn static_siblings_called_repeatedly_stay_apart() {
        let mut t = Trie::default();
        let res = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
        for _ in 0..5 {
            for r in res {
                tpl(&mut t, &format!("/api/{r}"));
            }
        }
        assert_eq!(tpl(&mut t, "/api/hotel"), "/api/hotel");
    }

    #[test]
    fn a_hot_static_sibling_stays_and_does_not_hide_values() {
        let mut t = Trie::default();
        for _ in 0..40 {
            tpl(&mut t, "/meta/global/boxSkillsCards");
        }
        for i in 0..14 {
            tpl(&mut t, &format!("/meta/global/tmpl{}x", (b'a' + i) as char));
        }
        assert_eq!(tpl(&mut t, "/meta/global/anything"), "/meta/global/{id}");
        assert_eq!(tpl(&mut t, "/meta/global/boxSkillsCards"), "/meta/global/boxSkillsCards");
    }

    #[test]
    fn merging_moves_subtrees_and_endpoints() {
        let mut t = Trie::default();
        let names: Vec<String> =
            (0..14).map(|i| format!("/repos/own{}x/proj{}z/issues", (b'a' + i) as char, (b'a' + i) as char)).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let out = learn_all(&mut t, &refs);
        assert_eq!(tpl(&mut t, "/repos/someone/thing/issues"), "/repos/{id}/{id}/issues");
        assert!(!out.merged.is_empty());
        let with: Vec<String> = t.endpoint_nodes().into_iter().map(|x| x.0).collect();
        assert_eq!(with, vec!["/repos/{id}/{id}/issues".to_string()]);
    }

    #[test]
    fn pinned_templates() {
        let mut t = Trie::default();
        t.pin("/files/{name}");
        t.pin("/users/admin");
        assert_eq!(tpl(&mut t, "/files/readme"), "/files/{id}");
        assert_eq!(tpl(&mut t, "/users/admin"), "/users/admin");
    }

    #[test]
    fn bounded_nodes() {
        let mut t = Trie::default();
        let mut out = Learning::default();
        for i in 0..5000 {
            t.learn(&format!("/a{i}b/c{i}d/e{i}f"), 300, &mut out);
        }
        assert!(t.live <= 600, "{}", t.live);
    }

    /// Endpoints at every path, with methods.
    fn learn_with(t: &mut Trie, calls: &[(&str, &str)]) {
        let mut out = Learning::default();
        for (m, p) in calls {
            let at = t.learn(p, 10_000, &mut out);
            if t.endpoint(at, m).is_none() {
                t.add_endpoint(at, m, 0);
            }
        }
    }

    fn templates(t: &Trie) -> Vec<String> {
        t.endpoint_nodes().into_iter().map(|x| x.0).collect()
    }

    #[test]
    fn names_with_the_same_sub_resources_are_one_parameter() {
        let mut t = Trie::default();
        let mut calls = Vec::new();
        let kinds = ["npm", "maven", "nuget", "docker"];
        for k in kinds {
            for i in 0..3 {
                calls.push(("GET", format!("/user/packages/{k}/pkg{i}a9f3c2e1")));
                calls.push(("GET", format!("/user/packages/{k}/pkg{i}a9f3c2e1/versions")));
                calls.push(("DELETE", format!("/user/packages/{k}/pkg{i}a9f3c2e1/versions/{}", 100 + i)));
            }
        }
        let calls: Vec<(&str, &str)> = calls.iter().map(|(m, p)| (*m, p.as_str())).collect();
        learn_with(&mut t, &calls);
        assert!(templates(&t).contains(&"/user/packages/npm/{id}/versions".to_string()), "{:?}", templates(&t));
        let mut out = Learning::default();
        t.merge_alike(&mut out);
        assert_eq!(
            templates(&t),
            ["/user/packages/{id}/{id}", "/user/packages/{id}/{id}/versions", "/user/packages/{id}/{id}/versions/{id}"]
        );
        assert_eq!(out.merged.len(), 9, "three endpoints of three names merged into the fourth's");
        // A later name shaped the same joins the variable (its package name still a literal:
        // names that may be values read as variables); one shaped otherwise stays.
        learn_with(
            &mut t,
            &[
                ("GET", "/user/packages/rubygems/jofeke"),
                ("GET", "/user/packages/rubygems/jofeke/versions"),
                ("DELETE", "/user/packages/rubygems/jofeke/versions/7"),
            ],
        );
        learn_with(&mut t, &[("GET", "/user/packages/settings")]);
        t.merge_alike(&mut Learning::default());
        assert_eq!(
            templates(&t),
            [
                "/user/packages/settings",
                "/user/packages/{id}/{id}",
                "/user/packages/{id}/{id}/versions",
                "/user/packages/{id}/{id}/versions/{id}"
            ]
        );
    }

    #[test]
    fn resources_of_the_same_shallow_shape_stay_apart() {
        // CRUD resources share `/{name}/{id}` with the same methods: no named sub-resource
        // under the id, so nothing says they are values. Nor do pinned names merge.
        let mut t = Trie::default();
        let mut calls = Vec::new();
        for r in ["labels", "milestones", "keys", "hooks", "Addresses.json"] {
            for i in 0..3 {
                calls.push(("GET", format!("/repos/o1/r1/{r}/{}", 10 + i)));
                calls.push(("DELETE", format!("/repos/o1/r1/{r}/{}", 10 + i)));
            }
            calls.push(("GET", format!("/repos/o1/r1/{r}")));
        }
        // Resources with sub-resources of their own, or sharing only some of them.
        for (r, subs) in [
            ("calls", &["recordings", "notifications"][..]),
            ("queues", &["members"][..]),
            ("conferences", &["participants", "recordings"][..]),
            ("secrets", &["repositories", "public-key"][..]),
            ("variables", &["repositories"][..]),
            ("runner-groups", &["repositories", "runners"][..]),
        ] {
            for i in 0..3 {
                for sub in subs {
                    calls.push(("GET", format!("/accounts/a1/{r}/{}/{sub}", 20 + i)));
                }
            }
        }
        // Three resources with the same sub-resources among many others.
        for (r, sub) in [
            ("floating_ips", "actions"),
            ("reserved_ips", "actions"),
            ("reserved_ipv6", "actions"),
            ("droplets", "snapshots"),
            ("volumes", "attachments"),
            ("images", "tags"),
            ("domains", "records"),
        ] {
            for i in 0..3 {
                calls.push(("GET", format!("/v2/{r}/{}/{sub}", 30 + i)));
                calls.push(("GET", format!("/v2/{r}/{}/{sub}/{}", 30 + i, 40 + i)));
            }
        }
        let calls: Vec<(&str, &str)> = calls.iter().map(|(m, p)| (*m, p.as_str())).collect();
        learn_with(&mut t, &calls);
        let before = templates(&t);
        assert!(before.contains(&"/accounts/a1/variables/{id}/repositories".to_string()), "{before:?}");
        assert!(before.contains(&"/v2/reserved_ips/{id}/actions".to_string()), "{before:?}");
        t.merge_alike(&mut Learning::default());
        assert_eq!(templates(&t), before);
        let mut p = Trie::default();
        for k in ["npm", "maven", "nuget"] {
            p.pin(&format!("/packages/{k}/{{name}}/versions"));
        }
        for k in ["npm", "maven", "nuget"] {
            learn_with(&mut p, &[("GET", &format!("/packages/{k}/abc123def456/versions"))]);
        }
        p.merge_alike(&mut Learning::default());
        assert!(templates(&p).contains(&"/packages/npm/{id}/versions".to_string()), "{:?}", templates(&p));
    }

    #[test]
    fn a_cold_start_merge_of_names_is_undone_when_they_repeat() {
        // Names that are not API vocabulary (a product's own resource names).
        let names = [
            "kazomi", "turelo", "bivado", "nofeta", "lucaro", "pemizu", "godaki", "ravune", "sotiba", "hejofu",
            "mikaro", "dunepa", "zobiru", "fakeli", "wotuma", "yerigo",
        ];
        let mut t = Trie::default();
        // First calls: each name once, as a cold start sees them.
        for n in &names[..12] {
            learn_with(&mut t, &[("GET", &format!("/api/{n}"))]);
        }
        assert_eq!(templates(&t), ["/api/{id}"], "a dozen names each called once look like values");
        let mut out = Learning::default();
        t.review(&mut out);
        assert!(out.removed.is_empty(), "no verdict before {PROBATION_CALLS} calls");
        // Then the names repeat.
        for i in 0..PROBATION_CALLS as usize {
            learn_with(&mut t, &[("GET", &format!("/api/{}", names[i % names.len()]))]);
        }
        t.review(&mut out);
        assert_eq!(out.removed, vec![0], "the variable and its endpoint are gone");
        assert_eq!(templates(&t), Vec::<String>::new());
        for n in names {
            learn_with(&mut t, &[("GET", &format!("/api/{n}"))]);
        }
        assert_eq!(templates(&t).len(), names.len(), "names are literals again: {:?}", templates(&t));
        assert!(templates(&t).contains(&"/api/kazomi".to_string()));
    }

    #[test]
    fn a_variable_whose_values_keep_changing_is_confirmed() {
        let mut t = Trie::default();
        let mut out = Learning::default();
        for i in 0..400usize {
            // Pronounceable names, not id-shaped, each called once: learned from cardinality.
            const SYL: [&str; 8] = ["ka", "zo", "mi", "tu", "re", "lo", "bi", "ne"];
            let name: String = [i % 8, i / 8 % 8, i / 64 % 8].iter().map(|&k| SYL[k]).collect();
            learn_with(&mut t, &[("GET", &format!("/users/{name}"))]);
            if i % 50 == 0 {
                t.review(&mut out);
            }
        }
        t.review(&mut out);
        assert!(out.removed.is_empty());
        assert_eq!(templates(&t), ["/users/{id}"]);
        let v = t.nodes[0].lits.values().next().map(|&u| t.nodes[u as usize].vars[0].1).unwrap();
        assert!(t.nodes[v as usize].evidence.as_ref().unwrap().probation.is_none(), "verdict given: values");
    }

    #[test]
    fn without_probation_budget_a_variable_is_confirmed_at_once() {
        let mut t = Trie { no_probation: true, ..Trie::default() };
        for n in [
            "kazomi", "turelo", "bivado", "nofeta", "lucaro", "pemizu", "godaki", "ravune", "sotiba", "hejofu",
            "mikaro", "dunepa",
        ] {
            learn_with(&mut t, &[("GET", &format!("/api/{n}"))]);
        }
        assert_eq!(templates(&t), ["/api/{id}"]);
        assert_eq!(t.probations_started, 0);
        let mut out = Learning::default();
        assert_eq!(t.review(&mut out), 0, "nothing on probation");
        let mut u = Trie::default();
        for n in [
            "kazomi", "turelo", "bivado", "nofeta", "lucaro", "pemizu", "godaki", "ravune", "sotiba", "hejofu",
            "mikaro", "dunepa",
        ] {
            learn_with(&mut u, &[("GET", &format!("/api/{n}"))]);
        }
        assert_eq!((u.probations_started, u.review(&mut out)), (1, 1));
    }
}
