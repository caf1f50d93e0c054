//! `cargo xtask inventory-quality`: how well path templating recovers the paths of real
//! API descriptions.
//!
//! For each OpenAPI document: generate requests for every operation with random values of
//! the declared types (enums, formats, patterns, the shape of the examples; names for free
//! strings), send them in shuffled order to a real HTTP server in a network namespace,
//! capture with tcpdump, replay the capture through `apiwatch replay` (learning only: the
//! spec is not given to apiwatch), and compare the recovered (method, template) pairs with
//! the declared ones.

use crate::capture::{record_tcpdump, spawn, wait_listening};
use anyhow::{Context, Result};
use apiwatch_inventory::spec::{load, DeclaredOp, ParamInfo};
use apiwatch_testlab::{self as netns, Lab};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents scored by default (paths under ../shared/openapi).
pub const DEFAULT_SPECS: &[&str] = &[
    "petstore/openapi.yaml",
    "oai-examples/_archive___schemas__v3.0__pass__petstore-expanded.yaml",
    "oai-examples/_archive___schemas__v3.0__pass__uspto.yaml",
    "github/api.github.com.json",
    "slack/slack_web_openapi_v2.json",
    "spotify/fixed-spotify-open-api.yml",
    "twilio/twilio_api_v2010.json",
    "digitalocean/specification/DigitalOcean-public.v2.yaml",
    "netlify/swagger.yml",
    "box/openapi.json",
    "discord/openapi.json",
    "sendgrid/oai.json",
];

/// xorshift64*: reproducible runs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn chars(rng: &mut Rng, set: &[u8], n: usize) -> String {
    (0..n).map(|_| *rng.pick(set) as char).collect()
}

/// A pronounceable made-up name (`kavoru`, `telimo83`): what user, org and repository names
/// look like, without being words of any vocabulary.
fn name(rng: &mut Rng) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut s = String::new();
    for _ in 0..3 + rng.below(2) {
        s.push(*rng.pick(C) as char);
        s.push(*rng.pick(V) as char);
    }
    match rng.below(4) {
        0 => s.push_str(&rng.below(100).to_string()),
        1 => {
            s.push('-');
            s.push_str(&name_plain(rng));
        }
        _ => {}
    }
    s
}

fn name_plain(rng: &mut Rng) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    (0..3).flat_map(|_| [*rng.pick(C) as char, *rng.pick(V) as char]).collect()
}

/// Same shape as `example`: digits for digits, letters for letters (same case).
fn like(rng: &mut Rng, example: &str) -> String {
    example
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                (b'0' + rng.below(10) as u8) as char
            } else if c.is_ascii_lowercase() {
                (b'a' + rng.below(26) as u8) as char
            } else if c.is_ascii_uppercase() {
                (b'A' + rng.below(26) as u8) as char
            } else {
                c
            }
        })
        .collect()
}

/// A value for a simple regular expression: literals, `[...]` classes, `\d`, groups with
/// alternatives `(a|b)`, `{n}` and `{n,m}`, `+`, `*`, `?`, anchors. `None` for anything else.
fn from_pattern(rng: &mut Rng, pattern: &str) -> Option<String> {
    let p: Vec<char> = pattern.trim_start_matches('^').trim_end_matches('$').chars().collect();
    let out = gen_seq(rng, &p, 0)?;
    (!out.is_empty() && out.len() <= 200).then_some(out)
}

/// Index of the `)` closing the group opened at `open`.
fn close_of(p: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, &c) in p.iter().enumerate().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Pick one top-level alternative of `p` and generate it.
fn gen_seq(rng: &mut Rng, p: &[char], depth: usize) -> Option<String> {
    if depth > 4 {
        return None;
    }
    let mut alts = Vec::new();
    let (mut start, mut level) = (0, 0);
    for (i, &c) in p.iter().enumerate() {
        match c {
            '(' => level += 1,
            ')' => level -= 1,
            '|' if level == 0 => {
                alts.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    alts.push(&p[start..]);
    let alt = alts[rng.below(alts.len() as u64) as usize];
    gen_atoms(rng, alt, depth)
}

fn gen_atoms(rng: &mut Rng, p: &[char], depth: usize) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < p.len() {
        let mut group: Option<&[char]> = None;
        let set: Vec<char> = match p[i] {
            '(' => {
                let end = close_of(p, i)?;
                let inner = &p[i + 1..end];
                group = Some(inner.strip_prefix(&['?', ':']).unwrap_or(inner));
                i = end + 1;
                vec!['(']
            }
            '[' => {
                let end = p[i..].iter().position(|&c| c == ']')? + i;
                let body = &p[i + 1..end];
                let mut set = Vec::new();
                let mut j = 0;
                while j < body.len() {
                    if j + 2 < body.len() && body[j + 1] == '-' {
                        set.extend(body[j]..=body[j + 2]);
                        j += 3;
                    } else {
                        set.push(body[j]);
                        j += 1;
                    }
                }
                i = end + 1;
                set
            }
            '\\' if p.get(i + 1) == Some(&'d') => {
                i += 2;
                ('0'..='9').collect()
            }
            ')' | '|' | '.' => return None,
            c => {
                i += 1;
                vec![c]
            }
        };
        if set.is_empty() {
            return None;
        }
        let (lo, hi) = match p.get(i) {
            Some('{') => {
                let end = p[i..].iter().position(|&c| c == '}')? + i;
                let body: String = p[i + 1..end].iter().collect();
                i = end + 1;
                match body.split_once(',') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().unwrap_or(a.parse::<u64>().ok()? + 8)),
                    None => (body.parse().ok()?, body.parse().ok()?),
                }
            }
            Some('+') => {
                i += 1;
                (1, 12)
            }
            Some('*') => {
                i += 1;
                (0, 12)
            }
            Some('?') => {
                i += 1;
                (0, 1)
            }
            _ => (1, 1),
        };
        let n = lo + rng.below(hi - lo + 1);
        for _ in 0..n {
            match group {
                Some(g) => out.push_str(&gen_seq(rng, g, depth + 1)?),
                None => out.push(*rng.pick(&set)),
            }
        }
    }
    Some(out)
}

/// A realistic random value for a declared parameter.
pub fn value(rng: &mut Rng, p: &ParamInfo) -> String {
    if !p.enumeration.is_empty() {
        return rng.pick(&p.enumeration).clone();
    }
    let n = p.name.to_ascii_lowercase();
    let v = match (p.kind.as_str(), p.format.as_str()) {
        ("integer", _) | ("number", _) => (1 + rng.below(9_999_999)).to_string(),
        (_, "uuid") => format!(
            "{}-{}-4{}-a{}-{}",
            chars(rng, HEX, 8),
            chars(rng, HEX, 4),
            chars(rng, HEX, 3),
            chars(rng, HEX, 3),
            chars(rng, HEX, 12)
        ),
        (_, "date") => format!("20{:02}-{:02}-{:02}", 10 + rng.below(15), 1 + rng.below(12), 1 + rng.below(28)),
        (_, "date-time") => format!("2024-{:02}-{:02}T10:00:00Z", 1 + rng.below(12), 1 + rng.below(28)),
        (_, "email") => format!("{}@example.com", name(rng)),
        _ => {
            if let Some(v) = (!p.pattern.is_empty()).then(|| from_pattern(rng, &p.pattern)).flatten() {
                v
            } else if let Some(e) = p.example.as_deref().filter(|e| !e.is_empty() && e.len() <= 64 && !e.contains('/'))
            {
                like(rng, e)
            } else if n.ends_with("id")
                || n.ends_with("_id")
                || n.contains("sid")
                || n.contains("key")
                || n.contains("hash")
                || n.contains("sha")
            {
                chars(rng, ALNUM, 20)
            } else {
                name(rng)
            }
        }
    };
    encode(&v)
}

fn encode(v: &str) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The concrete path of one request for `op`.
fn concrete(rng: &mut Rng, op: &DeclaredOp) -> String {
    let mut out = String::new();
    let mut rest = op.path.as_str();
    while let Some(a) = rest.find('{') {
        let Some(b) = rest[a..].find('}').map(|b| a + b) else { break };
        out.push_str(&rest[..a]);
        let name = &rest[a + 1..b];
        let info = op.path_params.iter().find(|p| p.name == name).cloned().unwrap_or(ParamInfo {
            name: name.to_string(),
            kind: "string".into(),
            ..ParamInfo::default()
        });
        out.push_str(&value(rng, &info));
        rest = &rest[b + 1..];
    }
    out.push_str(rest);
    let mut q = Vec::new();
    for p in &op.required_query {
        q.push(format!("{}={}", encode(&p.name), value(rng, p)));
    }
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

/// `{anything}` → `{}` in every segment.
pub fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push_str("{}");
                }
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    let t = out.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

/// A declared path without its `#fragment`.
fn on_the_wire(path: &str) -> String {
    path.split('#').next().unwrap_or(path).to_string()
}

/// `general` matches everything `specific` does (a variable covers any segment).
fn covers(general: &str, specific: &str) -> bool {
    let g: Vec<&str> = general.split('/').collect();
    let s: Vec<&str> = specific.split('/').collect();
    g.len() == s.len()
        && g.iter().zip(&s).all(|(a, b)| {
            a == b || (a.starts_with("{}") && b.ends_with(&a[2..])) || (a.contains("{}") && !b.contains("{}"))
        })
}

#[derive(Debug, Default)]
pub struct Score {
    pub ops: usize,
    pub requests: usize,
    pub recovered: usize,
    pub exact: usize,
    pub precision: f64,
    pub recall: f64,
    /// Declared operations split into several templates (a variable kept literal).
    pub under_merged: usize,
    /// Declared operations swallowed by a more general template (a literal made variable).
    pub over_merged: usize,
    /// Scores with enumerated path parameters (at most 8 values) written out as literals.
    pub enum_precision: f64,
    pub enum_recall: f64,
}

/// The paths of `op` with each enumerated path parameter (at most 8 values, at most 64
/// combinations) replaced by its values.
fn expand_enums(op: &DeclaredOp) -> Vec<String> {
    let mut paths = vec![op.path.clone()];
    for p in &op.path_params {
        if p.enumeration.is_empty() || p.enumeration.len() > 8 || paths.len() * p.enumeration.len() > 64 {
            continue;
        }
        let hole = format!("{{{}}}", p.name);
        let hole = hole.as_str();
        paths = paths.iter().flat_map(|path| p.enumeration.iter().map(move |v| path.replace(hole, v))).collect();
    }
    paths
}

/// Score recovered (method, template) pairs against declared (method, path) pairs.
pub fn score(declared: &BTreeSet<(String, String)>, recovered: &BTreeSet<(String, String)>) -> Score {
    let exact = declared.intersection(recovered).count();
    let mut under = 0;
    let mut over = 0;
    for (m, d) in declared.difference(recovered) {
        let mine: Vec<&String> = recovered.iter().filter(|(rm, _)| rm == m).map(|(_, r)| r).collect();
        if mine.iter().any(|r| covers(d, r)) {
            under += 1;
        } else if mine.iter().any(|r| covers(r, d)) {
            over += 1;
        }
    }
    Score {
        ops: declared.len(),
        recovered: recovered.len(),
        exact,
        precision: if recovered.is_empty() { 0.0 } else { exact as f64 / recovered.len() as f64 },
        recall: if declared.is_empty() { 0.0 } else { exact as f64 / declared.len() as f64 },
        under_merged: under,
        over_merged: over,
        ..Score::default()
    }
}

/// Requests made from one OpenAPI document: `per_op` per operation ("METHOD HOST PATH"
/// lines, shuffled), and the operations declared (as written, and with enumerated path
/// parameters written out).
pub struct Generated {
    pub lines: Vec<String>,
    pub declared: BTreeSet<(String, String)>,
    pub declared_enum: BTreeSet<(String, String)>,
}

pub fn generate(shared: &Path, rel: &str, seed: u64, per_op: usize) -> Result<Generated> {
    let file = if Path::new(rel).is_absolute() { PathBuf::from(rel) } else { shared.join(rel) };
    let mut read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let api = load(&file.to_string_lossy(), &mut read).map_err(|e| anyhow::anyhow!("{e}"))?;
    let host = api.hosts.first().cloned().unwrap_or_else(|| "api.example.com".into());
    let mut rng = Rng::new(seed);
    let mut declared = BTreeSet::new();
    // The same with path parameters that take a few enumerated values written out: a
    // learner may fairly keep `/packages/npm` and `/packages/maven` apart.
    let mut declared_enum = BTreeSet::new();
    let mut lines = Vec::new();
    let mut seen = BTreeMap::new();
    for op in &api.ops {
        let key = (op.method.clone(), normalize(&op.path));
        if seen.insert(key.clone(), ()).is_some() {
            continue;
        }
        // Scored as seen on the wire: some documents (Box) tell operations on one path apart
        // with a `#fragment` in the path, which no request carries.
        declared.insert((key.0.clone(), on_the_wire(&key.1)));
        for p in expand_enums(op) {
            declared_enum.insert((op.method.clone(), on_the_wire(&normalize(&p))));
        }
        for _ in 0..per_op {
            lines.push(format!("{} {host} {}", op.method, concrete(&mut rng, op)));
        }
    }
    // Shuffle: operations interleave as they would in real traffic.
    for k in (1..lines.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        lines.swap(k, j);
    }
    Ok(Generated { lines, declared, declared_enum })
}

/// Score the templates recovered from traffic generated for each spec. With `reuse`, a
/// capture left in `out_dir` by an earlier run of the same specs is replayed again instead
/// of being made anew (the requests are the same: their generator is seeded).
pub fn run(root: &Path, specs: &[String], per_op: usize, out_dir: &Path, reuse: bool) -> Result<Vec<Score>> {
    netns::available().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out_dir)?;
    let apiwatch = crate::release_binary(root)?;
    let shared = root.join("../shared/openapi");
    let lab = Lab::new()?;
    let port = 8090u16;
    let mut server = lab.cmd(&lab.srv, "python3");
    server.arg(root.join("xtask/assets/any_server.py")).args([netns::SRV4, &port.to_string()]);
    let _server = spawn(server, "any_server")?;
    wait_listening(&lab, &lab.srv, port)?;
    let mut scores = Vec::new();
    for (i, rel) in specs.iter().enumerate() {
        let Generated { lines, declared, declared_enum } = generate(&shared, rel, 0x5eed + i as u64, per_op)?;
        let stem: String = rel.replace(['/', '.'], "_");
        let listing = out_dir.join(format!("{stem}.requests"));
        std::fs::write(&listing, lines.join("\n") + "\n")?;
        let pcap = out_dir.join(format!("{stem}.pcap"));
        if !(reuse && pcap.exists()) {
            let rec = record_tcpdump(&lab, &["-i", &lab.srv_if], &pcap, Some(&format!("tcp port {port}")))?;
            let sent = lab
                .cmd(&lab.cli, "python3")
                .arg(root.join("xtask/assets/list_client.py"))
                .args([netns::SRV4, &port.to_string()])
                .arg(&listing)
                .output()?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            rec.stop()?;
            if !sent.status.success() {
                anyhow::bail!("{rel}: client failed: {}", String::from_utf8_lossy(&sent.stderr));
            }
        }
        let state = out_dir.join(format!("{stem}.state"));
        let _ = std::fs::remove_dir_all(&state);
        crate::run(
            Command::new(&apiwatch).args(["replay", "-q", "-o", "/dev/null", "--state"]).arg(&state).arg(&pcap),
        )?;
        let export = Command::new(&apiwatch).args(["inventory", "export", "--state"]).arg(&state).output()?;
        let v: serde_json::Value =
            serde_json::from_slice(&export.stdout).with_context(|| format!("{rel}: inventory export"))?;
        let recovered: BTreeSet<(String, String)> = v["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["method"].as_str().unwrap_or("").to_string(), normalize(e["template"].as_str().unwrap_or(""))))
            .collect();
        let mut s = score(&declared, &recovered);
        s.requests = lines.len();
        let e = score(&declared_enum, &recovered);
        s.enum_precision = e.precision;
        s.enum_recall = e.recall;
        let mut report = String::new();
        for (m, p) in declared.difference(&recovered) {
            report.push_str(&format!("missed    {m} {p}\n"));
        }
        for (m, p) in recovered.difference(&declared) {
            report.push_str(&format!("extra     {m} {p}\n"));
        }
        std::fs::write(out_dir.join(format!("{stem}.diff")), report)?;
        println!(
            "{:<62} ops {:>5} requests {:>6} recovered {:>5} exact {:>5} precision {:.3} recall {:.3} under-merged {:>3} over-merged {:>3} | enums as literals: precision {:.3} recall {:.3}",
            rel, s.ops, s.requests, s.recovered, s.exact, s.precision, s.recall, s.under_merged, s.over_merged, s.enum_precision, s.enum_recall
        );
        scores.push(s);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_shapes() {
        let mut r = Rng::new(7);
        let v = from_pattern(&mut r, "^CA[0-9a-fA-F]{32}$").unwrap();
        assert!(v.starts_with("CA") && v.len() == 34, "{v}");
        for _ in 0..20 {
            let v = from_pattern(&mut r, "^(0|[1-9][0-9]*)$").unwrap();
            assert!(v == "0" || (!v.starts_with('0') && v.bytes().all(|c| c.is_ascii_digit())), "{v}");
        }
        assert_eq!(from_pattern(&mut r, "^(?:ab){2}$").as_deref(), Some("abab"));
        assert_eq!(like(&mut r, "ab-12").len(), 5);
        assert_eq!(normalize("/a/{x}/b/{y}.json"), "/a/{}/b/{}.json");
        assert!(covers("/a/{}", "/a/me"));
        assert!(!covers("/a/me", "/a/{}"));
        assert!(covers("/a/{}.json", "/a/x.json"));
    }

    #[test]
    fn scoring() {
        let d: BTreeSet<_> = [("GET", "/u/{}"), ("GET", "/u/login"), ("GET", "/v")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let r: BTreeSet<_> = [("GET", "/u/{}"), ("GET", "/v/x1"), ("GET", "/v/x2")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let s = score(&d, &r);
        assert_eq!(s.exact, 1);
        assert_eq!(s.over_merged, 1);
        assert_eq!(s.under_merged, 0);
    }
}
