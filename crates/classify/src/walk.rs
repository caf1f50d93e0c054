//! Bodies by content type: JSON (field paths), form-urlencoded, multipart text parts, XML
//! text, plain text. Every walker is tolerant: malformed input ends the walk, keeping what
//! was found before it; nothing here panics on any input.

use crate::detect::{Classifier, Context};
use crate::types::{Finding, Location};
use std::borrow::Cow;
use std::cell::Cell;

/// Deepest JSON nesting followed; deeper values are still scanned, under the path cut there.
const MAX_DEPTH: usize = 32;

impl Classifier {
    /// Scan a body according to its media type (`application/json`, ...). Unknown types are
    /// scanned as text if they look like text.
    pub fn scan_body(&self, loc: Location, content_type: Option<&str>, body: &[u8], out: &mut Vec<Finding>) {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let media = ct.split(';').next().unwrap_or("").trim();
        let first = body.iter().find(|c| !c.is_ascii_whitespace()).copied();
        if media.ends_with("json") || media.ends_with("+json") || media.is_empty() && matches!(first, Some(b'{' | b'['))
        {
            self.scan_json(loc, body, out);
        } else if media == "application/x-www-form-urlencoded" {
            self.scan_form(loc, body, out);
        } else if media.starts_with("multipart/") {
            // The boundary is case-sensitive: take it from the header as sent.
            let raw = content_type.unwrap_or("");
            if let Some(b) = raw.split(';').find_map(|p| {
                let p = p.trim();
                p.get(..9).filter(|k| k.eq_ignore_ascii_case("boundary=")).map(|_| &p[9..])
            }) {
                let b = b.trim_matches('"').to_string();
                self.scan_multipart(loc, body, &b, out);
            }
        } else if media.ends_with("xml") {
            self.scan_xml(loc, body, out);
        } else if media.starts_with("text/") || media.is_empty() && looks_textual(body) {
            self.scan_text(loc, "", body, out);
        }
    }

    /// Free text: one value with no name.
    pub fn scan_text(&self, loc: Location, field: &str, body: &[u8], out: &mut Vec<Finding>) {
        let text = String::from_utf8_lossy(body);
        self.scan_value(loc, field, field, &text, out);
    }

    /// `a=1&b=2` (query strings and form bodies): each value under its decoded name.
    pub fn scan_form(&self, loc: Location, body: &[u8], out: &mut Vec<Finding>) {
        for pair in body.split(|&c| c == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&c| c == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let k = percent_decode(k);
            let v = percent_decode(v);
            self.scan_value(loc, &k, &k, &v, out);
        }
    }

    /// `multipart/form-data`: text parts (no content type, `text/*`, JSON) under their name.
    pub fn scan_multipart(&self, loc: Location, body: &[u8], boundary: &str, out: &mut Vec<Finding>) {
        let delim = format!("--{boundary}");
        let d = delim.as_bytes();
        let mut parts = Vec::new();
        let mut i = 0;
        while let Some(p) = find(&body[i..], d) {
            parts.push(i + p + d.len());
            i += p + d.len();
        }
        for w in parts.windows(2) {
            let part = &body[w[0]..w[1] - d.len()];
            let Some(h) = find(part, b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&part[..h]).to_ascii_lowercase();
            let mut content = &part[h + 4..];
            if content.ends_with(b"\r\n") {
                content = &content[..content.len() - 2];
            }
            let name = head.split("name=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string();
            let ctype = head.lines().find_map(|l| l.trim().strip_prefix("content-type:")).map(str::trim);
            match ctype {
                None => self.scan_value(loc, &name, &name, &String::from_utf8_lossy(content), out),
                Some(t) if t.starts_with("text/") => self.scan_text(loc, &name, content, out),
                Some(t) if t.contains("json") => {
                    self.scan_json(loc, content, out);
                }
                _ => {}
            }
        }
    }

    /// XML: each text node and attribute value under its element path (`/order/card`).
    pub fn scan_xml(&self, loc: Location, body: &[u8], out: &mut Vec<Finding>) {
        let mut stack: Vec<String> = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'<' {
                let Some(e) = body[i..].iter().position(|&c| c == b'>') else { break };
                let tag = String::from_utf8_lossy(&body[i + 1..i + e]).to_string();
                i += e + 1;
                if tag.starts_with('?') || tag.starts_with('!') {
                    continue;
                }
                if let Some(close) = tag.strip_prefix('/') {
                    let name = close.trim();
                    if let Some(p) = stack.iter().rposition(|n| n == name) {
                        stack.truncate(p);
                    }
                    continue;
                }
                let self_closing = tag.ends_with('/');
                // The name starts the tag (after any blanks), so the rest is its attributes.
                let t = tag.trim_end_matches('/').trim_start();
                let name = t.split_whitespace().next().unwrap_or("").to_string();
                // Attributes: name="value".
                let attrs = t[name.len()..].to_string();
                for a in attrs.split('"').collect::<Vec<_>>().chunks(2) {
                    if let [k, v] = a {
                        let k = k.trim().trim_end_matches('=').trim();
                        if !k.is_empty() {
                            let field = format!("/{}/{}@{k}", stack.join("/"), name).replace("//", "/");
                            self.scan_value(loc, &field, k, v, out);
                        }
                    }
                }
                if !self_closing && stack.len() < MAX_DEPTH {
                    stack.push(name);
                }
            } else {
                let e = body[i..].iter().position(|&c| c == b'<').map_or(body.len(), |p| i + p);
                let text = xml_unescape(&String::from_utf8_lossy(&body[i..e]));
                if !text.trim().is_empty() {
                    let field = format!("/{}", stack.join("/"));
                    let name = stack.last().cloned().unwrap_or_default();
                    self.scan_value(loc, &field, &name, &text, out);
                }
                i = e;
            }
        }
    }

    /// JSON: every string and number under its path (`$.customer.cards[*].number`).
    /// Returns false if the body is not JSON as far as it goes, or nests deeper than
    /// MAX_NESTING (findings before that point are kept).
    pub fn scan_json(&self, loc: Location, body: &[u8], out: &mut Vec<Finding>) -> bool {
        // The anchored formats (`eyJ`, `AKIA`, `@`...) are searched once over the whole body;
        // their patterns hold no `"`, so each match lies inside one string.
        // This thread's buffers, taken out for the walk (a nested walk starts its own). The
        // names cache stays from body to body: an API's bodies repeat their names.
        let mut scratch = SCRATCH.with(Cell::take);
        scratch.names.resize(NAME_SLOTS, (0, Context::default()));
        self.anchors_into(body, &mut scratch.anchors);
        let mut w = JsonWalk {
            b: body,
            text: std::str::from_utf8(body).ok(),
            i: 0,
            c: self,
            loc,
            out,
            s: scratch,
            next_anchor: 0,
        };
        let whole = w.walk().is_some();
        let mut scratch = w.s;
        scratch.segs.clear();
        scratch.owned.clear();
        scratch.open.clear();
        SCRATCH.with(|s| s.set(scratch));
        whole
    }
}

/// One step of a JSON path: a member name (a span of the body, or an unescaped copy in
/// `owned`) with what it says, or any element of an array.
#[derive(Clone, Copy)]
enum Seg {
    Key(u32, u32, Context),
    Owned(u32, Context),
    Elem,
}

/// Containers open at once at most: deeper bodies end the walk (it keeps no recursion,
/// so this bounds memory, not the stack).
const MAX_NESTING: usize = 512;

/// A JSON walk without recursion: `segs` is the path to the current value, kept as spans,
/// and made a string only for a value that gave findings.
struct JsonWalk<'a, 'o> {
    b: &'a [u8],
    /// The body as text, when it is valid UTF-8 (checked once, not string by string).
    text: Option<&'a str>,
    i: usize,
    c: &'a Classifier,
    loc: Location,
    out: &'o mut Vec<Finding>,
    s: Scratch,
    /// The first anchor match not yet passed.
    next_anchor: usize,
}

/// A walk's buffers, kept per thread so that a body costs no allocation.
#[derive(Default)]
struct Scratch {
    /// The path to the current value.
    segs: Vec<Seg>,
    /// Member names that had escapes, unescaped.
    owned: Vec<Box<str>>,
    /// The containers open (`{` or `[`).
    open: Vec<u8>,
    /// The path of the last value with findings.
    path: String,
    /// Member names read and what they say, by hash: a direct-mapped cache.
    names: Vec<(u64, Context)>,
    /// Anchor matches in the body, in order.
    anchors: Vec<(u32, u32, u16)>,
}

/// Names remembered per thread (slots of a direct-mapped cache, 16 bytes each: 64 KiB).
const NAME_SLOT_BITS: u32 = 12;
const NAME_SLOTS: usize = 1 << NAME_SLOT_BITS;

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

impl<'a> JsonWalk<'a, '_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// The text of a member name.
    fn seg_text(&self, s: Seg) -> &str {
        match s {
            Seg::Key(a, z, _) => span_text(self.text, self.b, a, z),
            Seg::Owned(k, _) => self.s.owned.get(k as usize).map_or("", |o| o),
            Seg::Elem => "",
        }
    }

    /// What a name says: from this thread's cache, by a 64-bit hash of the name (no
    /// allocation; a collision, odds about 2^-64 a pair, could only lend one name's
    /// reading to another).
    fn context(&mut self, name: &str) -> Context {
        let h = name_hash(name.as_bytes());
        // The slot from the hash's top bits, the best mixed (multiplication carries upward).
        let slot = &mut self.s.names[(h >> (64 - NAME_SLOT_BITS)) as usize];
        if slot.0 != h {
            *slot = (h, Context::of(name));
        }
        slot.1
    }

    /// The name the current value is under: the innermost member name (elements of an
    /// array are under the array's name).
    fn name(&self) -> Seg {
        self.s.segs.iter().rev().find(|s| !matches!(s, Seg::Elem)).copied().unwrap_or(Seg::Elem)
    }

    /// Scan `v`, the current value; `at` is where `v` starts in the body when it was taken
    /// from it as is (no escapes).
    fn scan(&mut self, v: &str, at: Option<usize>) {
        let named = self.name();
        let ctx = match named {
            Seg::Key(_, _, c) | Seg::Owned(_, c) => c,
            Seg::Elem => Context::default(),
        };
        let hits = at.map(|at| {
            let (from, to) = (at as u32, (at + v.len()) as u32);
            let anchors = &self.s.anchors;
            while self.next_anchor < anchors.len() && anchors[self.next_anchor].0 < from {
                self.next_anchor += 1;
            }
            let first = self.next_anchor;
            let mut last = first;
            while last < anchors.len() && anchors[last].1 <= to {
                last += 1;
            }
            (&anchors[first..last], from)
        });
        if !self.c.worth_scanning(&ctx, v, hits.map(|(h, _)| h.len())) {
            return;
        }
        let before = self.out.len();
        let owned_key;
        let key: &str = match named {
            Seg::Key(a, z, _) => span_text(self.text, self.b, a, z),
            Seg::Owned(k, _) => {
                owned_key = self.s.owned.get(k as usize).map(|o| o.to_string()).unwrap_or_default();
                &owned_key
            }
            Seg::Elem => "",
        };
        self.c.scan_in_context(self.loc, "", (key, &ctx), v, hits, self.out);
        if self.out.len() > before {
            // Findings: now the path is worth a string.
            let mut path = std::mem::take(&mut self.s.path);
            path.clear();
            path.push('$');
            for &s in self.s.segs.iter().take(MAX_DEPTH) {
                match s {
                    Seg::Elem => path.push_str("[*]"),
                    _ => push_key(&mut path, self.seg_text(s)),
                }
            }
            for f in &mut self.out[before..] {
                f.field.clone_from(&path);
            }
            self.s.path = path;
        }
    }

    /// A member name at `i` (on its opening quote).
    fn key(&mut self) -> Option<Seg> {
        let start = self.i + 1;
        Some(match self.string()? {
            Cow::Borrowed(k) => Seg::Key(start as u32, (start + k.len()) as u32, self.context(k)),
            Cow::Owned(k) => {
                let c = self.context(&k);
                self.s.owned.push(k.into());
                Seg::Owned(self.s.owned.len() as u32 - 1, c)
            }
        })
    }

    /// A member's name and its `:` (at the name's opening quote); the name goes on the path.
    fn member(&mut self) -> Option<()> {
        let k = self.key()?;
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        self.s.segs.push(k);
        Some(())
    }

    /// The whole body: values, member names and punctuation, with a stack of the open
    /// containers (`{` or `[`) in place of recursion.
    fn walk(&mut self) -> Option<()> {
        let mut open = std::mem::take(&mut self.s.open);
        let whole = self.walk_with(&mut open);
        self.s.open = open;
        whole
    }

    fn walk_with(&mut self, open: &mut Vec<u8>) -> Option<()> {
        'value: loop {
            // A value.
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    self.i += 1;
                    if open.len() >= MAX_NESTING {
                        return None;
                    }
                    open.push(c);
                    if c == b'[' {
                        self.s.segs.push(Seg::Elem);
                        if self.peek()? != b']' {
                            continue 'value;
                        }
                        self.i += 1;
                        self.s.segs.pop();
                        open.pop();
                    } else {
                        match self.peek()? {
                            b'}' => {
                                self.i += 1;
                                open.pop();
                            }
                            b'"' => {
                                self.member()?;
                                continue 'value;
                            }
                            _ => return None,
                        }
                    }
                }
                b'"' => {
                    let start = self.i + 1;
                    let s = self.string()?;
                    let at = matches!(s, Cow::Borrowed(_)).then_some(start);
                    self.scan(&s, at);
                }
                _ => {
                    let n = self.b[self.i..]
                        .iter()
                        .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                        .count();
                    if n == 0 {
                        return None;
                    }
                    let tok = &self.b[self.i..self.i + n];
                    let at = self.i;
                    self.i += n;
                    // Numbers can be card numbers, phone numbers or ids: scan the integer ones.
                    if n >= 7 && tok.iter().all(u8::is_ascii_digit) {
                        let s = std::str::from_utf8(tok).unwrap_or("");
                        self.scan(s, Some(at));
                    }
                }
            }
            if self.out.len() >= self.c.cfg.max_findings {
                return Some(()); // nothing more would be kept
            }
            // After a value: close the containers it ends, or go on to the next member or
            // element.
            loop {
                let Some(&top) = open.last() else { return Some(()) };
                if top == b'{' {
                    self.s.segs.pop(); // the member's name
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            if self.peek()? != b'"' {
                                return None;
                            }
                            self.member()?;
                            continue 'value;
                        }
                        b'}' => {
                            self.i += 1;
                            open.pop();
                        }
                        _ => return None,
                    }
                } else {
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            continue 'value;
                        }
                        b']' => {
                            self.i += 1;
                            open.pop();
                            self.s.segs.pop(); // the elements
                        }
                        _ => return None,
                    }
                }
            }
        }
    }

    /// A string at `i` (on its opening quote), unescaped; borrowed from the body when it
    /// has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.i += 1;
        let start = self.i;
        let b: &'a [u8] = self.b;
        let rest = &b[start..];
        let end = quote_or_backslash(rest)?;
        if rest[end] == b'"' {
            self.i = start + end + 1;
            // A body checked whole is sliced at quotes (ASCII, so on character boundaries).
            if let Some(text) = self.text {
                return text.get(start..start + end).map(Cow::Borrowed);
            }
            // Invalid UTF-8 is replaced, and then no longer lines up with the body.
            return Some(match std::str::from_utf8(&rest[..end]) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(String::from_utf8_lossy(&rest[..end]).into_owned()),
            });
        }
        // Escapes: decode.
        let mut s: Vec<u8> = rest[..end].to_vec();
        let mut i = start + end;
        while i < self.b.len() {
            match self.b[i] {
                b'"' => {
                    self.i = i + 1;
                    return Some(Cow::Owned(String::from_utf8_lossy(&s).into_owned()));
                }
                b'\\' => {
                    let e = *self.b.get(i + 1)?;
                    i += 2;
                    match e {
                        b'n' => s.push(b'\n'),
                        b't' => s.push(b'\t'),
                        b'r' => s.push(b'\r'),
                        b'b' | b'f' => s.push(b' '),
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(i..i + 4)?).ok()?;
                            let cp = u32::from_str_radix(hex, 16).ok()?;
                            i += 4;
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            s.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => s.push(other),
                    }
                }
                c => {
                    s.push(c);
                    i += 1;
                }
            }
        }
        None
    }
}

/// The text of `b[a..z]`, a span that `string` found valid.
fn span_text<'a>(text: Option<&'a str>, b: &'a [u8], a: u32, z: u32) -> &'a str {
    let (a, z) = (a as usize, z as usize);
    text.and_then(|t| t.get(a..z)).or_else(|| std::str::from_utf8(b.get(a..z)?).ok()).unwrap_or("")
}

/// A 64-bit hash of a name, 8 bytes a step (names are short, and one is hashed for each
/// member); never 0, the mark of an empty slot. The last word is read overlapping the one
/// before (the length is mixed in), so no byte is copied.
fn name_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let n = b.len();
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4])));
    let mut h = (n as u64).wrapping_mul(K);
    let last = if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h = (h ^ word(i)).wrapping_mul(K).rotate_left(29);
            i += 8;
        }
        word(n - 8)
    } else if n >= 4 {
        half(0) | half(n - 4) << 32
    } else {
        b.iter().fold(0u64, |v, &c| v << 8 | u64::from(c))
    };
    h = (h ^ last).wrapping_mul(K);
    (h ^ (h >> 29)).wrapping_mul(K) | 1
}

/// The first `"` or `\\` in `b`. Most JSON strings are short: their first 32 bytes are
/// searched 8 at a time in a register, and only longer strings call a vector search.
fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = 0;
    while i + 8 <= b.len() && i < 32 {
        let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        // Bytes equal to `"` or `\\` become zero; the lowest flagged byte is exact (flags
        // can be wrong only above a true zero, where the borrow runs on).
        let m = zero_byte(v ^ (ONES * b'"' as u64)) | zero_byte(v ^ (ONES * b'\\' as u64));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i < 32 {
        return b[i..].iter().position(|&c| c == b'"' || c == b'\\').map(|p| i + p);
    }
    memchr::memchr2(b'"', b'\\', &b[i..]).map(|p| i + p)
}

fn push_key(path: &mut String, k: &str) {
    if !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
        path.push('.');
        path.push_str(k);
    } else {
        path.push_str("['");
        for c in k.chars().take(64) {
            if c == '\'' || c == '\\' {
                path.push('\\');
            }
            path.push(c);
        }
        path.push_str("']");
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    h.windows(n.len()).position(|w| w == n)
}

fn looks_textual(b: &[u8]) -> bool {
    let head = &b[..b.len().min(512)];
    !head.is_empty()
        && head.iter().all(|&c| c >= 0x20 || matches!(c, b'\n' | b'\r' | b'\t') || c >= 0x80)
        && std::str::from_utf8(head).is_ok()
}

/// `%41` and `+` decoded (invalid escapes kept as they are).
pub fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod fast_paths {
    use super::*;

    #[test]
    fn quote_search_matches_a_plain_search() {
        let mut seed: u32 = 5;
        for len in 0..120 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let alphabet = b"ab\"\\\xe2\x80\x00!#";
                    alphabet[(seed >> 16) as usize % alphabet.len()]
                })
                .collect();
            let plain = b.iter().position(|&c| c == b'"' || c == b'\\');
            assert_eq!(quote_or_backslash(&b), plain, "{b:?}");
        }
        let long = [vec![b'a'; 100], b"\"".to_vec()].concat();
        assert_eq!(quote_or_backslash(&long), Some(100));
    }
}
