//! Bodies by content type: JSON (field paths), form-urlencoded, multipart text parts, XML
//! text, plain text. Every walker is tolerant: malformed input ends the walk, keeping what
//! was found before it; nothing here panics on any input.

use crate::detect::{Classifier, Context};
use crate::types::{Finding, Location};
use std::borrow::Cow;

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
    /// Returns false if the body is not JSON as far as it goes (findings before the error
    /// are kept).
    pub fn scan_json(&self, loc: Location, body: &[u8], out: &mut Vec<Finding>) -> bool {
        // The anchored formats (`eyJ`, `AKIA`, `@`...) are searched once over the whole body;
        // their patterns hold no `"`, so each match lies inside one string.
        let anchors = self.anchors_in(body);
        let mut w = JsonWalk {
            b: body,
            i: 0,
            path: String::from("$"),
            marks: Vec::new(),
            c: self,
            loc,
            out,
            names: Vec::new(),
            anchors,
            next_anchor: 0,
        };
        w.value(None).is_some()
    }
}

struct JsonWalk<'a, 'o> {
    b: &'a [u8],
    i: usize,
    path: String,
    /// Path lengths to restore when a level ends.
    marks: Vec<usize>,
    c: &'a Classifier,
    loc: Location,
    out: &'o mut Vec<Finding>,
    /// Member names read so far and what they say (arrays of objects repeat them).
    names: Vec<(Box<str>, Context)>,
    /// Anchor matches in the body, in order, and the first not yet passed.
    anchors: Vec<(u32, u32, u16)>,
    next_anchor: usize,
}

/// Names remembered per JSON body.
const MAX_NAMES: usize = 64;

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

    /// Scan `v`, a value under `key`; `at` is where `v` starts in the body when it was taken
    /// from it as is (no escapes).
    fn scan(&mut self, key: &str, v: &str, at: Option<usize>) {
        let ctx = match self.names.iter().find(|(n, _)| &**n == key) {
            Some((_, c)) => *c,
            None => {
                let c = Context::of(key);
                if self.names.len() < MAX_NAMES {
                    self.names.push((key.into(), c));
                }
                c
            }
        };
        let hits = at.map(|at| {
            let (from, to) = (at as u32, (at + v.len()) as u32);
            while self.next_anchor < self.anchors.len() && self.anchors[self.next_anchor].0 < from {
                self.next_anchor += 1;
            }
            let first = self.next_anchor;
            let mut last = first;
            while last < self.anchors.len() && self.anchors[last].1 <= to {
                last += 1;
            }
            self.anchors[first..last].iter().map(|&(s, e, p)| (s - from, e - from, p)).collect::<Vec<_>>()
        });
        self.c.scan_in_context(self.loc, &self.path, (key, &ctx), v, hits.as_deref(), self.out);
    }

    /// One value; `key` is the member name it is under.
    fn value(&mut self, key: Option<&str>) -> Option<()> {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let k = self.string()?;
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.marks.push(self.path.len());
                    if self.marks.len() <= MAX_DEPTH {
                        push_key(&mut self.path, &k);
                    }
                    self.value(Some(&k))?;
                    let m = self.marks.pop().unwrap_or(0);
                    self.path.truncate(m);
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.marks.push(self.path.len());
                if self.marks.len() <= MAX_DEPTH {
                    self.path.push_str("[*]");
                }
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    loop {
                        self.value(key)?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                let m = self.marks.pop().unwrap_or(0);
                self.path.truncate(m);
                Some(())
            }
            b'"' => {
                let start = self.i + 1;
                let s = self.string()?;
                let at = matches!(s, Cow::Borrowed(_)).then_some(start);
                self.scan(key.unwrap_or(""), &s, at);
                Some(())
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
                    self.scan(key.unwrap_or(""), s, Some(at));
                }
                Some(())
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
        let end = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
        if rest[end] == b'"' {
            self.i = start + end + 1;
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
