//! The `transaction` record: one HTTP request paired with its response.

use crate::json::JsonWriter;
use crate::time::write_rfc3339_micros;
use std::net::IpAddr;

/// A byte range `[start, end)` into a [`MessageHead`]'s raw bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

/// The start line and header fields of one message, stored as one copy of the raw head
/// plus spans into it (two allocations per message, whatever the header count).
#[derive(Debug, Clone, Default)]
pub struct MessageHead {
    pub raw: Vec<u8>,
    /// Request: method, target, version. Response: version, status code, reason.
    pub line: [Span; 3],
    pub headers: Vec<(Span, Span)>,
}

impl MessageHead {
    pub fn get(&self, s: Span) -> &[u8] {
        self.raw.get(s.start as usize..s.end as usize).unwrap_or(&[])
    }

    pub fn part(&self, i: usize) -> &[u8] {
        self.get(self.line[i])
    }

    /// First header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| self.get(*n).eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| self.get(*v))
    }

    /// Every header as (name, value) byte slices, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (self.get(*n), self.get(*v)))
    }
}

/// What we know of a message body.
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// Length of the body as the application sees it: de-chunked and, when the content
    /// coding (gzip, deflate) was decoded, decompressed. Equal to `transfer_len` otherwise.
    pub len: u64,
    /// Length after transfer decoding (de-chunked), before content decoding.
    pub transfer_len: u64,
    /// Bytes the body took on the wire (chunk framing and trailers included).
    pub wire_len: u64,
    /// The first bytes of the body, content-decoded (gzip, deflate) when possible, bounded
    /// by the configured sample size. Kept for analyzers; never rendered.
    pub sample: Vec<u8>,
    /// The body was longer than the sample.
    pub sample_truncated: bool,
    pub chunked: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Message {
    pub head: MessageHead,
    /// Bytes of the start line and headers, terminating blank line included.
    pub head_len: u32,
    pub body: Body,
    /// Time of the first and of the last packet that carried this message.
    pub ts_first: i64,
    pub ts_last: i64,
}

impl Message {
    pub fn content_type(&self) -> Option<&[u8]> {
        self.head.header("content-type")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub msg: Message,
}

impl Request {
    pub fn method(&self) -> &[u8] {
        self.msg.head.part(0)
    }
    pub fn uri(&self) -> &[u8] {
        self.msg.head.part(1)
    }
    pub fn version(&self) -> &[u8] {
        self.msg.head.part(2)
    }
    /// The Host header, or the authority of an absolute-form target.
    pub fn host(&self) -> Option<&[u8]> {
        if let Some(h) = self.msg.head.header("host") {
            return Some(h);
        }
        let uri = self.uri();
        let rest = uri.strip_prefix(b"http://").or_else(|| uri.strip_prefix(b"https://"))?;
        let end = rest.iter().position(|&c| c == b'/' || c == b'?').unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub msg: Message,
    pub status: u16,
    /// Status codes of interim (1xx) responses that came before this one.
    pub interim: Vec<u16>,
}

impl Response {
    pub fn version(&self) -> &[u8] {
        self.msg.head.part(0)
    }
    pub fn reason(&self) -> &[u8] {
        self.msg.head.part(2)
    }
}

/// Things worth knowing about a transaction. Rendered as an array of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(pub u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $text:literal;)*) => {
        impl Flags {
            $($(#[$doc])* pub const $name: Flags = Flags(1 << $bit);)*
            /// Every flag with its rendered name, in rendering order.
            pub const NAMES: &'static [(Flags, &'static str)] = &[$((Flags::$name, $text)),*];
        }
    };
}

flags! {
    /// Bytes of this transaction are missing from the capture (either direction).
    GAP = 0, "gap";
    /// A message ended before its announced length (connection closed or capture ended).
    TRUNCATED = 1, "truncated";
    /// The request got no response before the connection ended.
    NO_RESPONSE = 2, "no_response";
    /// A response whose request was not seen (capture started midstream, or it was lost).
    NO_REQUEST = 3, "no_request";
    /// A message could not be parsed; the stream was resynchronized after it.
    PARSE_ERROR = 4, "parse_error";
    /// The connection was already open when the capture started.
    MIDSTREAM = 5, "midstream";
    /// The connection switched protocol (101, or CONNECT tunnel): what followed was skipped.
    UPGRADE = 6, "upgrade";
    /// Conflicting framing (Content-Length with Transfer-Encoding, or differing duplicate
    /// Content-Length): a request smuggling sign.
    AMBIGUOUS_LENGTH = 7, "ambiguous_length";
    /// Content-Encoding could not be decoded for the body sample.
    DECODE_ERROR = 8, "decode_error";
    /// HTTP/0.9 simple request (no version, no headers).
    HTTP09 = 9, "http09";
    /// A header block was larger than the configured limit.
    OVERSIZED_HEADERS = 10, "oversized_headers";
    /// The request asked for 100-continue.
    EXPECT_CONTINUE = 11, "expect_continue";
    /// Some TCP segments of this transaction had bad checksums.
    BAD_CHECKSUM = 12, "bad_checksum";
}

impl Flags {
    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }
    pub fn set(&mut self, f: Flags) {
        self.0 |= f.0;
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES.iter().filter(move |(f, _)| self.has(*f)).map(|(_, n)| *n)
    }
}

/// One request/response exchange on a connection.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Connection id, unique within a replay (capture index of its first packet).
    pub conn_id: u64,
    /// 1-based position of this transaction in its connection (Zeek's `trans_depth`).
    pub trans_depth: u32,
    /// Requests of the connection still waiting for their response when this one was
    /// sent (HTTP/1.1 pipelining depth; 0 for a request sent after the previous answer).
    pub pipelined: u32,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    /// The connection's Community ID (computed once per connection).
    pub community_id: std::sync::Arc<str>,
    /// Boxed: transactions move through queues and channels; a pointer moves cheaply.
    pub request: Option<Box<Request>>,
    pub response: Option<Box<Response>>,
    pub flags: Flags,
}

/// How records are rendered.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Mask credential-bearing header values. Only for local debugging should this be off.
    pub redact: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { redact: true }
    }
}

/// Headers whose values carry credentials and are masked by default.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
];

impl Transaction {
    /// Time of the transaction: first request packet, else first response packet.
    pub fn ts(&self) -> i64 {
        match (&self.request, &self.response) {
            (Some(r), _) => r.msg.ts_first,
            (None, Some(r)) => r.msg.ts_first,
            (None, None) => 0,
        }
    }

    /// Render as one JSON object (no newline), appended to `out` (valid UTF-8).
    pub fn render(&self, opts: &RenderOptions, out: &mut Vec<u8>) {
        let mut w = JsonWriter::new(out);
        w.begin_object();
        crate::key!(w, "kind");
        w.str("transaction");
        crate::key!(w, "schema_version");
        w.u64(crate::SCHEMA_VERSION as u64);
        crate::key!(w, "ts");
        let ts = self.ts();
        w.str_with(|o| write_rfc3339_micros(o, ts));
        crate::key!(w, "conn_id");
        w.u64(self.conn_id);
        crate::key!(w, "community_id");
        w.str(&self.community_id);
        crate::key!(w, "trans_depth");
        w.u64(self.trans_depth as u64);
        for (k, (ip, port)) in [("client", self.client), ("server", self.server)] {
            w.key(k);
            w.begin_object();
            crate::key!(w, "ip");
            w.str_with(|o| push_ip(o, ip));
            crate::key!(w, "port");
            w.u64(port as u64);
            w.end_object();
        }
        crate::key!(w, "request");
        match &self.request {
            None => w.null(),
            Some(r) => {
                w.begin_object();
                crate::key!(w, "method");
                w.bytes(r.method());
                crate::key!(w, "uri");
                w.bytes(r.uri());
                crate::key!(w, "host");
                match r.host() {
                    Some(h) => w.bytes(h),
                    None => w.null(),
                }
                crate::key!(w, "version");
                w.bytes(r.version());
                message_fields(&mut w, &r.msg, opts);
                w.end_object();
            }
        }
        crate::key!(w, "response");
        match &self.response {
            None => w.null(),
            Some(r) => {
                w.begin_object();
                crate::key!(w, "status");
                w.u64(r.status as u64);
                crate::key!(w, "reason");
                w.bytes(r.reason());
                crate::key!(w, "version");
                w.bytes(r.version());
                if !r.interim.is_empty() {
                    crate::key!(w, "interim_status");
                    w.begin_array();
                    for s in &r.interim {
                        w.u64(*s as u64);
                    }
                    w.end_array();
                }
                message_fields(&mut w, &r.msg, opts);
                w.end_object();
            }
        }
        // Time to first response byte, and to the last one, from the first request byte.
        let (lat, dur) = match (&self.request, &self.response) {
            (Some(q), Some(r)) => (
                Some(((r.msg.ts_first - q.msg.ts_first).max(0) / 1000) as u64),
                Some(((r.msg.ts_last - q.msg.ts_first).max(0) / 1000) as u64),
            ),
            _ => (None, None),
        };
        crate::key!(w, "latency_us");
        match lat {
            Some(v) => w.u64(v),
            None => w.null(),
        }
        crate::key!(w, "duration_us");
        match dur {
            Some(v) => w.u64(v),
            None => w.null(),
        }
        crate::key!(w, "flags");
        w.begin_array();
        for n in self.flags.names() {
            w.str(n);
        }
        w.end_array();
        w.end_object();
    }
}

fn message_fields(w: &mut JsonWriter<'_>, m: &Message, opts: &RenderOptions) {
    crate::key!(w, "headers");
    w.begin_array();
    // Masked values are made in a buffer kept per thread (most requests carry one).
    thread_local! {
        static MASKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    for (name, value) in m.head.iter() {
        w.begin_object();
        crate::key!(w, "name");
        w.bytes(name);
        crate::key!(w, "value");
        if opts.redact && is_secret(name) {
            MASKED.with_borrow_mut(|masked| {
                masked.clear();
                mask_value(name, value, masked);
                w.bytes(masked);
            });
        } else {
            w.bytes(value);
        }
        w.end_object();
    }
    w.end_array();
    crate::key!(w, "content_type");
    match m.content_type() {
        Some(c) => w.bytes(c),
        None => w.null(),
    }
    crate::key!(w, "content_encoding");
    match m.head.header("content-encoding") {
        Some(c) => w.bytes(c),
        None => w.null(),
    }
    crate::key!(w, "chunked");
    w.bool(m.body.chunked);
    crate::key!(w, "header_len");
    w.u64(m.head_len as u64);
    crate::key!(w, "body_len");
    w.u64(m.body.len);
    crate::key!(w, "transfer_len");
    w.u64(m.body.transfer_len);
    crate::key!(w, "wire_len");
    w.u64(m.head_len as u64 + m.body.wire_len);
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                crate::json::push_u64(out, *o as u64);
            }
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

fn is_secret(name: &[u8]) -> bool {
    SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(s, |p| p + 1);
    &b[s..e.max(s)]
}

/// Mask a credential header value, keeping what is safe and useful: the auth scheme,
/// cookie names, Set-Cookie attributes. Works on bytes; the result is `value`'s safe parts
/// plus `***`.
pub fn mask_value(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    // `name=***` for a cookie pair (or `***` for a bare value).
    let pair = |p: &[u8], out: &mut Vec<u8>| match p.iter().position(|&c| c == b'=') {
        Some(i) => {
            out.extend_from_slice(trim(&p[..i]));
            out.extend_from_slice(b"=***");
        }
        None => out.extend_from_slice(b"***"),
    };
    if name.eq_ignore_ascii_case(b"authorization") || name.eq_ignore_ascii_case(b"proxy-authorization") {
        let v = trim(value);
        match v.iter().position(|&c| c == b' ') {
            Some(i) => {
                out.extend_from_slice(&v[..i]);
                out.extend_from_slice(b" ***");
            }
            None => out.extend_from_slice(b"***"),
        }
    } else if name.eq_ignore_ascii_case(b"cookie") {
        for (i, p) in value.split(|&c| c == b';').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            pair(trim(p), out);
        }
    } else if name.eq_ignore_ascii_case(b"set-cookie") {
        let mut parts = value.split(|&c| c == b';');
        if let Some(first) = parts.next() {
            pair(trim(first), out);
        }
        for attr in parts {
            out.push(b';');
            out.extend_from_slice(attr);
        }
    } else {
        out.extend_from_slice(b"***");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_scheme_and_names() {
        let m = |n: &str, v: &str| {
            let mut s = Vec::new();
            mask_value(n.as_bytes(), v.as_bytes(), &mut s);
            String::from_utf8(s).unwrap()
        };
        assert_eq!(m("Authorization", "Bearer eyJhbGciOi.x.y"), "Bearer ***");
        assert_eq!(m("Cookie", "sid=abc; theme=dark"), "sid=***; theme=***");
        assert_eq!(m("Set-Cookie", "sid=abc; Path=/; HttpOnly"), "sid=***; Path=/; HttpOnly");
        assert_eq!(m("X-Api-Key", "k-123"), "***");
    }
}
