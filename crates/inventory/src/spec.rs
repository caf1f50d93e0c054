//! Declared inventory: OpenAPI 3.x and Swagger 2.0 documents, JSON or YAML, with `$ref`s
//! followed inside the document and into files next to it (multi-file specs such as
//! DigitalOcean's). Reading files is the caller's business: [`load`] takes a reader
//! function, so this module does no I/O of its own.

use serde_json::Value;
use std::collections::BTreeSet;
use std::rc::Rc;

/// One declared operation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredOp {
    pub method: String,
    /// Full path template (base path included): `/v2/users/{id}`.
    pub path: String,
    pub deprecated: bool,
    pub query: BTreeSet<String>,
    /// Response codes as declared: `200`, `4XX`, `default`.
    pub responses: BTreeSet<String>,
    pub request_types: BTreeSet<String>,
    pub response_types: BTreeSet<String>,
    pub security: bool,
    /// Path parameters, and required query parameters, as declared.
    pub path_params: Vec<ParamInfo>,
    pub required_query: Vec<ParamInfo>,
}

/// What a document says of one parameter's values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub pattern: String,
    pub example: Option<String>,
    pub enumeration: Vec<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn param_info(l: &mut Loader<'_>, p: &Value, file: &str, root: &Rc<Value>) -> ParamInfo {
    let schema = match p.get("schema") {
        Some(s) => l.deref(s, file, root).map(|x| x.0).unwrap_or(Value::Null),
        None => p.clone(), // Swagger 2: type/format/enum on the parameter itself
    };
    let get = |k: &str| schema.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let example = p
        .get("example")
        .and_then(scalar)
        .or_else(|| schema.get("example").and_then(scalar))
        .or_else(|| p.pointer("/x-example").and_then(scalar))
        .or_else(|| {
            p.get("examples")
                .and_then(Value::as_object)
                .and_then(|m| m.values().next())
                .and_then(|e| e.get("value"))
                .and_then(scalar)
        });
    ParamInfo {
        name: p.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        kind: get("type"),
        format: get("format"),
        pattern: get("pattern"),
        example,
        enumeration: schema
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(scalar).collect())
            .unwrap_or_default(),
    }
}
#[derive(Debug, Clone)]
pub struct DeclaredApi {
    /// Where it came from (file path), for reports.
    pub name: String,
    pub title: String,
    /// Hosts it applies to (from `servers`/`host`, or configuration); empty: every host.
    pub hosts: Vec<String>,
    pub ops: Vec<DeclaredOp>,
}

/// A problem with a document, naming where.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// Parse JSON or YAML text into a JSON value.
pub fn parse_text(text: &str) -> Result<Value, String> {
    let t = text.trim_start();
    if t.starts_with('{') {
        serde_json::from_str(t).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_norway::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
    }
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const MAX_REF_DEPTH: usize = 16;

struct Loader<'r> {
    read: &'r mut dyn FnMut(&str) -> Result<String, String>,
    cache: Vec<(String, Rc<Value>)>,
}

fn dir_of(file: &str) -> &str {
    file.rfind('/').map_or("", |i| &file[..=i])
}

/// `a/b/../c.yml` → `a/c.yml`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            "." => {}
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

fn pointer<'v>(v: &'v Value, ptr: &str) -> Option<&'v Value> {
    if ptr.is_empty() || ptr == "/" {
        return Some(v);
    }
    v.pointer(ptr)
}

impl Loader<'_> {
    fn file(&mut self, name: &str) -> Result<Rc<Value>, String> {
        if let Some((_, v)) = self.cache.iter().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        let text = (self.read)(name)?;
        let v = Rc::new(parse_text(&text).map_err(|e| format!("{name}: {e}"))?);
        if self.cache.len() < 4096 {
            self.cache.push((name.to_string(), v.clone()));
        }
        Ok(v)
    }

    /// Follow `$ref`s at the top of `v` (not inside it); returns the value and the file it
    /// lives in (refs inside it are relative to that file).
    fn deref(&mut self, v: &Value, file: &str, root: &Rc<Value>) -> Result<(Value, String), String> {
        if v.get("$ref").is_none() {
            return Ok((v.clone(), file.to_string()));
        }
        let mut cur = v.clone();
        let mut cur_file = file.to_string();
        let mut cur_root = root.clone();
        for _ in 0..MAX_REF_DEPTH {
            let Some(r) = cur.get("$ref").and_then(Value::as_str) else { return Ok((cur, cur_file)) };
            let (f, ptr) = r.split_once('#').unwrap_or((r, ""));
            if !f.is_empty() {
                cur_file = normalize(&format!("{}{f}", dir_of(&cur_file)));
                cur_root = self.file(&cur_file)?;
            }
            cur = pointer(&cur_root, ptr).cloned().ok_or_else(|| format!("{cur_file}: $ref `{r}` points nowhere"))?;
        }
        Err(format!("{file}: $ref chain deeper than {MAX_REF_DEPTH}"))
    }
}

fn host_of(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://").map(|x| x.1)?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.contains('{') {
        return None;
    }
    Some((host.to_ascii_lowercase(), path.trim_end_matches('/').to_string()))
}

/// Load one document. `read` returns the text of a file given its path (the document's own
/// path for the first call, then `$ref`-ed files relative to it).
pub fn load(file: &str, read: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<DeclaredApi, SpecError> {
    let err = |message: String| SpecError { file: file.to_string(), message };
    let mut l = Loader { read, cache: Vec::new() };
    let root = l.file(file).map_err(err)?;
    let swagger2 = root.get("swagger").and_then(Value::as_str).is_some_and(|v| v.starts_with('2'));
    let oas3 = root.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with('3'));
    if !swagger2 && !oas3 {
        return Err(err("neither `openapi: 3.x` nor `swagger: 2.0` at the top".into()));
    }
    let paths = root.get("paths").and_then(Value::as_object).ok_or_else(|| err("no `paths` object".into()))?;
    let mut hosts = Vec::new();
    let mut base = String::new();
    if swagger2 {
        if let Some(h) = root.get("host").and_then(Value::as_str) {
            hosts.push(h.to_ascii_lowercase());
        }
        base = root.get("basePath").and_then(Value::as_str).unwrap_or("").trim_end_matches('/').to_string();
    } else if let Some(servers) = root.get("servers").and_then(Value::as_array) {
        for s in servers {
            if let Some((h, p)) = s.get("url").and_then(Value::as_str).and_then(host_of) {
                if hosts.is_empty() {
                    base = p;
                }
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            } else if let Some(u) = s.get("url").and_then(Value::as_str) {
                // Relative server URL: a base path for every host.
                if u.starts_with('/') && hosts.is_empty() {
                    base = u.trim_end_matches('/').to_string();
                }
            }
        }
    }
    let global_security = root.get("security").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let global_produces = strings(root.get("produces"));
    let global_consumes = strings(root.get("consumes"));
    let mut ops = Vec::new();
    for (path, item) in paths {
        if !path.starts_with('/') {
            continue;
        }
        let (item, item_file) = l.deref(item, file, &root).map_err(err)?;
        let item_root = if item_file == file { root.clone() } else { l.file(&item_file).map_err(err)? };
        let item_params = params(&mut l, item.get("parameters"), &item_file, &item_root).map_err(err)?;
        let mut item_base = base.clone();
        if let Some(s) = item.get("servers").and_then(Value::as_array).and_then(|a| a.first()) {
            if let Some((_, p)) = s.get("url").and_then(Value::as_str).and_then(host_of) {
                item_base = p;
            }
        }
        for m in METHODS {
            let Some(op) = item.get(*m) else { continue };
            let (op, op_file) = l.deref(op, &item_file, &item_root).map_err(err)?;
            let op_root = if op_file == item_file { item_root.clone() } else { l.file(&op_file).map_err(err)? };
            let mut query = item_params.clone();
            query.extend(params(&mut l, op.get("parameters"), &op_file, &op_root).map_err(err)?);
            let mut path_params: Vec<ParamInfo> = Vec::new();
            let mut required_query = Vec::new();
            for (list, f, r) in
                [(item.get("parameters"), &item_file, &item_root), (op.get("parameters"), &op_file, &op_root)]
            {
                for p in list.and_then(Value::as_array).into_iter().flatten() {
                    let Ok((p, pf)) = l.deref(p, f, r) else { continue };
                    let proot = if pf == *f { r.clone() } else { l.file(&pf).unwrap_or_default() };
                    let info = param_info(&mut l, &p, &pf, &proot);
                    match p.get("in").and_then(Value::as_str) {
                        Some("path") => {
                            path_params.retain(|x| x.name != info.name);
                            path_params.push(info);
                        }
                        Some("query") if p.get("required").and_then(Value::as_bool) == Some(true) => {
                            required_query.push(info)
                        }
                        _ => {}
                    }
                }
            }
            let mut responses = BTreeSet::new();
            let mut response_types = BTreeSet::new();
            if let Some(rs) = op.get("responses").and_then(Value::as_object) {
                for (code, r) in rs {
                    responses.insert(code.clone());
                    if let Ok((r, _)) = l.deref(r, &op_file, &op_root) {
                        if let Some(c) = r.get("content").and_then(Value::as_object) {
                            response_types.extend(c.keys().map(|k| k.to_ascii_lowercase()));
                        }
                    }
                }
            }
            let mut request_types = BTreeSet::new();
            if let Some(b) = op.get("requestBody") {
                if let Ok((b, _)) = l.deref(b, &op_file, &op_root) {
                    if let Some(c) = b.get("content").and_then(Value::as_object) {
                        request_types.extend(c.keys().map(|k| k.to_ascii_lowercase()));
                    }
                }
            }
            if swagger2 {
                let produces = strings(op.get("produces"));
                response_types.extend(if produces.is_empty() { global_produces.clone() } else { produces });
                let consumes = strings(op.get("consumes"));
                request_types.extend(if consumes.is_empty() { global_consumes.clone() } else { consumes });
            }
            ops.push(DeclaredOp {
                method: m.to_ascii_uppercase(),
                path: format!("{item_base}{path}"),
                deprecated: op.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
                query,
                responses,
                request_types,
                response_types,
                security: op.get("security").and_then(Value::as_array).map_or(global_security, |a| !a.is_empty()),
                path_params,
                required_query,
            });
        }
    }
    let title = root.pointer("/info/title").and_then(Value::as_str).unwrap_or("").to_string();
    Ok(DeclaredApi { name: file.to_string(), title, hosts, ops })
}

fn strings(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|s| s.to_ascii_lowercase()).collect())
        .unwrap_or_default()
}

/// Names of query parameters.
fn params(l: &mut Loader<'_>, v: Option<&Value>, file: &str, root: &Rc<Value>) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let Some(list) = v.and_then(Value::as_array) else { return Ok(out) };
    for p in list {
        let (p, _) = l.deref(p, file, root)?;
        if p.get("in").and_then(Value::as_str) == Some("query") {
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                out.insert(n.to_string());
            }
        }
    }
    Ok(out)
}

/// One segment of a declared path: literal text around at most one `{var}`.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclSeg {
    Lit(String),
    /// `prefix{name}suffix`.
    Var {
        prefix: String,
        suffix: String,
    },
}

pub fn decl_segments(path: &str) -> Vec<DeclSeg> {
    crate::template::segments(path)
        .map(|s| match (s.find('{'), s.rfind('}')) {
            (Some(a), Some(b)) if a < b => DeclSeg::Var { prefix: s[..a].to_string(), suffix: s[b + 1..].to_string() },
            _ => DeclSeg::Lit(s.to_string()),
        })
        .collect()
}

/// How well an observed template (segments, `{id}` for variables) matches a declared path:
/// `None` if not at all, else the number of literal segments that matched exactly (more is
/// more specific).
pub fn match_score(observed: &[&str], declared: &[DeclSeg]) -> Option<usize> {
    if observed.len() != declared.len() {
        return None;
    }
    let mut score = 0;
    for (o, d) in observed.iter().zip(declared) {
        let o_var = o.starts_with("{id}");
        match d {
            DeclSeg::Lit(l) => {
                if o_var || *o != l {
                    return None;
                }
                score += 1;
            }
            DeclSeg::Var { prefix, suffix } => {
                if o_var {
                    let ext = &o["{id}".len()..];
                    if !prefix.is_empty() || ext != suffix {
                        return None;
                    }
                } else if !(o.starts_with(prefix.as_str()) && o.ends_with(suffix.as_str()))
                    || o.len() <= prefix.len() + suffix.len()
                {
                    return None;
                }
            }
        }
    }
    Some(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_oas3_and_swagger2_with_file_refs() {
        let files = [
            (
                "api/main.yaml",
                "openapi: 3.0.0\ninfo: {title: T}\nservers: [{url: 'https://api.example.com/v1'}]\n\
                 paths:\n  /users/{id}:\n    get:\n      $ref: 'ops/get_user.yml'\n    delete:\n      deprecated: true\n      responses: {'204': {description: x}}\n",
            ),
            (
                "api/ops/get_user.yml",
                "parameters:\n  - $ref: '../shared/params.yml#/fields'\nresponses:\n  '200':\n    description: ok\n    content: {application/json: {}}\n",
            ),
            ("api/shared/params.yml", "fields: {name: fields, in: query}\n"),
            (
                "s2.json",
                r#"{"swagger":"2.0","host":"slack.com","basePath":"/api","produces":["application/json"],
                   "paths":{"/chat.postMessage":{"post":{"parameters":[{"name":"channel","in":"formData"},{"name":"pretty","in":"query"}],"responses":{"200":{}}}}}}"#,
            ),
        ];
        let mut read = |p: &str| {
            files.iter().find(|(n, _)| *n == p).map(|(_, t)| t.to_string()).ok_or_else(|| format!("no file {p}"))
        };
        let a = load("api/main.yaml", &mut read).unwrap();
        assert_eq!(a.hosts, vec!["api.example.com"]);
        assert_eq!(a.ops.len(), 2);
        assert_eq!(a.ops[0].path, "/v1/users/{id}");
        assert_eq!(a.ops[0].query.iter().collect::<Vec<_>>(), vec!["fields"]);
        assert!(a.ops[0].response_types.contains("application/json"));
        assert!(a.ops[1].deprecated);
        let b = load("s2.json", &mut read).unwrap();
        assert_eq!(b.hosts, vec!["slack.com"]);
        assert_eq!(b.ops[0].path, "/api/chat.postMessage");
        assert_eq!(b.ops[0].query.len(), 1);
        let e = load("api/shared/params.yml", &mut read).unwrap_err();
        assert!(e.message.contains("openapi"), "{e}");
    }

    #[test]
    fn matching() {
        let d = decl_segments("/Accounts/{AccountSid}/Calls/{Sid}.json");
        assert_eq!(match_score(&["Accounts", "{id}", "Calls", "{id}.json"], &d), Some(2));
        assert_eq!(match_score(&["Accounts", "{id}", "Calls", "{id}"], &d), None);
        assert_eq!(match_score(&["Accounts", "AC1", "Calls", "x.json"], &d), Some(2));
        let me = decl_segments("/users/me");
        assert_eq!(match_score(&["users", "{id}"], &me), None);
        assert_eq!(match_score(&["users", "me"], &decl_segments("/users/{id}")), Some(1));
    }
}
