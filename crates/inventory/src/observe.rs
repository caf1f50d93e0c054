//! What one transaction tells the inventory, extracted where the transaction is (in the
//! worker that parsed it), so the single inventory owner only aggregates.

use crate::segment::{classify, Kind};
use apiwatch_model::Transaction;
use std::net::IpAddr;

/// An address block, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("`{s}` is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => {
                p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or(format!("bad prefix length in `{s}`"))?
            }
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

/// RFC 1918, loopback, link-local, CGNAT-free defaults; ULA, loopback and link-local for v6.
pub const DEFAULT_INTERNAL: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "::1/128",
    "fe80::/10",
];

#[derive(Debug, Clone)]
pub struct ObserveConfig {
    pub internal: Vec<Cidr>,
    /// Peers whose X-Forwarded-For / Forwarded headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Infer JSON body schemas (the costliest part of an observation).
    pub schemas: bool,
    /// Carry what the sensitive-data classifier reads (heads, query, bodies of any type),
    /// moved out of the transaction, to the inventory, which samples it per endpoint: for
    /// the transactions this gate lets through (a superset of those the inventory picks).
    pub classify: Option<std::cell::RefCell<crate::sensitive::MaterialGate>>,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        ObserveConfig {
            internal: DEFAULT_INTERNAL.iter().map(|c| c.parse().expect("valid default")).collect(),
            trusted_proxies: Vec::new(),
            schemas: true,
            classify: None,
        }
    }
}

/// What the classifier may read of a transaction, moved out of it (no copy).
#[derive(Debug, Clone, Default)]
pub struct Material {
    /// The query string, raw (without `?`).
    pub query: Box<str>,
    pub req_head: apiwatch_model::MessageHead,
    pub resp_head: Option<apiwatch_model::MessageHead>,
    /// Bodies that are not JSON (JSON ones are in `Observation::req_body`/`resp_body`).
    pub req_body: Vec<u8>,
    pub resp_body: Vec<u8>,
}

/// Credentials seen on a request. Names only, never values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Auth {
    None,
    Basic,
    Bearer,
    /// A JWT bearer token, with the `alg` of its header.
    Jwt(Box<str>),
    /// Another Authorization scheme (Digest, Negotiate, AWS4-HMAC-SHA256...).
    Scheme(Box<str>),
    ApiKeyHeader(Box<str>),
    ApiKeyQuery(Box<str>),
    ApiKeyCookie(Box<str>),
    SessionCookie(Box<str>),
}

impl Auth {
    /// Stable label: `none`, `basic`, `bearer`, `jwt:HS256`, `apikey:header:x-api-key`...
    pub fn label(&self) -> String {
        // A prefix and a name, in one allocation of the exact size (this runs on every
        // call; `format!` would allocate, grow, and the caller's `Box<str>` shrink).
        let (prefix, name) = match self {
            Auth::None => ("none", ""),
            Auth::Basic => ("basic", ""),
            Auth::Bearer => ("bearer", ""),
            Auth::Jwt(alg) => ("jwt:", &**alg),
            Auth::Scheme(s) => ("scheme:", &**s),
            Auth::ApiKeyHeader(n) => ("apikey:header:", &**n),
            Auth::ApiKeyQuery(n) => ("apikey:query:", &**n),
            Auth::ApiKeyCookie(n) => ("apikey:cookie:", &**n),
            Auth::SessionCookie(n) => ("session:cookie:", &**n),
        };
        let mut s = String::with_capacity(prefix.len() + name.len());
        s.push_str(prefix);
        s.push_str(name);
        s
    }
}

#[derive(Debug, Clone)]
pub struct Observation {
    /// Packet time of the request (or of the response when the request was not seen).
    pub ts: i64,
    pub host: Box<str>,
    pub method: Box<str>,
    /// The path, without query or fragment.
    pub path: Box<str>,
    /// 0 when no response was seen.
    pub status: u16,
    pub latency_us: Option<u64>,
    pub req_type: Option<Box<str>>,
    pub resp_type: Option<Box<str>>,
    pub query: Vec<(Box<str>, Kind)>,
    pub auth: Auth,
    pub external: bool,
    pub client: IpAddr,
    /// JSON bodies (complete samples), moved out of the transaction; the inventory infers
    /// schemas from a sample of them.
    pub req_body: Option<Vec<u8>>,
    pub resp_body: Option<Vec<u8>>,
    /// `auth.label()`, rendered once where the observation is made.
    pub auth_label: Box<str>,
    /// For the classifier, when `ObserveConfig::classify` is on and its gate let it through.
    pub material: Option<Box<Material>>,
    /// Picked by the classifier's rate (a hash of the transaction, so the same whatever
    /// thread made the observation).
    pub picked: bool,
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(v: &[u8]) -> Option<Box<str>> {
    let t = text(v).split(';').next()?.trim();
    if t.is_empty() || t.len() > 100 || !t.contains('/') {
        return None;
    }
    Some(t.to_ascii_lowercase().into())
}

fn is_json(t: Option<&str>) -> bool {
    t.is_some_and(|t| t == "application/json" || t.ends_with("+json") || t == "text/json")
}

const KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-api-token",
    "x-auth-token",
    "x-access-token",
    "x-token",
    "x-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "private-token",
];
const KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "token",
    "auth",
    "auth_token",
    "apitoken",
    "subscription-key",
];
const SESSION_COOKIES: &[&str] = &[
    "session",
    "sessionid",
    "session_id",
    "sid",
    "jsessionid",
    "phpsessid",
    "asp.net_sessionid",
    "connect.sid",
    "laravel_session",
    "_session_id",
    "auth_token",
];

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The `alg` of a JWT's header, if `token` is a JWT.
pub fn jwt_alg(token: &str) -> Option<Box<str>> {
    // Three dot-separated parts (memchr: this runs on every call that carries a token).
    let b = token.as_bytes();
    let d1 = memchr::memchr(b'.', b)?;
    let d2 = d1 + 1 + memchr::memchr(b'.', &b[d1 + 1..])?;
    let (h, p) = (&token[..d1], &token[d1 + 1..d2]);
    if memchr::memchr(b'.', &b[d2 + 1..]).is_some() || h.len() > 2048 || p.is_empty() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        alg: std::borrow::Cow<'a, str>,
    }
    // Tokens of one issuer share their header: remember the last one decoded (per thread).
    thread_local! {
        static LAST: std::cell::RefCell<(String, Option<Box<str>>)> = const { std::cell::RefCell::new((String::new(), None)) };
    }
    if let Some(hit) = LAST.with(|l| {
        let l = l.borrow();
        (l.0 == h).then(|| l.1.clone())
    }) {
        return hit;
    }
    let alg = b64url_decode(h).and_then(|raw| {
        let header: Header<'_> = serde_json::from_slice(&raw).ok()?;
        let alg: String = header.alg.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect();
        Some(Box::<str>::from(alg))
    });
    LAST.with(|l| *l.borrow_mut() = (h.to_string(), alg.clone()));
    alg
}

fn classify_auth(tx: &Transaction, query: &[(Box<str>, Kind)]) -> Auth {
    let Some(req) = tx.request.as_deref() else { return Auth::None };
    // One pass over the header fields: Authorization wins, then an API key header, then
    // (after the query) a cookie.
    let (mut authorization, mut key_header, mut cookie) = (None, None, None);
    for (n, v) in req.msg.head.iter() {
        if n.eq_ignore_ascii_case(b"authorization") {
            authorization = Some(v);
            break;
        }
        if key_header.is_none() && n.len() <= 26 && KEY_HEADERS.iter().any(|k| n.eq_ignore_ascii_case(k.as_bytes())) {
            key_header = Some(n);
        } else if cookie.is_none() && n.eq_ignore_ascii_case(b"cookie") {
            cookie = Some(v);
        }
    }
    if let Some(v) = authorization {
        let v = text(v).trim();
        let (scheme, cred) = v.split_once(' ').unwrap_or((v, ""));
        return if scheme.eq_ignore_ascii_case("basic") {
            Auth::Basic
        } else if scheme.eq_ignore_ascii_case("bearer") {
            jwt_alg(cred.trim()).map(Auth::Jwt).unwrap_or(Auth::Bearer)
        } else {
            let s: String = scheme.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
            Auth::Scheme(s.to_ascii_lowercase().into())
        };
    }
    if let Some(n) = key_header {
        return Auth::ApiKeyHeader(text(n).to_ascii_lowercase().into());
    }
    for (n, _) in query {
        if KEY_PARAMS.iter().any(|k| n.eq_ignore_ascii_case(k)) {
            return Auth::ApiKeyQuery(n.clone());
        }
    }
    if let Some(c) = cookie {
        let mut session = None;
        for pair in text(c).split(';') {
            let name = pair.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            if KEY_PARAMS.contains(&name.as_str()) && name != "auth_token" {
                return Auth::ApiKeyCookie(name.into());
            }
            if session.is_none()
                && (SESSION_COOKIES.contains(&name.as_str()) || name.ends_with("_session") || name.ends_with("sessid"))
            {
                session = Some(name);
            }
        }
        if let Some(s) = session {
            return Auth::SessionCookie(s.into());
        }
    }
    Auth::None
}

fn percent_decoded_at(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('%') || s.contains('+') {
        s.replace("%40", "@").replace("%3A", ":").replace("%3a", ":").replace('+', " ").into()
    } else {
        s.into()
    }
}

/// The client a request came from: the peer, or, when the peer is a trusted proxy, the
/// nearest untrusted address in X-Forwarded-For (right to left) or Forwarded `for=`.
fn real_client(tx: &Transaction, cfg: &ObserveConfig) -> IpAddr {
    let peer = tx.client.0;
    if !cfg.trusted_proxies.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(req) = tx.request.as_deref() else { return peer };
    let head = &req.msg.head;
    let mut hops: Vec<IpAddr> = Vec::new();
    if let Some(f) = head.header("forwarded") {
        for elem in text(f).split(',') {
            for kv in elem.split(';') {
                if let Some((k, v)) = kv.trim().split_once('=') {
                    if k.eq_ignore_ascii_case("for") {
                        let v = v.trim_matches('"');
                        let v = v.strip_prefix('[').and_then(|x| x.split(']').next()).unwrap_or(v);
                        let v = if v.matches(':').count() == 1 { v.split(':').next().unwrap_or(v) } else { v };
                        if let Ok(ip) = v.parse() {
                            hops.push(ip);
                        }
                    }
                }
            }
        }
    } else if let Some(x) = head.header("x-forwarded-for") {
        hops.extend(text(x).split(',').filter_map(|h| h.trim().parse::<IpAddr>().ok()));
    }
    hops.iter().rev().copied().find(|ip| !cfg.trusted_proxies.iter().any(|c| c.contains(*ip))).unwrap_or(peer)
}

impl Observation {
    /// What `tx` tells the inventory; `None` for a transaction with no request (nothing to
    /// key an endpoint on). JSON body samples are moved out of `tx` (render it first).
    pub fn of(tx: &mut Transaction, cfg: &ObserveConfig) -> Option<Observation> {
        let mut o = Observation::read(tx, cfg)?;
        if cfg.schemas || cfg.classify.is_some() {
            let take = |m: &mut apiwatch_model::Message, t: Option<&str>| {
                (is_json(t) && !m.body.sample.is_empty() && !m.body.sample_truncated)
                    .then(|| std::mem::take(&mut m.body.sample))
            };
            if let Some(r) = tx.request.as_deref_mut() {
                o.req_body = take(&mut r.msg, o.req_type.as_deref());
            }
            if let Some(r) = tx.response.as_deref_mut() {
                o.resp_body = take(&mut r.msg, o.resp_type.as_deref());
            }
        }
        let carry = cfg.classify.as_ref().map(|g| g.borrow_mut().check(&o, tx));
        if let Some((_, picked)) = carry {
            o.picked = picked;
        }
        if carry.is_some_and(|(carry, _)| carry) {
            let mut m = Material::default();
            if let Some(r) = tx.request.as_deref_mut() {
                let uri = r.uri();
                if let Some(q) = uri.iter().position(|&c| c == b'?') {
                    m.query = String::from_utf8_lossy(&uri[q + 1..]).into();
                }
                m.req_head = std::mem::take(&mut r.msg.head);
                m.req_body = std::mem::take(&mut r.msg.body.sample);
            }
            if let Some(r) = tx.response.as_deref_mut() {
                m.resp_head = Some(std::mem::take(&mut r.msg.head));
                m.resp_body = std::mem::take(&mut r.msg.body.sample);
            }
            o.material = Some(Box::new(m));
        }
        Some(o)
    }

    fn read(tx: &Transaction, cfg: &ObserveConfig) -> Option<Observation> {
        let req = tx.request.as_deref()?;
        let method = text(req.method());
        if method.is_empty() || method.len() > 32 || !method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-') {
            return None;
        }
        let uri = text(req.uri());
        let mut path = uri;
        if let Some(rest) = path.strip_prefix("http://").or_else(|| path.strip_prefix("https://")) {
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
        let (path, query_str) = match path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path, ""),
        };
        let path = path.split('#').next().unwrap_or("");
        let mut query: Vec<(Box<str>, Kind)> = Vec::new();
        for pair in query_str.split('#').next().unwrap_or("").split('&').filter(|p| !p.is_empty()).take(64) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.is_empty() || k.len() > 64 {
                continue;
            }
            let k = percent_decoded_at(k);
            let kind = classify(&percent_decoded_at(v));
            query.push((k.as_ref().into(), kind));
        }
        let host = normalize_host(req.host(), tx);
        let resp = tx.response.as_deref();
        let req_type = req.msg.content_type().and_then(media_type);
        let resp_type = resp.and_then(|r| r.msg.content_type()).and_then(media_type);
        let client = real_client(tx, cfg);
        let auth = classify_auth(tx, &query);
        Some(Observation {
            ts: req.msg.ts_first,
            auth_label: auth.label().into(),
            auth,
            host,
            method: method.into(),
            path: path.into(),
            status: resp.map_or(0, |r| r.status),
            latency_us: resp.map(|r| ((r.msg.ts_first - req.msg.ts_first).max(0) / 1000) as u64),
            req_body: None,
            resp_body: None,
            req_type,
            resp_type,
            query,
            external: !cfg.internal.iter().any(|c| c.contains(client)),
            client,
            material: None,
            picked: false,
        })
    }
}

/// Lower-case host without the default port; the server address when there is no Host.
fn normalize_host(h: Option<&[u8]>, tx: &Transaction) -> Box<str> {
    let server = || {
        let (ip, port) = tx.server;
        match (ip, port) {
            (IpAddr::V6(v6), 80) => format!("[{v6}]"),
            (IpAddr::V6(v6), p) => format!("[{v6}]:{p}"),
            (ip, 80) => ip.to_string(),
            (ip, p) => format!("{ip}:{p}"),
        }
    };
    let Some(h) = h else { return server().into() };
    let h = text(h).trim();
    if h.is_empty()
        || h.len() > 255
        || !h.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
    {
        return server().into();
    }
    let h = h.strip_suffix(":80").unwrap_or(h);
    h.to_ascii_lowercase().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let u: Cidr = "fc00::/7".parse().unwrap();
        assert!(u.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    /// A message head from its start line parts and header fields.
    fn head(line: [&str; 3], headers: &[(&str, &str)]) -> apiwatch_model::MessageHead {
        use apiwatch_model::{MessageHead, Span};
        let mut raw = Vec::new();
        let span = |raw: &mut Vec<u8>, s: &str| {
            let start = raw.len() as u32;
            raw.extend_from_slice(s.as_bytes());
            Span { start, end: raw.len() as u32 }
        };
        let line = [span(&mut raw, line[0]), span(&mut raw, line[1]), span(&mut raw, line[2])];
        let headers = headers.iter().map(|(n, v)| (span(&mut raw, n), span(&mut raw, v))).collect();
        MessageHead { raw, line, headers }
    }

    fn tx(client: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Transaction {
        use apiwatch_model::{Message, Request, Response};
        let req = Request {
            msg: Message { head: head(["GET", uri, "HTTP/1.1"], headers), ts_first: 1_000_000, ..Message::default() },
        };
        let mut resp = Response { status: 200, ..Response::default() };
        resp.msg = Message {
            head: head(["HTTP/1.1", "200", "OK"], &[("Content-Type", "application/json; charset=utf-8")]),
            ts_first: 3_500_000,
            ..Message::default()
        };
        resp.msg.body.sample = body.as_bytes().to_vec();
        Transaction {
            conn_id: 1,
            trans_depth: 1,
            pipelined: 0,
            client: (client.parse().unwrap(), 40000),
            server: ("10.0.0.5".parse().unwrap(), 8080),
            community_id: "x".into(),
            request: Some(Box::new(req)),
            response: Some(Box::new(resp)),
            flags: Default::default(),
        }
    }

    #[test]
    fn observes_a_transaction() {
        let cfg = ObserveConfig { trusted_proxies: vec!["10.9.0.0/16".parse().unwrap()], ..ObserveConfig::default() };
        let mut t = tx(
            "10.9.1.1",
            "/users/7?api_key=s3cret&page=2",
            &[("Host", "API.Example.com:80"), ("X-Forwarded-For", "198.51.100.7, 10.9.3.3")],
            r#"{"id":7}"#,
        );
        let o = Observation::of(&mut t, &cfg).unwrap();
        assert_eq!(&*o.host, "api.example.com");
        assert_eq!(&*o.path, "/users/7");
        assert_eq!(o.auth, Auth::ApiKeyQuery("api_key".into()));
        assert_eq!(
            o.query.iter().map(|(k, kind)| (k.as_ref(), *kind)).collect::<Vec<_>>(),
            vec![("api_key", Kind::String), ("page", Kind::Integer)]
        );
        assert_eq!(o.client, "198.51.100.7".parse::<IpAddr>().unwrap(), "nearest untrusted hop of X-Forwarded-For");
        assert!(o.external);
        assert_eq!(o.latency_us, Some(2500));
        assert_eq!(o.resp_type.as_deref(), Some("application/json"));
        assert_eq!(o.resp_body.as_deref(), Some(&b"{\"id\":7}"[..]), "the JSON body moves into the observation");
        assert!(t.response.as_ref().unwrap().msg.body.sample.is_empty());

        // Forwarded, from a trusted proxy; a session cookie.
        let mut t = tx(
            "10.9.1.1",
            "/a",
            &[
                ("Host", "h"),
                ("Forwarded", "for=\"[2001:db8::1]:4711\";proto=http"),
                ("Cookie", "theme=dark; JSESSIONID=abc"),
            ],
            "",
        );
        let o = Observation::of(&mut t, &cfg).unwrap();
        assert_eq!(o.client, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(o.auth, Auth::SessionCookie("jsessionid".into()));

        // The same headers from an untrusted peer are ignored: the peer is the client.
        let mut t =
            tx("192.168.1.4", "/a", &[("X-Forwarded-For", "198.51.100.7"), ("Authorization", "Basic dTpw")], "");
        let o = Observation::of(&mut t, &cfg).unwrap();
        assert_eq!(o.client, "192.168.1.4".parse::<IpAddr>().unwrap());
        assert!(!o.external);
        assert_eq!(o.auth, Auth::Basic);
        assert_eq!(&*o.host, "10.0.0.5:8080", "no Host header: the server address");

        let mut t = tx("10.1.1.1", "/a", &[("X-Api-Key", "k")], "");
        assert_eq!(Observation::of(&mut t, &cfg).unwrap().auth, Auth::ApiKeyHeader("x-api-key".into()));
    }

    #[test]
    fn jwt() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"1"} . sig
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln";
        assert_eq!(jwt_alg(t).as_deref(), Some("HS256"));
        assert_eq!(jwt_alg("abc.def"), None);
        assert_eq!(jwt_alg("opaque-token"), None);
    }
}
