//! One transaction on its own: what its request carries (injection signatures in the path,
//! the query, the headers and the body; framing that smells of smuggling; credentials and
//! tokens, and how they are sent) and what its response gives away (stack traces, debug
//! pages, versions). Stateless apart from caches, so it runs in the worker that parsed the
//! transaction; the [`crate::Detector`] does what needs memory across transactions.

use crate::evidence::{mask_numbers, name as show_name, redact};
use crate::jwt;
use crate::leaks::{version_header, Leaks};
use crate::normalize;
use crate::rules::RuleId;
use crate::signatures::{self, Signature};
use apiwatch_model::{Flags, Transaction};
use std::borrow::Cow;

/// Limits on what one transaction costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectConfig {
    /// Bytes of a request body read for signatures.
    pub max_body_bytes: usize,
    /// String values of a JSON or form body checked.
    pub max_values: usize,
    /// Bytes of a response body searched for leaks.
    pub max_leak_bytes: usize,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig { max_body_bytes: 16 << 10, max_values: 256, max_leak_bytes: 16 << 10 }
    }
}

/// One thing seen in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub rule: RuleId,
    /// Where: `path`, `query:NAME`, `header:NAME`, `body:/json/pointer`, `body`,
    /// `response:body`, `response:header:NAME`, `framing`.
    pub location: Cow<'static, str>,
    /// The patterns or facts that made it, by name.
    pub signs: Cow<'static, [&'static str]>,
    /// Redacted: never a credential or a data value.
    pub evidence: Cow<'static, str>,
}

/// A login attempt: a hash of the user name when one was sent, and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub user: Option<u64>,
    pub failed: bool,
}

/// Words of a login form's failure page (which often answers 200).
const FAILURE_WORDS: &[&[u8]] = &[
    b"invalid",
    b"incorrect",
    b"failed",
    b"wrong",
    b"denied",
    b"unauthorized",
    b"unauthorised",
    b"bad credentials",
    b"not match",
    b"try again",
];

/// Whether a login attempt failed: refused (401, 403), or answered with a page that says
/// so and gives no session or token (forms answer 200 with an error message).
fn login_failed(resp: Option<&apiwatch_model::Response>) -> bool {
    let Some(r) = resp else { return false };
    if matches!(r.status, 401 | 403) {
        return true;
    }
    if !(200..300).contains(&r.status) || r.msg.head.header("set-cookie").is_some() {
        return false;
    }
    let body = &r.msg.body.sample[..r.msg.body.sample.len().min(4096)];
    let lower = body.to_ascii_lowercase();
    memchr::memmem::find(&lower, b"token").is_none()
        && FAILURE_WORDS.iter().any(|w| memchr::memmem::find(&lower, w).is_some())
}

/// What the [`crate::Detector`] needs of a transaction beyond its signals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    pub signals: Vec<Signal>,
    /// Who the request acts as: `jwt:SUB`, `basic:USER`, `apikey:HASH`, `session:HASH`.
    pub principal: Option<String>,
    /// The request is an attempt to log in (a login-like path with a body, or Basic
    /// credentials).
    pub login: Option<Login>,
    pub traits: Traits,
}

/// Sizes, timing and identity of a transaction, for the behaviour baselines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traits {
    /// Decoded body lengths.
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// First request byte to first response byte; None without both.
    pub latency_us: Option<u64>,
    /// Requests of the connection waiting for an answer when this one was sent.
    pub pipelined: u32,
    /// The request carried credentials (Authorization, an API-key header, a session cookie).
    pub credentials: bool,
    /// A hash of the request-target: distinct targets of one endpoint are distinct
    /// parameter values.
    pub target: u64,
    /// The last all-digit path segment, else the first all-digit query value.
    pub object_id: Option<u64>,
    /// Numeric ids the response gave the client (`"id": 42`, `"order_id": 7`, `"userId"`;
    /// the first eight in the first 16 KiB of a JSON body).
    pub given: [u64; 8],
    pub n_given: u8,
}

impl Traits {
    /// Numeric values of id-named JSON members (`"id":`, `..._id":`, `...Id":`).
    fn ids_in(&mut self, body: &[u8]) {
        let b = &body[..body.len().min(16 << 10)];
        if b.first().is_none_or(|&c| c != b'{' && c != b'[') {
            return;
        }
        static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"d\":"));
        // One pass for member names ending `id":` (`"id"`, `"order_id"`) or `Id":`
        // (`"userId"`), in the order they come.
        for d in END.find_iter(b) {
            if d < 2 || !matches!(b[d - 1], b'i' | b'I') {
                continue;
            }
            // `at` is the `i`: a member name ends here when it starts there or after `_` or
            // a lower-case letter (camelCase).
            let at = d - 1;
            let named = matches!(b[at - 1], b'"' | b'_' | b'a'..=b'z');
            if !named {
                continue;
            }
            let rest = &b[at + 4..];
            let start = rest.iter().position(|c| *c != b' ').unwrap_or(rest.len());
            let digits = rest[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            if (1..=18).contains(&digits) {
                let v = rest[start..start + digits].iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64);
                self.given[self.n_given as usize] = v;
                self.n_given += 1;
                if self.n_given as usize == self.given.len() {
                    return;
                }
            }
        }
    }

    pub fn of(tx: &Transaction) -> Traits {
        let req = tx.request.as_deref();
        let resp = tx.response.as_deref();
        let uri = req.map_or(&b""[..], |r| r.uri());
        let mut t = Traits {
            req_bytes: req.map_or(0, |r| r.msg.body.len),
            resp_bytes: resp.map_or(0, |r| r.msg.body.len),
            latency_us: req.zip(resp).map(|(q, r)| ((r.msg.ts_first - q.msg.ts_first).max(0) / 1000) as u64),
            pipelined: tx.pipelined,
            credentials: false,
            target: 0,
            object_id: None,
            given: [0; 8],
            n_given: 0,
        };
        if let Some(r) = resp.filter(|r| (200..300).contains(&r.status)) {
            t.ids_in(&r.msg.body.sample);
        }
        let h = crate::detector::hash_bytes(0xcbf2_9ce4_8422_2325u64 ^ uri.len() as u64, uri);
        t.target = h ^ (h >> 29);
        let (path, query) = match uri.iter().position(|&c| c == b'?') {
            Some(i) => (&uri[..i], &uri[i + 1..]),
            None => (uri, &b""[..]),
        };
        let number = |s: &[u8]| {
            (!s.is_empty() && s.len() <= 18 && s.iter().all(u8::is_ascii_digit))
                .then(|| s.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64))
        };
        t.object_id = path.rsplit(|&c| c == b'/').find_map(number).or_else(|| {
            query.split(|&c| c == b'&').find_map(|kv| number(kv.splitn(2, |&c| c == b'=').nth(1).unwrap_or(b"")))
        });
        t
    }
}

impl Inspection {
    pub fn is_empty(&self) -> bool {
        self.signals.is_empty() && self.principal.is_none() && self.login.is_none()
    }
}

pub struct Inspector {
    pub cfg: InspectConfig,
    values: Vec<Signature>,
    scanner: Signature,
    traversal: Signature,
    jndi: Signature,
    xxe: Signature,
    nosql: Signature,
    leaks: Leaks,
    jwts: jwt::Cache,
    /// The last User-Agent seen and the scanner signature's verdict on it.
    last_agent: (Vec<u8>, Option<(&'static str, Vec<&'static str>)>),
    /// The last versioned response header seen (name and value) and its evidence.
    last_version: (Vec<u8>, String),
}

/// Query and form names that carry credentials.
const CREDENTIAL_NAMES: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "accesstoken",
    "auth_token",
    "authtoken",
    "id_token",
    "refresh_token",
    "token",
    "jwt",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "private_token",
    "sessionid",
    "session_id",
];

/// Header names that carry API keys.
const KEY_HEADERS: &[&str] = &["x-api-key", "api-key", "apikey", "x-apikey", "x-auth-token", "x-access-token"];

/// Cookie names that carry a session.
const SESSION_COOKIES: &[&str] = &["session", "sessionid", "sid", "phpsessid", "jsessionid", "connect.sid", "_session"];

/// Body fields that carry the user name of a login.
const USER_FIELDS: &[&str] = &["username", "user", "user_name", "login", "email", "userid", "user_id", "account"];

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Bytes no attack can do without: a value made only of letters, digits and `_ . - @`
/// (identifiers, numbers, slugs, e-mail addresses) is skipped, which is most values.
fn plain(v: &[u8]) -> bool {
    all_in(v, PLAIN)
}

/// Byte classes for the one-pass checks below (a table lookup a byte, no branches on the
/// byte's value: these run on every path, query value and header of every request).
const PLAIN: u8 = 1;
/// In [`plain_path`]'s first set (`/_-@~:,+` and alphanumerics).
const PATH_A: u8 = 2;
/// In [`plain_path`]'s second set (`/_-.~` and alphanumerics).
const PATH_B: u8 = 4;
/// Makes a header value suspicious on its own.
const LOUD: u8 = 8;
/// Makes it suspicious depending on its neighbours (`-`, `/`, `.`).
const PAIR: u8 = 16;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mut k = 0;
        if alnum || matches!(b, b'_' | b'.' | b'-' | b'@') {
            k |= PLAIN;
        }
        if alnum || matches!(b, b'/' | b'_' | b'-' | b'@' | b'~' | b':' | b',' | b'+') {
            k |= PATH_A;
        }
        if alnum || matches!(b, b'/' | b'_' | b'-' | b'.' | b'~') {
            k |= PATH_B;
        }
        if matches!(b, b'\'' | b'"' | b'<' | b'>' | b'`' | b'$' | b'|' | b'{' | b'}' | b'%' | b'\\') {
            k |= LOUD;
        }
        if matches!(b, b'-' | b'/' | b'.') {
            k |= PAIR;
        }
        t[c] = k;
        c += 1;
    }
    t
};

/// Whether every byte of `v` has class bit `bit`.
fn all_in(v: &[u8], bit: u8) -> bool {
    // AND of the classes, looking for an early exit once every eight bytes rather than at
    // each byte (cheaper for the short strings this sees).
    let mut acc = bit;
    for chunk in v.chunks(8) {
        for &c in chunk {
            acc &= CLASS[c as usize];
        }
        if acc == 0 {
            return false;
        }
    }
    acc != 0
}

/// Header values are checked only when they hold a character injections need and browser
/// or client strings do not: quotes, angle brackets, backticks, `$`, `|`, braces, `%`, or
/// `--`, `/*`, `../` (one pass: this runs on every header of every request).
fn suspicious_header(v: &[u8]) -> bool {
    let mut any = 0u8;
    for &c in v {
        any |= CLASS[c as usize];
    }
    if any & LOUD != 0 {
        return true;
    }
    any & PAIR != 0 && suspicious_pair(v)
}

/// The neighbour-dependent half of [`suspicious_header`].
fn suspicious_pair(v: &[u8]) -> bool {
    memchr::memchr3_iter(b'-', b'/', b'.', v).any(|i| match v[i] {
        b'-' => v.get(i + 1) == Some(&b'-'),
        // `/*` opens a comment; `*/*` is a media-range wildcard (`Accept: */*`).
        b'/' => v.get(i + 1) == Some(&b'*') && (i == 0 || v[i - 1] != b'*'),
        b'.' => v.get(i + 1..i + 3) == Some(b"./"),
        _ => false,
    })
}

pub(crate) fn short_hash(b: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(b);
    d[..4].iter().map(|x| format!("{x:02x}")).collect()
}

fn hash64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ c.to_ascii_lowercase() as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A path that logs people in.
fn login_like(path: &str) -> bool {
    const WORDS: &[&[u8]] = &[
        b"login",
        b"signin",
        b"sign-in",
        b"sign_in",
        b"logon",
        b"authenticate",
        b"/auth",
        b"/token",
        b"/session",
        b"/oauth",
    ];
    let p = path.as_bytes();
    // Every word starts with `/`, `l`, `s` or `a`: look only there.
    (0..p.len()).any(|i| {
        matches!(p[i] | 0x20, b'/' | b'l' | b's' | b'a')
            && WORDS.iter().any(|w| p.len() - i >= w.len() && p[i..i + w.len()].eq_ignore_ascii_case(w))
    })
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new(InspectConfig::default())
    }
}

impl Inspector {
    pub fn new(cfg: InspectConfig) -> Inspector {
        Inspector {
            cfg,
            values: signatures::value_signatures(),
            scanner: signatures::scanner_agent(),
            traversal: signatures::traversal(),
            jndi: signatures::jndi(),
            xxe: signatures::xxe(),
            nosql: signatures::nosql(),
            leaks: Leaks::default(),
            jwts: jwt::Cache::default(),
            last_agent: (Vec::new(), None),
            last_version: (Vec::new(), String::new()),
        }
    }

    /// Inspect one transaction; `out` is cleared first.
    pub fn inspect(&mut self, tx: &Transaction, out: &mut Inspection) {
        out.signals.clear();
        out.principal = None;
        out.login = None;
        out.traits = Traits::of(tx);
        if let Some(req) = tx.request.as_deref() {
            self.request(tx, req, out);
        }
        // What the parser could not make into a request.
        if tx.flags.has(Flags::OVERSIZED_HEADERS) {
            let len = tx.request.as_deref().map_or(0, |r| r.msg.head_len);
            out.signals.push(Signal {
                rule: RuleId::OversizedHeaders,
                location: "headers".into(),
                signs: Cow::Borrowed(&["header_block_over_limit"]),
                evidence: if len > 0 {
                    format!("{len} bytes of headers").into()
                } else {
                    "header block over the limit".into()
                },
            });
        } else if tx.flags.has(Flags::PARSE_ERROR)
            && (tx.request.is_none()
                || tx.flags.has(Flags::NO_RESPONSE)
                || tx.response.as_deref().is_some_and(|r| r.status == 400))
        {
            out.signals.push(Signal {
                rule: RuleId::MalformedRequest,
                location: "framing".into(),
                signs: Cow::Borrowed(&["parse_error"]),
                evidence: tx.flags.names().collect::<Vec<_>>().join(", ").into(),
            });
        }
        if let Some(resp) = tx.response.as_deref() {
            self.response(resp, out);
        }
    }

    /// Run the value signatures (and SSRF) on one raw value at `location`.
    fn value(&self, location: &str, raw: &str, plus: bool, out: &mut Inspection) {
        if raw.is_empty() || plain(raw.as_bytes()) {
            return;
        }
        let v = normalize::value(raw, plus);
        let mut jndi = false;
        for s in &self.values {
            if let Some(hit) = s.check(&v) {
                jndi |= hit.signature == "jndi_lookup";
                push(out, hit.signature, location, hit.signs, raw);
            }
        }
        // A JNDI lookup names its server in a URL (`ldap://...`): that is the lookup, not a
        // second attack.
        if !jndi {
            if let Some(hit) = signatures::ssrf(&v) {
                push(out, hit.signature, location, hit.signs, raw);
            }
        }
    }

    fn request(&mut self, tx: &Transaction, req: &apiwatch_model::Request, out: &mut Inspection) {
        let method = req.method();
        if method.is_empty()
            || method.len() > 24
            || !method.iter().all(|c| c.is_ascii_uppercase() || *c == b'-' || *c == b'_')
        {
            out.signals.push(Signal {
                rule: RuleId::InvalidMethod,
                location: "method".into(),
                signs: Cow::Borrowed(&["not_a_method"]),
                evidence: redact(&String::from_utf8_lossy(method), 40).into(),
            });
        }
        // Framing.
        let head = &req.msg.head;
        let mut framing = Vec::new();
        if tx.flags.has(Flags::AMBIGUOUS_LENGTH) {
            framing.push("conflicting_lengths");
        }
        let mut hosts = 0;
        for (n, v) in head.iter() {
            if n.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            }
            if n.eq_ignore_ascii_case(b"transfer-encoding") && !v.eq_ignore_ascii_case(b"chunked") {
                framing.push("obfuscated_transfer_encoding");
            }
        }
        if hosts > 1 {
            framing.push("duplicate_host");
        }
        if !framing.is_empty() {
            framing.dedup();
            out.signals.push(Signal {
                rule: RuleId::RequestSmuggling,
                location: "framing".into(),
                evidence: framing.join(", ").into(),
                signs: framing.into(),
            });
        }

        // The target: path and query.
        let uri = text(req.uri());
        let (path, query) = match uri.find('?') {
            Some(i) => (&uri[..i], Some(&uri[i + 1..])),
            None => (uri, None),
        };
        let path = path.split('#').next().unwrap_or(path);
        if !plain_path(path) {
            let (resolved, escaped) = normalize::path(path);
            let decoded = normalize::value(path, false);
            let mut hit = self.traversal.check(&decoded);
            if escaped {
                let h = hit.get_or_insert(signatures::Hit { signature: "path_traversal", score: 0, signs: Vec::new() });
                h.signs.push("escapes_root");
            }
            if let Some(h) = hit {
                push(out, h.signature, "path", h.signs, path);
            } else {
                // Injections inside path segments (`/users/1'%20or%20'1'='1`).
                for seg in resolved.split('/').filter(|s| !s.is_empty()) {
                    self.value("path", seg, false, out);
                }
            }
        }
        if let Some(q) = query {
            let mut n = 0;
            for pair in q.split('&') {
                n += 1;
                if n > self.cfg.max_values {
                    break;
                }
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let name_d: std::borrow::Cow<str> = if name.bytes().any(|c| c == b'%' || c == b'+') {
                    normalize::percent_decode(name, true).into()
                } else {
                    name.into()
                };
                if !value.is_empty()
                    && (CREDENTIAL_NAMES.iter().any(|c| c.eq_ignore_ascii_case(&name_d))
                        || value.starts_with("eyJ") && value.matches('.').count() == 2)
                {
                    out.signals.push(Signal {
                        rule: RuleId::CredentialsInUrl,
                        location: format!("query:{}", show_name(&name_d)).into(),
                        signs: Cow::Borrowed(&["credential_parameter"]),
                        evidence: format!("{}=<{} characters>", show_name(&name_d), value.len()).into(),
                    });
                    continue;
                }
                let (odd_name, odd_value) = (!plain(name.as_bytes()), !plain(value.as_bytes()));
                if !odd_name && !odd_value {
                    continue;
                }
                let loc = format!("query:{}", show_name(&name_d));
                // The name itself can carry the attack (`?$where=`, `?a[$ne]=`).
                if odd_name {
                    self.value(&loc, name, true, out);
                }
                self.value(&loc, value, true, out);
            }
        }

        // Headers: tools, lookups, credentials.
        let mut creds: Option<&'static str> = None;
        for (n, v) in head.iter() {
            if n.eq_ignore_ascii_case(b"user-agent") {
                // Clients send the same agent with every call: the last one's verdict is kept.
                if self.last_agent.0.as_slice() != v {
                    let hit = self.scanner.check(&text(v).to_ascii_lowercase()).map(|h| (h.signature, h.signs));
                    self.last_agent = (v.to_vec(), hit);
                }
                if let Some((sig, signs)) = self.last_agent.1.clone() {
                    push(out, sig, "header:User-Agent", signs, text(v));
                }
            }
            if n.eq_ignore_ascii_case(b"authorization") {
                self.authorization(tx, v, out, &mut creds);
                continue;
            }
            if n.eq_ignore_ascii_case(b"cookie") {
                for c in text(v).split(';') {
                    let (cn, cv) = c.trim().split_once('=').unwrap_or(("", ""));
                    if !cv.is_empty() && SESSION_COOKIES.iter().any(|s| s.eq_ignore_ascii_case(cn)) {
                        out.principal.get_or_insert_with(|| format!("session:{}", short_hash(cv.as_bytes())));
                    }
                }
            }
            if KEY_HEADERS.iter().any(|k| n.eq_ignore_ascii_case(k.as_bytes())) && !v.is_empty() {
                creds.get_or_insert("api_key_header");
                out.principal.get_or_insert_with(|| format!("apikey:{}", short_hash(v)));
                continue;
            }
            if suspicious_header(v) {
                let name = String::from_utf8_lossy(n);
                let loc = format!("header:{}", show_name(&name));
                let v = text(v);
                if let Some(hit) = self.jndi.check(&normalize::value(v, false)) {
                    push(out, hit.signature, &loc, hit.signs, v);
                }
                // Values of cookies and tokens are not checked for injections (opaque, and
                // never shown); other headers are.
                if !n.eq_ignore_ascii_case(b"cookie") {
                    self.value(&loc, v, false, out);
                }
            }
        }
        out.traits.credentials = creds.is_some() || out.principal.is_some();
        if let Some(how) = creds {
            if !loopback(tx) {
                let (signs, evidence): (&'static [&'static str], &'static str) = match how {
                    "basic_auth" => (&["basic_auth"], "basic_auth over http"),
                    "bearer_token" => (&["bearer_token"], "bearer_token over http"),
                    "api_key_header" => (&["api_key_header"], "api_key_header over http"),
                    _ => (&["authorization_header"], "authorization_header over http"),
                };
                out.signals.push(Signal {
                    rule: RuleId::CleartextCredentials,
                    location: "header".into(),
                    signs: Cow::Borrowed(signs),
                    evidence: Cow::Borrowed(evidence),
                });
            }
        }

        // The body.
        let body = &req.msg.body.sample;
        let ct = req.msg.content_type().map(|c| text(c).to_ascii_lowercase()).unwrap_or_default();
        let login = !body.is_empty() && login_like(path);
        let mut user: Option<u64> = None;
        if !body.is_empty() {
            let b = &body[..body.len().min(self.cfg.max_body_bytes)];
            if ct.contains("json") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
                    let mut budget = self.cfg.max_values;
                    self.json(&v, &mut String::new(), out, &mut budget, &mut user);
                } else {
                    self.raw_body(b, out);
                }
            } else if ct.contains("x-www-form-urlencoded") {
                for pair in text(b).split('&').take(self.cfg.max_values) {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let name_d = normalize::percent_decode(name, true);
                    if USER_FIELDS.contains(&name_d.to_ascii_lowercase().as_str()) {
                        user = Some(hash64(normalize::percent_decode(value, true).as_bytes()));
                    }
                    if CREDENTIAL_NAMES.contains(&name_d.to_ascii_lowercase().as_str()) {
                        continue;
                    }
                    let loc = format!("body:{}", show_name(&name_d));
                    if !plain(name.as_bytes()) {
                        self.value(&loc, name, true, out);
                    }
                    self.value(&loc, value, true, out);
                }
            } else if ct.contains("xml") || b.starts_with(b"<?xml") || b.starts_with(b"<!DOCTYPE") {
                let t = String::from_utf8_lossy(b).to_ascii_lowercase();
                if let Some(hit) = self.xxe.check(&t) {
                    push(out, hit.signature, "body", hit.signs, &t);
                }
            } else if !ct.starts_with("multipart/") && !ct.starts_with("application/octet-stream") {
                self.raw_body(b, out);
            }
        }
        if login || out.login.is_some() {
            let failed = login_failed(tx.response.as_deref());
            out.login = Some(Login { user: user.or(out.login.and_then(|l| l.user)), failed });
        }
    }

    /// A body of no known structure: checked as one value when it is short text.
    fn raw_body(&self, b: &[u8], out: &mut Inspection) {
        if b.len() <= 4096 {
            if let Ok(t) = std::str::from_utf8(b) {
                self.value("body", t, false, out);
            }
        }
    }

    fn json(
        &self,
        v: &serde_json::Value,
        path: &mut String,
        out: &mut Inspection,
        budget: &mut usize,
        user: &mut Option<u64>,
    ) {
        if *budget == 0 {
            return;
        }
        match v {
            serde_json::Value::String(s) => {
                *budget -= 1;
                let loc = format!("body:{path}");
                self.value(&loc, s, false, out);
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    self.json(x, path, out, budget, user);
                    path.truncate(len);
                }
            }
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let lk = k.to_ascii_lowercase();
                    if USER_FIELDS.contains(&lk.as_str()) {
                        if let serde_json::Value::String(u) = x {
                            *user = Some(hash64(u.as_bytes()));
                        }
                    }
                    let len = path.len();
                    path.push('/');
                    path.push_str(&show_name(k));
                    // Operators as keys: `{"password": {"$ne": null}}`.
                    if k.starts_with('$') {
                        if let Some(hit) = self.nosql.check(&format!("\"{}\"", k.to_ascii_lowercase())) {
                            push(out, hit.signature, &format!("body:{path}"), hit.signs, k);
                        }
                    }
                    if CREDENTIAL_NAMES.contains(&lk.as_str()) && x.is_string() {
                        path.truncate(len);
                        continue;
                    }
                    self.json(x, path, out, budget, user);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn authorization(&mut self, tx: &Transaction, v: &[u8], out: &mut Inspection, creds: &mut Option<&'static str>) {
        let v = text(v).trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            creds.get_or_insert("basic_auth");
            use base64::Engine;
            let user = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|s| s.split_once(':').map(|(u, _)| u.chars().take(64).collect::<String>()));
            if let Some(u) = user {
                out.login = Some(Login { user: Some(hash64(u.as_bytes())), failed: false });
                out.principal = Some(format!("basic:{}", redact_user(&u)));
            }
            return;
        }
        if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() {
            if !rest.is_empty() {
                creds.get_or_insert("authorization_header");
            }
            return;
        }
        creds.get_or_insert("bearer_token");
        let Some(j) = self.jwts.read(rest) else {
            out.principal.get_or_insert_with(|| format!("token:{}", short_hash(rest.as_bytes())));
            return;
        };
        out.principal = Some(j.principal.clone());
        let status = tx.response.as_deref().map_or(0, |r| r.status);
        let ok = (200..300).contains(&status);
        let mut sig = |rule: RuleId, sign: &'static [&'static str], evidence: Cow<'static, str>| {
            let signs = Cow::Borrowed(sign);
            out.signals.push(Signal { rule, location: "header:Authorization".into(), signs, evidence });
        };
        if j.alg == "none" {
            sig(RuleId::JwtAlgNone, &["alg_none"], "JWT header alg=none".into());
        }
        if j.weak_secret {
            sig(
                RuleId::JwtWeakSecret,
                &["dictionary_secret"],
                format!("JWT {} signed with a common secret", j.alg.to_uppercase()).into(),
            );
        }
        match j.exp {
            None => sig(RuleId::JwtNoExpiry, &["no_exp"], "JWT without exp".into()),
            Some(exp) => {
                let now = tx.ts() / 1_000_000_000;
                if ok && exp < now {
                    sig(
                        RuleId::JwtExpiredAccepted,
                        &["expired"],
                        format!("exp {} s before the request, answered {status}", now - exp).into(),
                    );
                }
            }
        }
    }

    fn response(&mut self, resp: &apiwatch_model::Response, out: &mut Inspection) {
        for (n, v) in resp.msg.head.iter() {
            if version_header(n, v) {
                // Servers send the same header with every answer: its evidence is kept.
                let (key, evidence) = &mut self.last_version;
                let same = key.len() == n.len() + 1 + v.len()
                    && &key[..n.len()] == n
                    && key[n.len()] == 0
                    && &key[n.len() + 1..] == v;
                if !same {
                    *key = [n, b"\0", v].concat();
                    *evidence =
                        mask_numbers(&format!("{}: {}", String::from_utf8_lossy(n), String::from_utf8_lossy(v)), 120);
                }
                // Every answer of most servers carries one of these, spelled so.
                let location = match n {
                    b"Server" => Cow::Borrowed("response:header:Server"),
                    b"server" => Cow::Borrowed("response:header:server"),
                    b"X-Powered-By" => Cow::Borrowed("response:header:X-Powered-By"),
                    _ => format!("response:header:{}", String::from_utf8_lossy(n)).into(),
                };
                out.signals.push(Signal {
                    rule: RuleId::VersionDisclosure,
                    location,
                    signs: Cow::Borrowed(&["versioned_software"]),
                    evidence: evidence.clone().into(),
                });
            }
        }
        let b = &resp.msg.body.sample;
        if let Some((kind, excerpt)) = self.leaks.body(&b[..b.len().min(self.cfg.max_leak_bytes)]) {
            out.signals.push(Signal {
                rule: RuleId::ErrorLeak,
                location: "response:body".into(),
                signs: vec![kind].into(),
                evidence: excerpt.into(),
            });
        }
    }
}

/// A user name as shown: kept when it looks like a name, an e-mail address is cut to its
/// first letter and domain.
pub(crate) fn redact_user(u: &str) -> String {
    match u.split_once('@') {
        Some((local, domain)) => format!("{}***@{}", local.chars().next().unwrap_or('*'), domain),
        None => u.chars().filter(|c| !c.is_control()).take(64).collect(),
    }
}

/// A path with nothing an attack needs (no `%`, `.`-runs, quotes, brackets...).
fn plain_path(p: &str) -> bool {
    let b = p.as_bytes();
    let mut acc = PATH_A | PATH_B;
    for &c in b {
        acc &= CLASS[c as usize];
    }
    acc & PATH_A != 0 || (acc & PATH_B != 0 && !memchr::memchr_iter(b'.', b).any(|i| b.get(i + 1) == Some(&b'.')))
}

/// Both ends on loopback: the bytes never left the host.
fn loopback(tx: &Transaction) -> bool {
    tx.client.0.is_loopback() && tx.server.0.is_loopback()
}

fn push(out: &mut Inspection, signature: &'static str, location: &str, signs: Vec<&'static str>, raw: &str) {
    let Some(rule) = RuleId::of_signature(signature) else { return };
    // One signal per rule and place.
    if out.signals.iter().any(|s| s.rule == rule && s.location == location) {
        return;
    }
    let (location, evidence) = (location.to_string().into(), redact(raw, 120).into());
    out.signals.push(Signal { rule, location, signs: signs.into(), evidence });
}

#[cfg(test)]
mod quick_checks {
    use super::{login_like, plain, plain_path, suspicious_header};

    /// The table-driven checks agree with their definitions on every byte, alone and in
    /// the pairs that matter.
    #[test]
    fn byte_classes_match_their_definitions() {
        let plain_ref =
            |v: &[u8]| v.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@'));
        let path_ref = |p: &[u8]| {
            p.iter().all(|&c| {
                c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-' | b'@' | b'~' | b':' | b',' | b'+')
            }) || (p.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-' | b'.' | b'~'))
                && !p.windows(2).any(|w| w == b".."))
        };
        let header_ref = |v: &[u8]| {
            v.iter().enumerate().any(|(i, &c)| match c {
                b'\'' | b'"' | b'<' | b'>' | b'`' | b'$' | b'|' | b'{' | b'}' | b'%' | b'\\' => true,
                b'-' => v.get(i + 1) == Some(&b'-'),
                b'/' => v.get(i + 1) == Some(&b'*') && (i == 0 || v[i - 1] != b'*'),
                b'.' => v.get(i + 1..i + 3) == Some(b"./"),
                _ => false,
            })
        };
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        for a in 0..=255u8 {
            cases.push(vec![a]);
            cases.push(b"abcdefgh/ijk".iter().copied().chain([a]).collect());
            for b in [b'-', b'/', b'.', b'*', b'a'] {
                cases.push(vec![a, b]);
                cases.push(vec![b, a, b'/']);
            }
        }
        for v in &cases {
            assert_eq!(plain(v), plain_ref(v), "plain {v:?}");
            assert_eq!(suspicious_header(v), header_ref(v), "header {v:?}");
            if let Ok(p) = std::str::from_utf8(v) {
                assert_eq!(plain_path(p), path_ref(v), "path {v:?}");
            }
        }
    }

    #[test]
    fn login_paths() {
        for p in ["/api/login", "/Auth/Token", "/v1/SignIn", "/users/sign_in", "/oauth2/authorize", "/LOGON.aspx"] {
            assert!(login_like(p), "{p}");
        }
        for p in ["/api/users", "/", "", "/blog/logs", "/s"] {
            assert!(!login_like(p), "{p}");
        }
    }

    #[test]
    fn suspicious_header_values() {
        for v in ["a'b", "x--y", "/*c*/", "../etc", "${jndi:x}", "a|b", "50%"] {
            assert!(suspicious_header(v.as_bytes()), "{v}");
        }
        for v in ["curl/8.0", "text/html, */*;q=0.8", "*/*", "gzip, deflate", "en-US,en;q=0.9", "1.2.3", "-", "a/b.c"] {
            assert!(!suspicious_header(v.as_bytes()), "{v}");
        }
    }
}
