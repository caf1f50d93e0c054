//! Incremental HTTP/1.0 and 1.1 over reassembled TCP streams.
//!
//! [`HttpHandler`] implements [`apiwatch_flow::Handler`]: the flow table hands it the two
//! byte streams of each connection, and it produces [`Transaction`]s (a request paired with
//! its response) into [`HttpHandler::out`], in the order they complete.
//!
//! Each direction is a small state machine (`Head` → `Body` → `Head` ...). Heads are
//! parsed with httparse straight from the packet when they fit in it (the common case),
//! else from a per-direction buffer bounded by [`HttpConfig::max_header_bytes`]. Bodies are
//! framed by Content-Length, chunked coding (with trailers) or connection close, and never
//! buffered: only the first [`HttpConfig::body_sample_bytes`] of each are kept, and
//! content-decoded (gzip, deflate) when the transaction is emitted.
//!
//! Incomplete input is "need more" (kept in the state), never an error. A gap inside a body
//! of known length only shortens what we sample; a gap anywhere else, or bytes that do not
//! parse, send the direction into resync: it scans for the next line that starts like a
//! message of that direction. A connection whose first bytes are not HTTP is ignored, and a
//! direction that finds no message start within [`HttpConfig::resync_budget`] bytes stops.
//!
//! Responses pair with requests first-in first-out, which is what HTTP/1.1 pipelining
//! guarantees. Interim (1xx) responses are recorded on the transaction; 101 and a 2xx to
//! CONNECT switch the connection to a tunnel whose bytes are counted and skipped.

mod decode;
pub mod parse;

#[cfg(test)]
mod tests;

use apiwatch_flow::{CloseReason, ConnInfo, Dir, Handler, Role};
use apiwatch_model::{Body, Flags, Message, MessageHead, Request, Response, Span, Transaction};
use parse::{Framing, Head, Probe};
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest start line plus header block accepted.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Bytes of each body kept (decoded) for analyzers. 0 turns sampling off.
    pub body_sample_bytes: usize,
    /// All body samples held at once, across connections, before new samples are skipped.
    pub max_sample_memory: usize,
    /// Requests waiting for a response on one connection (pipelining depth).
    pub max_pending: usize,
    /// Bytes a direction may scan for a message start before giving up on it.
    pub resync_budget: usize,
    /// Bodies being content-decoded (gzip, deflate) at once; beyond, bodies are counted
    /// undecoded.
    pub max_decoders: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: 64 << 10,
            max_headers: 256,
            body_sample_bytes: 64 << 10,
            max_sample_memory: 64 << 20,
            max_pending: 64,
            resync_budget: 1 << 20,
            max_decoders: 4096,
        }
    }
}

/// Counters of the HTTP stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub conns_http: u64,
    /// Connections whose first bytes were not HTTP; ignored.
    pub conns_not_http: u64,
    pub requests: u64,
    pub responses: u64,
    pub interim_responses: u64,
    pub transactions: u64,
    pub no_response: u64,
    pub no_request: u64,
    pub parse_errors: u64,
    pub http09: u64,
    pub resyncs: u64,
    pub resync_bytes_skipped: u64,
    /// Directions that found no message start within the resync budget.
    pub resync_given_up: u64,
    pub gaps_in_body: u64,
    pub gaps_outside_body: u64,
    pub upgrades: u64,
    /// Connections that opened with the HTTP/2 preface (h2c prior knowledge).
    pub h2_prior_knowledge: u64,
    pub tunnel_bytes: u64,
    pub oversized_heads: u64,
    /// Oldest request emitted without response because too many were pending.
    pub pending_overflow: u64,
    pub body_bytes: u64,
    pub sample_bytes_now: u64,
    pub sample_bytes_peak: u64,
    pub samples_skipped_memcap: u64,
    pub decode_errors: u64,
    pub decoders_now: u64,
    /// Bodies left undecoded because `max_decoders` were busy.
    pub decoders_skipped: u64,
}

/// The HTTP stage: a [`Handler`] for the flow table.
pub struct HttpHandler {
    cfg: HttpConfig,
    stats: HttpStats,
    /// Transactions completed since the caller last drained this.
    pub out: Vec<Transaction>,
}

impl HttpHandler {
    pub fn new(cfg: HttpConfig) -> Self {
        HttpHandler { cfg, stats: HttpStats::default(), out: Vec::new() }
    }

    pub fn stats(&self) -> HttpStats {
        self.stats
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    NotHttp,
    Tunnel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer fields, up to the empty line.
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Resync,
    /// Nothing more is read in this direction.
    Done,
}

#[derive(Debug)]
struct Side {
    st: St,
    /// Head bytes (or a chunk/trailer line) spanning packets.
    buf: Vec<u8>,
    /// Depth of the message being received.
    cur: Option<u32>,
    /// Time the current head started.
    head_ts: i64,
    /// Bytes of this stream consumed so far (data and gaps), and where the current head
    /// started.
    offset: u64,
    head_off: u64,
    resync_scanned: usize,
    /// Flags for the next message of this direction (what happened before it).
    carry: Flags,
    messages: u32,
}

impl Side {
    fn new() -> Self {
        Side {
            st: St::Head,
            buf: Vec::new(),
            cur: None,
            head_ts: 0,
            offset: 0,
            head_off: 0,
            resync_scanned: 0,
            carry: Flags::default(),
            messages: 0,
        }
    }
}

#[derive(Debug)]
struct Pending {
    depth: u32,
    req: Option<Message>,
    req_done: bool,
    resp: Option<Message>,
    status: u16,
    interim: Vec<u16>,
    resp_done: bool,
    head_request: bool,
    connect: bool,
    http09: bool,
    flags: Flags,
    /// Offset in the client's stream where the request started.
    req_start: Option<u64>,
    /// Earlier requests still unanswered when this one started.
    pipelined: u32,
    /// Content decoders of the request and response bodies.
    /// Boxed: decoder state is large and pending entries move through a queue.
    dec: [Option<Box<decode::BodyDecoder>>; 2],
}

impl Pending {
    fn new(depth: u32) -> Self {
        Pending {
            depth,
            req: None,
            req_done: false,
            resp: None,
            status: 0,
            interim: Vec::new(),
            resp_done: false,
            head_request: false,
            connect: false,
            http09: false,
            flags: Flags::default(),
            req_start: None,
            pipelined: 0,
            dec: [None, None],
        }
    }

    fn msg(&mut self, side: usize) -> Option<&mut Message> {
        if side == REQ {
            self.req.as_mut()
        } else {
            self.resp.as_mut()
        }
    }
}

const REQ: usize = 0;
const RESP: usize = 1;

/// Per-connection HTTP state, owned by the flow table.
#[derive(Debug)]
pub struct HttpConn {
    mode: Mode,
    sides: [Side; 2],
    pending: VecDeque<Pending>,
    next_depth: u32,
    midstream: bool,
    /// Offset of the opposite stream acknowledged by the segment being parsed.
    peer_acked: Option<u64>,
    community_id: std::sync::Arc<str>,
}

fn side_of(dir: Dir) -> usize {
    match dir {
        Dir::ToServer => REQ,
        Dir::ToClient => RESP,
    }
}

impl Handler for HttpHandler {
    type Conn = HttpConn;

    fn open(&mut self, info: &ConnInfo, _ts: i64) -> HttpConn {
        HttpConn {
            mode: Mode::Http,
            sides: [Side::new(), Side::new()],
            pending: VecDeque::new(),
            next_depth: 1,
            midstream: info.midstream,
            peer_acked: None,
            community_id: apiwatch_model::community_id(info.client.0, info.client.1, info.server.0, info.server.1)
                .into(),
        }
    }

    fn data(&mut self, c: &mut HttpConn, info: &ConnInfo, dir: Dir, data: &[u8], ts: i64, peer_acked: Option<u64>) {
        let s = side_of(dir);
        c.peer_acked = peer_acked;
        let mut rest = data;
        while !rest.is_empty() {
            match c.mode {
                Mode::Http => {}
                Mode::Tunnel => {
                    self.stats.tunnel_bytes += rest.len() as u64;
                    return;
                }
                Mode::NotHttp => return,
            }
            let used = match c.sides[s].st {
                St::Head => self.head(c, info, s, rest, ts),
                St::Length(_) | St::Chunked(_) | St::UntilClose => self.body(c, info, s, rest, ts),
                St::Resync => self.resync(c, s, rest),
                St::Done => return,
            };
            let used = used.min(rest.len());
            c.sides[s].offset += used as u64;
            rest = &rest[used..];
        }
    }

    fn gap(&mut self, c: &mut HttpConn, info: &ConnInfo, dir: Dir, len: u64, _ts: i64) {
        if c.mode != Mode::Http {
            return;
        }
        let s = side_of(dir);
        let st = c.sides[s].st;
        let in_body = |rem: u64| len <= rem;
        match st {
            St::Length(rem) if in_body(rem) => {
                self.body_gap(c, s, len);
                let left = rem - len;
                c.sides[s].st = St::Length(left);
                if left == 0 {
                    self.finish(c, info, s, false);
                }
            }
            St::Chunked(Chunk::Data(rem)) if in_body(rem) => {
                self.body_gap(c, s, len);
                c.sides[s].st = St::Chunked(if rem == len { Chunk::DataEnd } else { Chunk::Data(rem - len) });
            }
            St::UntilClose => self.body_gap(c, s, len),
            St::Length(_) | St::Chunked(_) => {
                // The message ends inside the gap; what follows it is lost too.
                self.body_gap(c, s, 0);
                self.finish(c, info, s, true);
                self.enter_resync(c, s, Flags::GAP);
            }
            St::Head => {
                self.stats.gaps_outside_body += 1;
                self.enter_resync(c, s, Flags::GAP);
            }
            St::Resync | St::Done => {}
        }
        c.sides[s].offset += len;
    }

    fn fin(&mut self, c: &mut HttpConn, info: &ConnInfo, dir: Dir, _ts: i64) {
        let s = side_of(dir);
        self.end_side(c, info, s);
        self.try_emit(c, info);
    }

    fn close(&mut self, mut c: HttpConn, info: &ConnInfo, _why: CloseReason, _ts: i64) {
        self.end_side(&mut c, info, REQ);
        self.end_side(&mut c, info, RESP);
        while let Some(p) = c.pending.pop_front() {
            self.emit(p, info, &c.community_id);
        }
        if c.mode != Mode::NotHttp && (c.sides[REQ].messages > 0 || c.sides[RESP].messages > 0) {
            self.stats.conns_http += 1;
        } else {
            self.stats.conns_not_http += 1;
        }
    }

    fn sniff(&self, payload: &[u8]) -> Option<Role> {
        if parse::probe_response(payload) == Probe::Yes {
            Some(Role::Server)
        } else if parse::probe_request(payload) == Probe::Yes {
            Some(Role::Client)
        } else {
            None
        }
    }
}

impl HttpHandler {
    /// Parse (or keep accumulating) a head. Returns bytes consumed.
    fn head(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize, data: &[u8], ts: i64) -> usize {
        let side = &mut c.sides[s];
        if side.buf.is_empty() {
            // Blank lines between messages are allowed (and common after POST bodies).
            let blank = data.iter().take_while(|&&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t')).count();
            if blank > 0 {
                return blank;
            }
            let probe = if s == REQ { parse::probe_request(data) } else { parse::probe_response(data) };
            if probe == Probe::No {
                if s == REQ && self.try_http09(c, data, ts) {
                    return parse::http09_request(data).unwrap_or(data.len());
                }
                if s == RESP && self.http09_response(c, info, ts) {
                    return 0;
                }
                let first = c.sides[REQ].messages == 0 && c.sides[RESP].messages == 0;
                if first && !c.midstream && s == RESP {
                    // The server's first bytes are not HTTP (TLS, SSH, a database...): the
                    // connection is something else. Garbage from the client alone does
                    // not decide it: servers answer malformed requests with HTTP errors.
                    c.mode = Mode::NotHttp;
                    return data.len();
                }
                if c.midstream && c.sides[s].messages == 0 {
                    // Picked up in the middle of a message: skipping to the next one is
                    // expected, not an error (the transaction is flagged midstream).
                    self.enter_resync(c, s, Flags::default());
                } else {
                    self.stats.parse_errors += 1;
                    self.enter_resync(c, s, Flags::PARSE_ERROR);
                }
                // Resync from the next byte: this position was just tried.
                return 1;
            }
            c.sides[s].head_ts = ts;
            c.sides[s].head_off = c.sides[s].offset;
            let parsed = self.parse_head(s, data);
            match parsed {
                Head::Complete(h, n, code) => {
                    self.on_head(c, info, s, h, n, code, ts);
                    n
                }
                Head::Partial => {
                    if data.len() >= self.cfg.max_header_bytes {
                        self.oversized(c, s);
                        return data.len();
                    }
                    c.sides[s].buf.extend_from_slice(data);
                    data.len()
                }
                Head::Invalid => {
                    if s == REQ && self.try_http09(c, data, ts) {
                        return parse::http09_request(data).unwrap_or(data.len());
                    }
                    self.stats.parse_errors += 1;
                    self.enter_resync(c, s, Flags::PARSE_ERROR);
                    // Resync from the next byte: this position was just tried.
                    1
                }
            }
        } else {
            let before = side.buf.len();
            let take = data.len().min(self.cfg.max_header_bytes.saturating_sub(before).max(1));
            side.buf.extend_from_slice(&data[..take]);
            let buf = std::mem::take(&mut c.sides[s].buf);
            let parsed = self.parse_head(s, &buf);
            match parsed {
                Head::Complete(h, n, code) => {
                    let head_ts = c.sides[s].head_ts;
                    self.on_head(c, info, s, h, n, code, head_ts);
                    if let Some(m) = c.cur_msg(s) {
                        m.ts_last = ts;
                    }
                    let mut spare = buf;
                    spare.clear();
                    c.sides[s].buf = spare;
                    n.saturating_sub(before).max(1).min(take)
                }
                Head::Partial => {
                    c.sides[s].buf = buf;
                    if c.sides[s].buf.len() >= self.cfg.max_header_bytes {
                        self.oversized(c, s);
                    }
                    take
                }
                Head::Invalid => {
                    if s == REQ && self.try_http09(c, &buf, c.sides[s].head_ts) {
                        let used = parse::http09_request(&buf).unwrap_or(buf.len());
                        return used.saturating_sub(before).clamp(1, take);
                    }
                    self.stats.parse_errors += 1;
                    self.enter_resync(c, s, Flags::PARSE_ERROR);
                    take
                }
            }
        }
    }

    fn parse_head(&self, s: usize, b: &[u8]) -> Head {
        if s == REQ {
            parse::parse_request(b, self.cfg.max_headers)
        } else {
            parse::parse_response(b, self.cfg.max_headers)
        }
    }

    fn oversized(&mut self, c: &mut HttpConn, s: usize) {
        self.stats.oversized_heads += 1;
        c.sides[s].buf.clear();
        self.enter_resync(c, s, Flags::OVERSIZED_HEADERS);
    }

    fn enter_resync(&mut self, c: &mut HttpConn, s: usize, why: Flags) {
        let side = &mut c.sides[s];
        side.buf.clear();
        side.carry.set(why);
        side.cur = None;
        if side.st != St::Done {
            side.st = St::Resync;
        }
    }

    /// Scan for the next message start. Returns bytes consumed (up to the start).
    ///
    /// Candidates are the start of the chunk (after a gap, message starts tend to align
    /// with segments), the start of every line, and on the response side a strict status
    /// line (`HTTP/1.x ddd`) anywhere: a response head often follows a body with no newline.
    fn resync(&mut self, c: &mut HttpConn, s: usize, data: &[u8]) -> usize {
        let side = &mut c.sides[s];
        if side.resync_scanned > self.cfg.resync_budget {
            side.st = St::Done;
            self.stats.resync_given_up += 1;
            return data.len();
        }
        for p in 0..data.len() {
            let candidate = p == 0
                || data[p - 1] == b'\n'
                || (s == RESP && data[p] == b'H' && parse::strict_status_line(&data[p..]));
            if !candidate {
                continue;
            }
            let probe = if s == REQ { parse::probe_request(&data[p..]) } else { parse::probe_response(&data[p..]) };
            match probe {
                Probe::Yes => {
                    side.st = St::Head;
                    side.resync_scanned = 0;
                    self.stats.resyncs += 1;
                    self.stats.resync_bytes_skipped += p as u64;
                    return p;
                }
                Probe::Maybe => {
                    // A possible start cut by the packet end: keep it and try it as a head.
                    side.st = St::Head;
                    side.buf.extend_from_slice(&data[p..]);
                    self.stats.resyncs += 1;
                    self.stats.resync_bytes_skipped += p as u64;
                    return data.len();
                }
                Probe::No => {}
            }
        }
        side.resync_scanned += data.len();
        self.stats.resync_bytes_skipped += data.len() as u64;
        data.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_head(
        &mut self,
        c: &mut HttpConn,
        info: &ConnInfo,
        s: usize,
        head: MessageHead,
        n: usize,
        code: Option<u16>,
        ts: i64,
    ) {
        let fi = parse::framing_info(&head);
        let msg = Message { head, head_len: n as u32, body: Body::default(), ts_first: ts, ts_last: ts };
        let carry = std::mem::take(&mut c.sides[s].carry);
        c.sides[s].messages += 1;
        let mut flags = carry;
        if fi.ambiguous {
            flags.set(Flags::AMBIGUOUS_LENGTH);
        }
        if s == REQ {
            self.stats.requests += 1;
            if msg.head.line[2] == Span::default() {
                // The request line had no version (see parse::versionless_with_headers).
                flags.set(Flags::PARSE_ERROR);
                self.stats.parse_errors += 1;
            }
            if fi.expect_continue {
                flags.set(Flags::EXPECT_CONTINUE);
            }
            if fi.bad_length && !fi.chunked {
                flags.set(Flags::PARSE_ERROR);
                self.stats.parse_errors += 1;
            }
            let method = msg.head.part(0);
            if method == b"PRI" && msg.head.part(1) == b"*" && msg.head.part(2) == b"2.0" {
                // The HTTP/2 connection preface (h2c with prior knowledge): not HTTP/1.x
                // from here on. Counted and skipped like an upgrade.
                self.stats.h2_prior_knowledge += 1;
                self.stats.upgrades += 1;
                c.mode = Mode::Tunnel;
                return;
            }
            let head_request = method.eq_ignore_ascii_case(b"HEAD");
            let connect = method.eq_ignore_ascii_case(b"CONNECT");
            let framing = if fi.chunked {
                Framing::Chunked
            } else {
                match fi.content_length {
                    Some(0) | None => Framing::None,
                    Some(n) => Framing::Length(n),
                }
            };
            let mut p = self.new_pending(c);
            p.req_start = Some(c.sides[REQ].head_off);
            p.req = Some(msg);
            p.head_request = head_request;
            p.connect = connect;
            p.flags.set(flags);
            p.pipelined = c.pending.iter().filter(|q| !q.resp_done).count() as u32;
            let depth = p.depth;
            if c.pending.len() >= self.cfg.max_pending {
                self.stats.pending_overflow += 1;
                if let Some(old) = c.pending.pop_front() {
                    self.emit(old, info, &c.community_id);
                }
            }
            c.pending.push_back(p);
            self.start_body(c, info, s, depth, framing, fi.chunked);
        } else {
            let code = code.unwrap_or(0);
            self.stats.responses += 1;
            if flags.has(Flags::GAP) && self.skip_lost_responses(c) {
                // Paired by acknowledgment: this pairing is sound, the loss is recorded on
                // the requests whose responses were lost.
                flags = Flags(flags.0 & !Flags::GAP.0);
            }
            let idx = match c.pending.iter().position(|p| p.resp.is_none() && !p.resp_done) {
                Some(i) => i,
                None => {
                    let mut p = self.new_pending(c);
                    p.flags.set(Flags::NO_REQUEST);
                    // An unparsable (or oversized) request that this answers: say why it
                    // is missing.
                    if matches!(c.sides[REQ].st, St::Resync | St::Done) {
                        p.flags.set(std::mem::take(&mut c.sides[REQ].carry));
                    }
                    self.stats.no_request += 1;
                    c.pending.push_back(p);
                    c.pending.len() - 1
                }
            };
            let p = &mut c.pending[idx];
            if (100..200).contains(&code) && code != 101 {
                p.interim.push(code);
                self.stats.interim_responses += 1;
                return;
            }
            p.flags.set(flags);
            let tunnel = code == 101 || (p.connect && (200..300).contains(&code));
            let no_body = p.head_request || code == 204 || code == 304 || tunnel || (100..200).contains(&code);
            if fi.bad_length && !fi.chunked && !no_body {
                p.flags.set(Flags::PARSE_ERROR);
                self.stats.parse_errors += 1;
            }
            if tunnel {
                p.flags.set(Flags::UPGRADE);
            }
            let framing = if no_body {
                Framing::None
            } else if fi.chunked {
                Framing::Chunked
            } else if fi.other_te {
                Framing::UntilClose
            } else {
                match fi.content_length {
                    Some(0) => Framing::None,
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilClose,
                }
            };
            p.resp = Some(msg);
            p.status = code;
            let depth = p.depth;
            self.start_body(c, info, s, depth, framing, fi.chunked && !no_body);
            if tunnel {
                self.stats.upgrades += 1;
                c.mode = Mode::Tunnel;
                self.try_emit(c, info);
            }
        }
    }

    /// After response bytes were lost, find which request the next response answers: the
    /// server had read the client's stream up to `peer_acked` when it sent it, so it answers
    /// the latest waiting request that started before that point (exact for requests that
    /// are not pipelined). Requests skipped over lost their responses in the gap: they are
    /// closed as `no_response` + `gap`. Returns whether the acknowledgment decided.
    fn skip_lost_responses(&mut self, c: &mut HttpConn) -> bool {
        let Some(acked) = c.peer_acked else { return false };
        let waiting: Vec<usize> =
            (0..c.pending.len()).filter(|&i| c.pending[i].resp.is_none() && !c.pending[i].resp_done).collect();
        let Some(&answered) = waiting.iter().rev().find(|&&i| c.pending[i].req_start.is_some_and(|st| st < acked))
        else {
            return false;
        };
        for &i in waiting.iter().take_while(|&&i| i < answered) {
            let p = &mut c.pending[i];
            p.resp_done = true;
            p.flags.set(Flags::GAP);
        }
        true
    }

    fn new_pending(&mut self, c: &mut HttpConn) -> Pending {
        let mut p = Pending::new(c.next_depth);
        if c.midstream && c.next_depth == 1 {
            p.flags.set(Flags::MIDSTREAM);
        }
        c.next_depth += 1;
        p
    }

    fn start_body(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize, depth: u32, framing: Framing, chunked: bool) {
        c.sides[s].cur = Some(depth);
        let max_decoders = self.cfg.max_decoders as u64;
        let cap = self.cfg.body_sample_bytes;
        if let Some(p) = c.cur_pending(s) {
            let coding = p.msg(s).and_then(|m| {
                m.body.chunked = chunked;
                m.head.header("content-encoding").and_then(decode::supported)
            });
            if let (Some(gzip), false) = (coding, framing == Framing::None) {
                if self.stats.decoders_now < max_decoders {
                    p.dec[s] = Some(Box::new(decode::BodyDecoder::new(gzip, cap)));
                    self.stats.decoders_now += 1;
                } else {
                    self.stats.decoders_skipped += 1;
                }
            }
        }
        c.sides[s].st = match framing {
            Framing::None => {
                self.finish(c, info, s, false);
                return;
            }
            Framing::Length(n) => St::Length(n),
            Framing::Chunked => St::Chunked(Chunk::Size),
            Framing::UntilClose => St::UntilClose,
        };
    }

    /// HTTP/0.9: a bare `GET /path` line. Returns whether one was taken.
    fn try_http09(&mut self, c: &mut HttpConn, data: &[u8], ts: i64) -> bool {
        let Some(n) = parse::http09_request(data) else { return false };
        let line = &data[..n];
        let mut raw = line.to_vec();
        let text_end = line.iter().rposition(|&b| b != b'\r' && b != b'\n').map(|p| p + 1).unwrap_or(0);
        let mut spans = [Span::default(); 3];
        let mut i = 0;
        let mut k = 0;
        while i < text_end && k < 2 {
            while i < text_end && line[i] == b' ' {
                i += 1;
            }
            let start = i;
            while i < text_end && line[i] != b' ' {
                i += 1;
            }
            spans[k] = Span { start: start as u32, end: i as u32 };
            k += 1;
        }
        let vstart = raw.len() as u32;
        raw.extend_from_slice(b"0.9");
        spans[2] = Span { start: vstart, end: vstart + 3 };
        let head = MessageHead { raw, line: spans, headers: Vec::new() };
        self.stats.requests += 1;
        self.stats.http09 += 1;
        c.sides[REQ].messages += 1;
        let mut p = self.new_pending(c);
        p.flags.set(Flags::HTTP09);
        p.flags.set(std::mem::take(&mut c.sides[REQ].carry));
        p.http09 = true;
        p.req = Some(Message { head, head_len: n as u32, body: Body::default(), ts_first: ts, ts_last: ts });
        p.req_done = true;
        c.pending.push_back(p);
        true
    }

    /// The answer to an HTTP/0.9 request is the raw bytes up to the close.
    fn http09_response(&mut self, c: &mut HttpConn, info: &ConnInfo, ts: i64) -> bool {
        let Some(idx) = c.pending.iter().position(|p| p.resp.is_none() && !p.resp_done) else { return false };
        if !c.pending[idx].http09 {
            return false;
        }
        let p = &mut c.pending[idx];
        p.resp = Some(Message { ts_first: ts, ts_last: ts, ..Message::default() });
        let depth = p.depth;
        self.stats.responses += 1;
        c.sides[RESP].messages += 1;
        self.start_body(c, info, RESP, depth, Framing::UntilClose, false);
        true
    }

    fn body(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize, data: &[u8], ts: i64) -> usize {
        let st = c.sides[s].st;
        let (used, body_bytes) = match st {
            St::Length(rem) => {
                let take = (rem.min(data.len() as u64)) as usize;
                self.append_body(c, s, &data[..take], ts);
                let left = rem - take as u64;
                c.sides[s].st = St::Length(left);
                if left == 0 {
                    self.add_wire(c, s, take as u64);
                    self.finish(c, info, s, false);
                    return take;
                }
                (take, true)
            }
            St::UntilClose => {
                self.append_body(c, s, data, ts);
                (data.len(), true)
            }
            St::Chunked(ck) => (self.chunked(c, info, s, ck, data, ts), false),
            _ => (0, false),
        };
        if body_bytes {
            self.add_wire(c, s, used as u64);
        }
        used
    }

    fn add_wire(&mut self, c: &mut HttpConn, s: usize, n: u64) {
        if let Some(m) = c.cur_msg(s) {
            m.body.wire_len += n;
        }
    }

    fn chunked(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize, ck: Chunk, data: &[u8], ts: i64) -> usize {
        match ck {
            Chunk::Data(rem) => {
                let take = (rem.min(data.len() as u64)) as usize;
                self.append_body(c, s, &data[..take], ts);
                self.add_wire(c, s, take as u64);
                let left = rem - take as u64;
                c.sides[s].st = St::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                take
            }
            Chunk::DataEnd => {
                // Expect CRLF; be lenient with a bare LF, and with nothing at all.
                let n = match data {
                    [b'\r', b'\n', ..] => 2,
                    [b'\n', ..] => 1,
                    [b'\r'] => 1,
                    _ => 0,
                };
                self.add_wire(c, s, n as u64);
                if n == 1 && data[0] == b'\r' {
                    // The LF is in the next packet: stay, consuming it then.
                    return 1;
                }
                c.sides[s].st = St::Chunked(Chunk::Size);
                n
            }
            Chunk::Size | Chunk::Trailer => {
                let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                    if c.sides[s].buf.len() + data.len() > 4096 {
                        // A chunk line this long is an attack or garbage.
                        self.stats.parse_errors += 1;
                        self.finish(c, info, s, true);
                        self.enter_resync(c, s, Flags::PARSE_ERROR);
                        return data.len();
                    }
                    c.sides[s].buf.extend_from_slice(data);
                    self.add_wire(c, s, data.len() as u64);
                    return data.len();
                };
                self.add_wire(c, s, nl as u64 + 1);
                let mut line = std::mem::take(&mut c.sides[s].buf);
                line.extend_from_slice(&data[..nl]);
                let result = if ck == Chunk::Size {
                    match parse::parse_chunk_size(&line) {
                        Some(0) => {
                            c.sides[s].st = St::Chunked(Chunk::Trailer);
                            Ok(())
                        }
                        Some(n) => {
                            c.sides[s].st = St::Chunked(Chunk::Data(n));
                            Ok(())
                        }
                        None => Err(()),
                    }
                } else {
                    if parse::trim(&line).is_empty() {
                        self.finish(c, info, s, false);
                    }
                    Ok(())
                };
                line.clear();
                if c.sides[s].buf.capacity() == 0 {
                    c.sides[s].buf = line;
                }
                if result.is_err() {
                    self.stats.parse_errors += 1;
                    if let Some(p) = c.cur_pending(s) {
                        p.flags.set(Flags::PARSE_ERROR);
                    }
                    self.finish(c, info, s, true);
                    self.enter_resync(c, s, Flags::default());
                }
                nl + 1
            }
        }
    }

    fn append_body(&mut self, c: &mut HttpConn, s: usize, bytes: &[u8], ts: i64) {
        self.stats.body_bytes += bytes.len() as u64;
        let cap = self.cfg.body_sample_bytes;
        let mem_ok = self.stats.sample_bytes_now < self.cfg.max_sample_memory as u64;
        let Some(p) = c.cur_pending(s) else { return };
        if let Some(d) = p.dec[s].as_mut() {
            d.write(bytes);
            if let Some(m) = p.msg(s) {
                m.body.transfer_len += bytes.len() as u64;
                m.ts_last = ts;
            }
            return;
        }
        let Some(m) = p.msg(s) else { return };
        m.body.transfer_len += bytes.len() as u64;
        m.ts_last = ts;
        let room = cap.saturating_sub(m.body.sample.len());
        if room == 0 || bytes.is_empty() {
            if !bytes.is_empty() {
                m.body.sample_truncated = true;
            }
            return;
        }
        if !mem_ok {
            m.body.sample_truncated = true;
            self.stats.samples_skipped_memcap += 1;
            return;
        }
        let take = room.min(bytes.len());
        m.body.sample.extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            m.body.sample_truncated = true;
        }
        self.stats.sample_bytes_now += take as u64;
        self.stats.sample_bytes_peak = self.stats.sample_bytes_peak.max(self.stats.sample_bytes_now);
    }

    /// A gap of `len` bytes inside the current body.
    fn body_gap(&mut self, c: &mut HttpConn, s: usize, len: u64) {
        self.stats.gaps_in_body += 1;
        if let Some(p) = c.cur_pending(s) {
            p.flags.set(Flags::GAP);
        }
        if let Some(p) = c.cur_pending(s) {
            if let Some(d) = p.dec[s].as_mut() {
                // The compressed stream cannot go on past missing bytes.
                d.failed = true;
            }
        }
        if let Some(m) = c.cur_msg(s) {
            m.body.transfer_len += len;
            m.body.wire_len += len;
            m.body.sample_truncated = true;
        }
    }

    /// The current message of direction `s` is complete (or cut short: `truncated`).
    fn finish(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize, truncated: bool) {
        let side = &mut c.sides[s];
        let cur = side.cur.take();
        if side.st != St::Done && side.st != St::Resync {
            side.st = St::Head;
        }
        if let Some(d) = cur {
            if let Some(p) = c.pending.iter_mut().find(|p| p.depth == d) {
                if s == REQ {
                    p.req_done = true;
                } else {
                    p.resp_done = true;
                }
                if truncated {
                    p.flags.set(Flags::TRUNCATED);
                }
            }
        }
        self.try_emit(c, info);
    }

    /// Direction `s` ended (FIN or close): close its current message.
    fn end_side(&mut self, c: &mut HttpConn, info: &ConnInfo, s: usize) {
        match c.sides[s].st {
            St::UntilClose => self.finish(c, info, s, false),
            St::Length(_) | St::Chunked(_) => self.finish(c, info, s, true),
            St::Head if !c.sides[s].buf.is_empty() => {
                // A head cut off by the end of the stream. A request whose line and fields
                // so far parse is still reported (truncated): slow or abandoned requests
                // are worth seeing.
                let mut buf = std::mem::take(&mut c.sides[s].buf);
                buf.extend_from_slice(b"\r\n\r\n");
                match (s, parse::parse_request(&buf, self.cfg.max_headers)) {
                    (REQ, Head::Complete(mut head, n, _)) => {
                        head.raw.truncate(n - 4);
                        let ts = c.sides[REQ].head_ts;
                        let msg = Message {
                            head,
                            head_len: (n - 4) as u32,
                            body: Body::default(),
                            ts_first: ts,
                            ts_last: ts,
                        };
                        let mut p = self.new_pending(c);
                        p.req_start = Some(c.sides[REQ].head_off);
                        p.req = Some(msg);
                        p.req_done = true;
                        p.flags.set(Flags::TRUNCATED);
                        p.flags.set(std::mem::take(&mut c.sides[REQ].carry));
                        self.stats.requests += 1;
                        c.sides[REQ].messages += 1;
                        c.pending.push_back(p);
                    }
                    _ => self.stats.parse_errors += 1,
                }
            }
            _ => {}
        }
        c.sides[s].st = St::Done;
    }

    /// Emit, in order, every transaction at the front that is complete.
    fn try_emit(&mut self, c: &mut HttpConn, info: &ConnInfo) {
        while let Some(front) = c.pending.front() {
            let req_ready = front.req.is_none() || front.req_done;
            if !(front.resp_done && req_ready) {
                break;
            }
            let p = c.pending.pop_front().expect("front exists");
            self.emit(p, info, &c.community_id);
        }
    }

    fn emit(&mut self, mut p: Pending, info: &ConnInfo, community_id: &std::sync::Arc<str>) {
        if p.resp.is_none() {
            p.flags.set(Flags::NO_RESPONSE);
            self.stats.no_response += 1;
        }
        if p.req.is_some() && !p.req_done || p.resp.is_some() && !p.resp_done {
            p.flags.set(Flags::TRUNCATED);
        }
        let cap = self.cfg.body_sample_bytes;
        let gap = p.flags.has(Flags::GAP);
        let [dq, dr] = std::mem::take(&mut p.dec);
        for (m, dec) in [(p.req.as_mut(), dq), (p.resp.as_mut(), dr)] {
            let Some(m) = m else { continue };
            self.stats.sample_bytes_now = self.stats.sample_bytes_now.saturating_sub(m.body.sample.len() as u64);
            m.body.len = m.body.transfer_len;
            let Some(d) = dec else { continue };
            self.stats.decoders_now = self.stats.decoders_now.saturating_sub(1);
            let (sink, failed) = d.finish();
            if failed {
                m.body.sample_truncated = true;
                if !gap {
                    self.stats.decode_errors += 1;
                    p.flags.set(Flags::DECODE_ERROR);
                }
            } else {
                m.body.len = sink.total;
                m.body.sample_truncated = sink.total > cap as u64;
                m.body.sample = sink.sample;
            }
        }
        self.stats.transactions += 1;
        self.out.push(Transaction {
            conn_id: info.id,
            trans_depth: p.depth,
            pipelined: p.pipelined,
            client: info.client,
            server: info.server,
            community_id: community_id.clone(),
            request: p.req.map(|msg| Box::new(Request { msg })),
            response: p.resp.map(|msg| Box::new(Response { msg, status: p.status, interim: p.interim })),
            flags: p.flags,
        });
    }
}

impl HttpConn {
    fn cur_pending(&mut self, s: usize) -> Option<&mut Pending> {
        let d = self.sides[s].cur?;
        self.pending.iter_mut().find(|p| p.depth == d)
    }

    fn cur_msg(&mut self, s: usize) -> Option<&mut Message> {
        self.cur_pending(s)?.msg(s)
    }
}
