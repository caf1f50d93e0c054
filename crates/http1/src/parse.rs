//! Pure parsing: message heads (via httparse), framing rules, chunk-size lines, and the
//! probes that decide whether bytes look like the start of an HTTP message.

use apiwatch_model::{MessageHead, Span};

/// Methods we accept as the start of a request when probing or resynchronizing.
pub const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"MERGE",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PURGE",
    b"LINK",
    b"UNLINK",
    b"QUERY",
    b"PRI",
    b"BCOPY",
    b"BDELETE",
    b"BMOVE",
    b"BPROPFIND",
    b"BPROPPATCH",
    b"POLL",
    b"X-MS-ENUMATTS",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
];

/// How well `b` matches the start of a message of this side.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Yes,
    /// Too few bytes to tell, but they are a prefix of a message start.
    Maybe,
    No,
}

pub fn probe_request(b: &[u8]) -> Probe {
    // A method token followed by a space. Unknown methods are HTTP too when the line ends
    // in " HTTP/1.x", which the head parser checks; here we only accept known ones.
    for m in METHODS {
        if b.len() > m.len() {
            if b.starts_with(m) && b[m.len()] == b' ' {
                return Probe::Yes;
            }
        } else if m.starts_with(b) {
            return Probe::Maybe;
        }
    }
    if looks_like_extension_method_line(b) {
        return Probe::Yes;
    }
    Probe::No
}

/// An all-uppercase token, a space, and " HTTP/1." on the same line: an extension method.
fn looks_like_extension_method_line(b: &[u8]) -> bool {
    let tok = b.iter().take_while(|c| c.is_ascii_uppercase() || **c == b'-' || **c == b'_').count();
    if tok == 0 || tok > 24 || b.get(tok) != Some(&b' ') {
        return false;
    }
    let line_end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    memfind(&b[..line_end], b" HTTP/1.").is_some()
}

pub fn probe_response(b: &[u8]) -> Probe {
    const P: &[u8] = b"HTTP/1.";
    if b.len() >= P.len() {
        if b[..P.len()].eq_ignore_ascii_case(P) {
            Probe::Yes
        } else {
            Probe::No
        }
    } else if P[..b.len()].eq_ignore_ascii_case(b) {
        Probe::Maybe
    } else {
        Probe::No
    }
}

/// `HTTP/1.x ddd` followed by a space or line end: a status line, strictly.
pub fn strict_status_line(b: &[u8]) -> bool {
    b.len() >= 13
        && b[..7].eq_ignore_ascii_case(b"HTTP/1.")
        && b[7].is_ascii_digit()
        && b[8] == b' '
        && (b'1'..=b'5').contains(&b[9])
        && b[10].is_ascii_digit()
        && b[11].is_ascii_digit()
        && matches!(b[12], b' ' | b'\r' | b'\n')
}

pub fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Outcome of parsing a head.
pub enum Head {
    /// A complete head of this many bytes; the status code for responses.
    Complete(MessageHead, usize, Option<u16>),
    Partial,
    Invalid,
}

/// Stack capacity for header slots; heads with more headers retry on the heap. Every head
/// pays for clearing these (32 bytes a slot), so it is sized for ordinary heads: API
/// clients send under a dozen fields, browsers about twenty.
const STACK_HEADERS: usize = 32;

fn span(s: usize, e: usize) -> Span {
    Span { start: s as u32, end: e.max(s) as u32 }
}

fn span_of(base: &[u8], part: &[u8]) -> Span {
    let b = base.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() || p < b || p + part.len() > b + base.len() {
        return Span::default();
    }
    span(p - b, p - b + part.len())
}

/// RFC 9110 token characters.
pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The first line of `buf` without its line ending, and the offset after the ending.
fn first_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let nl = buf.iter().position(|&c| c == b'\n')?;
    let line = &buf[..nl];
    Some((line.strip_suffix(b"\r").unwrap_or(line), nl + 1))
}

/// `HTTP/` (any case) and a version at `b[i..]` up to the end of `b`: the span of the
/// version. Lenient like servers: `HTTP/1.` and `HTTP/1` are accepted.
fn version_to_end(b: &[u8], i: usize) -> Option<Span> {
    let v = b.get(i..)?;
    if v.len() < 6 || !v[..5].eq_ignore_ascii_case(b"HTTP/") || !v[5].is_ascii_digit() {
        return None;
    }
    if !v[5..].iter().all(|c| c.is_ascii_digit() || *c == b'.') || v.len() > 5 + 7 {
        return None;
    }
    Some(span(i + 5, b.len()))
}

/// `HTTP/d.d` (any case) at the start of a status line: the span of `d.d`, and its end.
fn version_at_start(b: &[u8]) -> Option<(Span, usize)> {
    if b.len() < 6 || !b[..5].eq_ignore_ascii_case(b"HTTP/") || !b[5].is_ascii_digit() {
        return None;
    }
    let end = 5 + b[5..].iter().take_while(|c| c.is_ascii_digit() || **c == b'.').count();
    Some((span(5, end), end))
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Request line: method, target (may be empty or hold spaces, as servers accept), version.
/// The version is the last `HTTP/d.d` of the line; a line without one is not HTTP/1.x.
fn request_line(line: &[u8]) -> Option<[Span; 3]> {
    let m = line.iter().take_while(|&&c| is_tchar(c)).count();
    if m == 0 || !line.get(m).is_some_and(|&c| is_blank(c)) {
        return None;
    }
    let end = line.iter().rposition(|c| !c.is_ascii_whitespace()).map(|p| p + 1)?;
    let line = &line[..end];
    // The version is the last word of the line.
    let vstart = line.iter().rposition(|&c| is_blank(c)).map(|p| p + 1)?;
    let version = version_to_end(line, vstart)?;
    if vstart <= m {
        return None;
    }
    let mut ts = m;
    while ts < vstart && is_blank(line[ts]) {
        ts += 1;
    }
    let mut te = vstart - 1;
    while te > ts && is_blank(line[te - 1]) {
        te -= 1;
    }
    Some([span(0, m), span(ts, te), version])
}

/// Status line: `HTTP/d.d SP code [SP reason]` (the protocol name in any case).
fn status_line(line: &[u8]) -> Option<([Span; 3], u16)> {
    let (version, mut i) = version_at_start(line)?;
    while line.get(i).is_some_and(|&c| is_blank(c)) {
        i += 1;
    }
    let cs = i;
    while i < line.len() && line[i].is_ascii_digit() {
        i += 1;
    }
    if i - cs != 3 || !(i == line.len() || is_blank(line[i])) {
        return None;
    }
    let code = line[cs..i].iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16);
    while i < line.len() && is_blank(line[i]) {
        i += 1;
    }
    Some(([version, span(cs, cs + 3), span(i, line.len())], code))
}

type Fields = (Vec<(Span, Span)>, usize);

fn spans_of(buf: &[u8], hs: &[httparse::Header<'_>]) -> Vec<(Span, Span)> {
    hs.iter().map(|h| (span_of(buf, h.name.as_bytes()), span_of(buf, h.value))).collect()
}

/// Header fields from `buf[from..]` up to the empty line: httparse first; when it refuses a
/// field (characters a server would still take), a lenient line-by-line reading.
/// Ok(None) means more bytes are needed; Err, too many fields.
fn header_block(buf: &[u8], from: usize, max_headers: usize) -> Result<Option<Fields>, ()> {
    let rest = &buf[from..];
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match httparse::parse_headers(rest, &mut stack) {
        Ok(httparse::Status::Complete((n, hs))) => return Ok(Some((spans_of(buf, hs), from + n))),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) if max_headers > STACK_HEADERS => {
            let mut heap = vec![httparse::EMPTY_HEADER; max_headers];
            match httparse::parse_headers(rest, &mut heap) {
                Ok(httparse::Status::Complete((n, hs))) => return Ok(Some((spans_of(buf, hs), from + n))),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(()),
                Err(_) => {}
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(()),
        Err(_) => {}
    }
    lenient_headers(buf, from, max_headers)
}

fn lenient_headers(buf: &[u8], from: usize, max_headers: usize) -> Result<Option<Fields>, ()> {
    let mut out: Vec<(Span, Span)> = Vec::new();
    let mut pos = from;
    loop {
        let Some((line, adv)) = first_line(&buf[pos..]) else { return Ok(None) };
        let start = pos;
        pos += adv;
        if line.is_empty() {
            return Ok(Some((out, pos)));
        }
        if is_blank(line[0]) {
            // Obsolete line folding: the value goes on.
            if let Some(last) = out.last_mut() {
                last.1.end = (start + line.len()) as u32;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else { continue };
        let name = trim(&line[..colon]);
        if name.is_empty() {
            continue;
        }
        if out.len() >= max_headers {
            return Err(());
        }
        let value = trim(&line[colon + 1..]);
        let vspan = if value.is_empty() { span(start + colon + 1, start + colon + 1) } else { span_of(buf, value) };
        out.push((span_of(buf, name), vspan));
    }
}

/// Parse a request head at the start of `buf`. `max_headers` bounds the header count.
pub fn parse_request(buf: &[u8], max_headers: usize) -> Head {
    let Some((line, after)) = first_line(buf) else { return Head::Partial };
    let spans = match request_line(line) {
        Some(s) => s,
        None => match versionless_with_headers(line, &buf[after..]) {
            Some(Some(s)) => s,
            Some(None) => return Head::Partial,
            None => return Head::Invalid,
        },
    };
    match header_block(buf, after, max_headers) {
        Ok(Some((headers, n))) => Head::Complete(MessageHead { raw: buf[..n].to_vec(), line: spans, headers }, n, None),
        Ok(None) => Head::Partial,
        Err(()) => Head::Invalid,
    }
}

/// A request line without a version (`GET /x`) followed by header fields: the client meant
/// HTTP/1.x and lost the version (the version span is left empty, the caller flags it).
/// Some(None): cannot tell yet.
fn versionless_with_headers(line: &[u8], rest: &[u8]) -> Option<Option<[Span; 3]>> {
    let m = line.iter().take_while(|&&c| is_tchar(c)).count();
    if m == 0 || !line.get(m).is_some_and(|&c| is_blank(c)) {
        return None;
    }
    // Nothing after the line: an HTTP/0.9 client sends the line alone and waits.
    if rest.is_empty() {
        return None;
    }
    let Some((next, _)) = first_line(rest) else { return Some(None) };
    let name = next.iter().take_while(|&&c| is_tchar(c)).count();
    if name == 0 || next.get(name) != Some(&b':') {
        return None;
    }
    let ts = m + line[m..].iter().take_while(|&&c| is_blank(c)).count();
    let te = line.iter().rposition(|&c| !is_blank(c)).map(|p| p + 1).unwrap_or(ts).max(ts);
    Some(Some([span(0, m), span(ts, te), Span::default()]))
}

/// Parse a response head at the start of `buf`.
pub fn parse_response(buf: &[u8], max_headers: usize) -> Head {
    let Some((line, after)) = first_line(buf) else { return Head::Partial };
    let Some((spans, code)) = status_line(line) else { return Head::Invalid };
    match header_block(buf, after, max_headers) {
        Ok(Some((headers, n))) => {
            Head::Complete(MessageHead { raw: buf[..n].to_vec(), line: spans, headers }, n, Some(code))
        }
        Ok(None) => Head::Partial,
        Err(()) => Head::Invalid,
    }
}

/// Recognize an HTTP/0.9 simple request line (`GET /path\r\n`): returns its length.
pub fn http09_request(buf: &[u8]) -> Option<usize> {
    let nl = buf.iter().position(|&c| c == b'\n')?;
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let mut parts = line.split(|&c| c == b' ').filter(|p| !p.is_empty());
    let m = parts.next()?;
    let path = parts.next().filter(|p| !p.is_empty())?;
    let known = METHODS.contains(&m) || (m.iter().all(|&c| is_tchar(c)) && matches!(path[0], b'/' | b'*'));
    if parts.next().is_some() || !known || path.len() >= 5 && path[..5].eq_ignore_ascii_case(b"HTTP/") {
        return None;
    }
    Some(nl + 1)
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Framing facts read from headers.
#[derive(Debug, Default)]
pub struct FramingInfo {
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// Transfer-Encoding present but not ending in chunked.
    pub other_te: bool,
    /// Content-Length unparsable (negative, not digits, overflow).
    pub bad_length: bool,
    pub ambiguous: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
}

/// Content-Length values above this are treated as invalid.
pub const MAX_PLAUSIBLE_LENGTH: u64 = 1 << 50;

pub fn framing_info(h: &MessageHead) -> FramingInfo {
    let mut f = FramingInfo::default();
    let mut te_seen = false;
    for (name, value) in h.iter() {
        if name.eq_ignore_ascii_case(b"content-length") {
            // No real body is a petabyte long: a length that large is an attack on the
            // reader (or an overflow), not a length.
            match parse_content_length(value).filter(|&n| n <= MAX_PLAUSIBLE_LENGTH) {
                Some(n) => {
                    if let Some(prev) = f.content_length {
                        if prev != n {
                            f.ambiguous = true;
                        }
                    } else {
                        f.content_length = Some(n);
                    }
                }
                None => f.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            // The last coding decides: chunked must be final to frame the message.
            let last = value.rsplit(|&c| c == b',').next().map(trim).unwrap_or(&[]);
            if last.eq_ignore_ascii_case(b"chunked") {
                f.chunked = true;
                f.other_te = false;
            } else if !trim(value).is_empty() {
                f.other_te = !f.chunked;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            f.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            f.upgrade = true;
        }
    }
    if te_seen && (f.content_length.is_some() || f.bad_length) {
        f.ambiguous = true;
    }
    f
}

pub fn trim(b: &[u8]) -> &[u8] {
    let s = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !c.is_ascii_whitespace()).map(|p| p + 1).unwrap_or(s);
    &b[s..e.max(s)]
}

/// A Content-Length value: digits only (leading zeros allowed), at most u64.
/// A comma-separated list of equal values (as some proxies emit) is accepted.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for part in v.split(|&c| c == b',') {
        let p = trim(part);
        if p.is_empty() || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in p {
            n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        }
        match result {
            Some(r) if r != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Parse a chunk-size line (without CRLF): hex size, optional `;extensions`.
/// None on a malformed or overflowing size.
pub fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = trim(line);
    let end = line.iter().position(|&c| c == b';' || c == b' ' || c == b'\t').unwrap_or(line.len());
    let hex = &line[..end];
    if hex.is_empty() || hex.len() > 16 {
        // More than 16 hex digits cannot fit in 64 bits (leading zeros aside).
        let significant = hex.iter().skip_while(|&&c| c == b'0').count();
        if hex.is_empty() || significant > 16 {
            return None;
        }
    }
    let mut n: u64 = 0;
    for &c in hex {
        let d = (c as char).to_digit(16)? as u64;
        n = n.checked_mul(16)?.checked_add(d)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_rules() {
        assert_eq!(parse_content_length(b"42"), Some(42));
        assert_eq!(parse_content_length(b" 007 "), Some(7));
        assert_eq!(parse_content_length(b"5, 5"), Some(5));
        assert_eq!(parse_content_length(b"5, 6"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"18446744073709551616"), None);
        assert_eq!(parse_content_length(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_content_length(b""), None);
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"A;name=value"), Some(10));
        assert_eq!(parse_chunk_size(b"00000000000000000010"), Some(16));
        assert_eq!(parse_chunk_size(b"10000000000000000"), None);
        assert_eq!(parse_chunk_size(b"zz"), None);
        assert_eq!(parse_chunk_size(b""), None);
    }

    #[test]
    fn probes() {
        assert_eq!(probe_request(b"GET / HTTP/1.1"), Probe::Yes);
        assert_eq!(probe_request(b"PO"), Probe::Maybe);
        assert_eq!(probe_request(b"\x16\x03\x01"), Probe::No);
        assert_eq!(probe_request(b"FOOBAR /x HTTP/1.1\r\n"), Probe::Yes);
        assert_eq!(probe_response(b"HTTP/1.0 200"), Probe::Yes);
        assert_eq!(probe_response(b"HTT"), Probe::Maybe);
        assert_eq!(probe_response(b"SSH-2.0"), Probe::No);
    }

    #[test]
    fn request_head_spans() {
        let Head::Complete(h, n, _) = parse_request(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nBODY", 64) else {
            panic!("complete head expected")
        };
        assert_eq!(n, 32);
        assert_eq!(h.part(0), b"GET");
        assert_eq!(h.part(1), b"/a?b=1");
        assert_eq!(h.part(2), b"1.1");
        assert_eq!(h.header("HOST"), Some(&b"x"[..]));
    }

    #[test]
    fn response_head_spans() {
        let Head::Complete(h, _, code) = parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n", 64) else {
            panic!("complete head expected")
        };
        assert_eq!(code, Some(404));
        assert_eq!(h.part(0), b"1.0");
        assert_eq!(h.part(1), b"404");
        assert_eq!(h.part(2), b"Not Found");
    }

    #[test]
    fn many_headers_fall_back_to_heap() {
        let mut m = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            m.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&m, 128), Head::Complete(..)));
        assert!(matches!(parse_request(&m, 64), Head::Invalid));
    }
}
