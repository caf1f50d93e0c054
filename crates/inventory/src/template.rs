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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub kinds: Kinds,
    /// A few values, masked when they could be personal or secret.
    pub examples: Vec<String>,
    /// Distinct literals merged into this variable.
    pub merged: u64,
    pub learned: Option<Learned>,
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
    pub evidence: Option<Box<Evidence>>,
    /// Endpoint slots by method.
    pub endpoints: Vec<(Box<str>, u32)>,
}

/// The trie of one host. Node 0 is the root (`/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trie {
    pub nodes: Vec<Node>,
    free: Vec<u32>,
    pub live: usize,
}

impl Default for Trie {
    fn default() -> Self {
        Trie { nodes: vec![Node { label: "".into(), ..Node::default() }], free: Vec::new(), live: 1 }
    }
}

/// Side effects of learning that the inventory applies to its endpoint slots.
#[derive(Debug, Default)]
pub struct Learning {
    /// (from, into): merge endpoint slot `from` into `into` and free `from`.
    pub merged: Vec<(u32, u32)>,
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
        let variable = singletons * 4 >= n * 3 || n >= MAX_SIBLINGS || (n >= MANY_SIBLINGS && median <= 1);
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
            let (stem, ext) = split_ext(&label);
            let v = self.var_child(at, ext);
            if let Some(ev) = self.nodes[v as usize].evidence.as_mut() {
                ev.note(classify(stem), stem);
                ev.merged += 1;
                if ev.learned.is_none() || ev.learned == Some(Learned::Capped) {
                    ev.learned = Some(how);
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
                c
            } else {
                let c = self.alloc(Node { label: seg.into(), parent: at, keep: true, ..Node::default() });
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
}
