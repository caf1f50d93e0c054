//! HTTP stage tests: streams fed through the handler, split at every byte position where
//! it matters, checking the transactions that come out.

use super::*;
use std::net::{IpAddr, Ipv4Addr};

fn info(midstream: bool) -> ConnInfo {
    ConnInfo {
        id: 7,
        client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
        server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80),
        first_ts: 0,
        midstream,
    }
}

/// Script step.
enum Step<'a> {
    C(&'a [u8]),
    S(&'a [u8]),
    CGap(u64),
    SGap(u64),
    CFin,
    SFin,
}
use Step::*;

fn run_cfg(steps: &[Step<'_>], cfg: HttpConfig, midstream: bool) -> (Vec<Transaction>, HttpStats) {
    let mut h = HttpHandler::new(cfg);
    let i = info(midstream);
    let mut c = h.open(&i, 0);
    for (t, s) in steps.iter().enumerate() {
        let ts = t as i64 * 1_000_000;
        match s {
            C(d) => h.data(&mut c, &i, Dir::ToServer, d, ts, None),
            S(d) => h.data(&mut c, &i, Dir::ToClient, d, ts, None),
            CGap(n) => h.gap(&mut c, &i, Dir::ToServer, *n, ts),
            SGap(n) => h.gap(&mut c, &i, Dir::ToClient, *n, ts),
            CFin => h.fin(&mut c, &i, Dir::ToServer, ts),
            SFin => h.fin(&mut c, &i, Dir::ToClient, ts),
        }
    }
    h.close(c, &i, CloseReason::Shutdown, 0);
    let st = h.stats();
    (std::mem::take(&mut h.out), st)
}

fn run(steps: &[Step<'_>]) -> Vec<Transaction> {
    run_cfg(steps, HttpConfig::default(), false).0
}

/// (method, uri, status, req body len, resp body len, flags)
type Row = (String, String, u16, u64, u64, Vec<&'static str>);

fn summary(txs: &[Transaction]) -> Vec<Row> {
    txs.iter()
        .map(|t| {
            let (m, u, ql) = t
                .request
                .as_ref()
                .map(|r| {
                    (
                        String::from_utf8_lossy(r.method()).into_owned(),
                        String::from_utf8_lossy(r.uri()).into_owned(),
                        r.msg.body.len,
                    )
                })
                .unwrap_or_default();
            let (s, sl) = t.response.as_ref().map(|r| (r.status, r.msg.body.len)).unwrap_or_default();
            (m, u, s, ql, sl, t.flags.names().collect())
        })
        .collect()
}

fn row(
    m: &str,
    u: &str,
    s: u16,
    ql: u64,
    sl: u64,
    f: &[&'static str],
) -> (String, String, u16, u64, u64, Vec<&'static str>) {
    (m.into(), u.into(), s, ql, sl, f.to_vec())
}

/// Feed `req` and `resp` split at every position (two chunks each) and check the result
/// does not depend on where the packets were cut.
fn every_split(req: &[u8], resp: &[u8], expect: &[Row]) {
    for i in 0..=req.len() {
        for j in (0..=resp.len()).step_by(if resp.len() > 300 { 7 } else { 1 }) {
            let steps = [C(&req[..i]), C(&req[i..]), S(&resp[..j]), S(&resp[j..]), SFin];
            let got = summary(&run(&steps));
            assert_eq!(got, expect, "split request at {i}, response at {j}");
        }
    }
}

#[test]
fn simple_get_every_split() {
    every_split(
        b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        &[row("GET", "/a?x=1", 200, 0, 5, &[])],
    );
}

#[test]
fn chunked_with_trailers_every_split() {
    every_split(
        b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n",
        &[row("POST", "/up", 201, 5, 4, &[])],
    );
}

#[test]
fn keep_alive_and_pipelining() {
    let req = b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n";
    every_split(
        req,
        resp,
        &[row("GET", "/1", 200, 0, 1, &[]), row("HEAD", "/2", 200, 0, 0, &[]), row("GET", "/3", 304, 0, 0, &[])],
    );
    let txs = run(&[C(req), S(resp)]);
    assert_eq!(txs.iter().map(|t| t.trans_depth).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn continue_100_and_204() {
    let txs = run(&[
        C(b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        S(b"HTTP/1.1 100 Continue\r\n\r\n"),
        C(b"data"),
        S(b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    assert_eq!(summary(&txs), [row("PUT", "/f", 204, 4, 0, &["expect_continue"])]);
    assert_eq!(txs[0].response.as_ref().unwrap().interim, [100]);
}

#[test]
fn body_until_close() {
    let txs = run(&[C(b"GET / HTTP/1.0\r\n\r\n"), S(b"HTTP/1.0 200 OK\r\n\r\nsome"), S(b" more"), SFin]);
    assert_eq!(summary(&txs), [row("GET", "/", 200, 0, 9, &[])]);
}

#[test]
fn request_without_response_is_reported() {
    let txs = run(&[C(b"GET /lost HTTP/1.1\r\n\r\n"), CFin]);
    assert_eq!(summary(&txs), [row("GET", "/lost", 0, 0, 0, &["no_response"])]);
}

#[test]
fn truncated_body_is_flagged() {
    let txs = run(&[C(b"GET / HTTP/1.1\r\n\r\n"), S(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")]);
    assert_eq!(summary(&txs), [row("GET", "/", 200, 0, 3, &["truncated"])]);
}

#[test]
fn gap_inside_body_keeps_pairing() {
    let txs = run(&[
        C(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        S(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
        SGap(6),
        S(b"ijHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(summary(&txs), [row("GET", "/1", 200, 0, 10, &["gap"]), row("GET", "/2", 404, 0, 0, &[])]);
}

#[test]
fn gap_across_message_boundary_resyncs() {
    let txs = run(&[
        C(b"GET /1 HTTP/1.1\r\n\r\n"),
        CGap(30),
        C(b"ignored tail\r\nGET /3 HTTP/1.1\r\n\r\n"),
        S(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let s = summary(&txs);
    assert_eq!(s[0], row("GET", "/1", 200, 0, 0, &[]));
    assert_eq!(s[1], row("GET", "/3", 200, 0, 0, &["gap"]));
}

#[test]
fn upgrade_to_websocket_skips_the_rest() {
    let (txs, st) = run_cfg(
        &[
            C(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            S(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
            C(b"\x81\x85abcdefghi"),
        ],
        HttpConfig::default(),
        false,
    );
    assert_eq!(summary(&txs), [row("GET", "/ws", 101, 0, 0, &["upgrade"])]);
    assert_eq!(st.upgrades, 1);
    assert_eq!(st.tunnel_bytes, 7 + 11);
}

#[test]
fn not_http_connection_is_ignored() {
    let (txs, st) = run_cfg(&[C(b"\x16\x03\x01\x02\x00\x01\x00"), S(b"\x16\x03\x03")], HttpConfig::default(), false);
    assert!(txs.is_empty());
    assert_eq!(st.conns_not_http, 1);
}

#[test]
fn midstream_starting_in_a_body_resyncs() {
    let txs = run_cfg(
        &[
            S(b"tail of an earlier body\r\n"),
            C(b"GET /next HTTP/1.1\r\n\r\n"),
            S(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ],
        HttpConfig::default(),
        true,
    )
    .0;
    let s = summary(&txs);
    assert_eq!(s, [row("GET", "/next", 200, 0, 2, &["midstream"])]);
}

#[test]
fn gzip_body_sample_is_decoded_and_bounded() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let plain: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{{\"id\":{i}}}").into_bytes()).collect();
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    let mut resp =
        format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", gz.len()).into_bytes();
    resp.extend_from_slice(&gz);
    let cfg = HttpConfig { body_sample_bytes: 1000, ..HttpConfig::default() };
    let (txs, st) = run_cfg(&[C(b"GET /big HTTP/1.1\r\n\r\n"), S(&resp)], cfg, false);
    let r = txs[0].response.as_ref().unwrap();
    assert_eq!(r.msg.body.len, plain.len() as u64);
    assert_eq!(r.msg.body.transfer_len, gz.len() as u64);
    assert_eq!(r.msg.body.sample, plain[..1000]);
    assert!(r.msg.body.sample_truncated);
    assert_eq!(st.sample_bytes_now, 0);
    assert!(txs[0].flags.names().next().is_none());
}

#[test]
fn smuggling_signs_are_flagged() {
    let txs = run(&[
        C(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        S(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(summary(&txs), [row("POST", "/", 200, 0, 0, &["ambiguous_length"])]);
}

#[test]
fn hostile_inputs_stay_bounded() {
    let cfg = HttpConfig { max_header_bytes: 1024, ..HttpConfig::default() };
    // Endless header.
    let mut h = HttpHandler::new(cfg.clone());
    let i = info(false);
    let mut c = h.open(&i, 0);
    h.data(&mut c, &i, Dir::ToServer, b"GET / HTTP/1.1\r\nX: ", 0, None);
    for _ in 0..1000 {
        h.data(&mut c, &i, Dir::ToServer, &[b'a'; 1000], 0, None);
        assert!(c.sides[REQ].buf.len() <= 1024);
    }
    assert_eq!(h.stats().oversized_heads, 1);
    // Endless chunk-size line, and a 2^64 chunk size.
    let (_, st) =
        run_cfg(&[C(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), C(&[b'1'; 10_000])], cfg.clone(), false);
    assert_eq!(st.parse_errors, 1);
    let (txs, _) =
        run_cfg(&[C(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n")], cfg, false);
    assert!(txs[0].flags.has(Flags::PARSE_ERROR));
}

#[test]
fn http09_request_and_response() {
    let txs = run(&[C(b"GET /old\r\n"), S(b"<html>hi</html>"), SFin]);
    assert_eq!(summary(&txs), [row("GET", "/old", 0, 0, 15, &["http09"])]);
}

#[test]
fn random_streams_never_panic() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 10] = [
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"5\r\nabcde\r\n",
        b"0\r\n\r\n",
        b"\xff\x00garbage",
        b"HTTP/1.1 101 Switching\r\n\r\n",
        b"HEAD /x HTTP/1.0\r\n\r\n",
    ];
    for _ in 0..3000 {
        let mut h = HttpHandler::new(HttpConfig { max_header_bytes: 256, ..HttpConfig::default() });
        let i = info(next() % 2 == 0);
        let mut c = h.open(&i, 0);
        for _ in 0..(next() % 20) {
            let p = pieces[(next() % 10) as usize];
            let dir = if next() % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
            match next() % 8 {
                0 => h.gap(&mut c, &i, dir, next() % 50, 0),
                1 => h.fin(&mut c, &i, dir, 0),
                _ => h.data(&mut c, &i, dir, p, 0, None),
            }
        }
        h.close(c, &i, CloseReason::Shutdown, 0);
    }
}

#[test]
fn raw_deflate_in_chunks_is_decoded() {
    use flate2::write::DeflateEncoder;
    use std::io::Write;
    let mut enc = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"hello hello hello").unwrap();
    let d = enc.finish().unwrap();
    let (a, b) = d.split_at(d.len() / 2);
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    resp.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
    resp.extend_from_slice(a);
    resp.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
    resp.extend_from_slice(b);
    resp.extend_from_slice(b"\r\n0\r\n\r\n");
    let txs = run(&[C(b"GET / HTTP/1.1\r\n\r\n"), S(&resp)]);
    let r = txs[0].response.as_ref().unwrap();
    assert_eq!(r.msg.body.sample, b"hello hello hello");
    assert_eq!((r.msg.body.len, r.msg.body.transfer_len), (17, d.len() as u64));
}

#[test]
fn versionless_request_line_with_headers_keeps_the_headers() {
    let txs = run(&[
        C(b"GET /HTTP/1.1\nHost: www.example.com\n\n"),
        S(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"),
        SFin,
    ]);
    assert_eq!(summary(&txs), [row("GET", "/HTTP/1.1", 400, 0, 2, &["parse_error"])]);
    assert_eq!(txs[0].request.as_ref().unwrap().host(), Some(&b"www.example.com"[..]));
}

#[test]
fn lost_response_is_detected_by_acknowledgment() {
    let mut h = HttpHandler::new(HttpConfig::default());
    let i = info(false);
    let mut c = h.open(&i, 0);
    let (q1, q2, q3) = (b"GET /1 HTTP/1.1\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n", b"GET /3 HTTP/1.1\r\n\r\n");
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    // Not pipelined: each request after the previous response. The response to /2 is lost.
    h.data(&mut c, &i, Dir::ToServer, q1, 0, Some(0));
    h.data(&mut c, &i, Dir::ToClient, r, 1, Some(q1.len() as u64));
    h.data(&mut c, &i, Dir::ToServer, q2, 2, Some(r.len() as u64));
    h.gap(&mut c, &i, Dir::ToClient, r.len() as u64, 3);
    h.data(&mut c, &i, Dir::ToServer, q3, 4, Some(2 * r.len() as u64));
    let acked = (q1.len() + q2.len() + q3.len()) as u64;
    h.data(&mut c, &i, Dir::ToClient, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 5, Some(acked));
    h.close(c, &i, CloseReason::Shutdown, 6);
    assert_eq!(
        summary(&h.out),
        [
            row("GET", "/1", 200, 0, 0, &[]),
            row("GET", "/2", 0, 0, 0, &["gap", "no_response"]),
            row("GET", "/3", 404, 0, 0, &[])
        ]
    );
}

#[test]
fn h2c_prior_knowledge_is_skipped_and_counted() {
    let (txs, st) = run_cfg(
        &[
            C(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
            S(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"),
        ],
        HttpConfig::default(),
        false,
    );
    assert!(txs.is_empty());
    assert_eq!((st.h2_prior_knowledge, st.upgrades, st.parse_errors), (1, 1, 0));
    assert!(st.tunnel_bytes > 0);
}

#[test]
fn request_head_cut_by_the_close_is_reported() {
    let txs = run(&[C(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Partial: ye"), CFin]);
    assert_eq!(summary(&txs), [row("GET", "/slow", 0, 0, 0, &["truncated", "no_response"])]);
    assert_eq!(txs[0].request.as_ref().unwrap().host(), Some(&b"x"[..]));
}
