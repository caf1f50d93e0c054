//! A minimal streaming JSON writer: objects and arrays with fixed key order, strings from
//! bytes. Invalid UTF-8 bytes are written as `\u00XX` escapes of the byte value, so no
//! input byte is silently replaced; readers see the byte as a Latin-1 code point.

/// `key!(w, "name")` writes the key `"name":` with one copy.
#[macro_export]
macro_rules! key {
    ($w:expr, $k:literal) => {
        $w.key_raw(concat!("\"", $k, "\":").as_bytes())
    };
}

pub struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next value in the current container needs a comma first.
    need_comma: bool,
}

impl<'a> JsonWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        JsonWriter { out, need_comma: false }
    }

    fn sep(&mut self) {
        if self.need_comma {
            self.out.push(b',');
        }
        self.need_comma = true;
    }

    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.need_comma = false;
    }

    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.need_comma = true;
    }

    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
        self.need_comma = false;
    }

    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.need_comma = true;
    }

    /// Write a key (plain ASCII, no escaping needed); the next call writes its value.
    pub fn key(&mut self, k: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.need_comma = false;
    }

    /// Write a key given as its full JSON text, quotes and colon included (see [`key!`]):
    /// one copy instead of three.
    pub fn key_raw(&mut self, quoted: &[u8]) {
        if self.need_comma {
            self.out.push(b',');
        }
        self.out.extend_from_slice(quoted);
        self.need_comma = false;
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.sep();
        escape_into(self.out, b);
    }

    pub fn u64(&mut self, v: u64) {
        self.sep();
        push_u64(self.out, v);
    }

    pub fn i64(&mut self, v: i64) {
        self.sep();
        if v < 0 {
            self.out.push(b'-');
        }
        push_u64(self.out, v.unsigned_abs());
    }

    pub fn bool(&mut self, v: bool) {
        self.sep();
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
    }

    pub fn null(&mut self) {
        self.sep();
        self.out.extend_from_slice(b"null");
    }

    /// Append pre-rendered JSON text as one value.
    pub fn raw(&mut self, json: &[u8]) {
        self.sep();
        self.out.extend_from_slice(json);
    }

    /// Write a string value produced by `f` writing raw, already-safe bytes (digits,
    /// ASCII punctuation) straight into the output.
    pub fn str_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        self.sep();
        self.out.push(b'"');
        f(self.out);
        self.out.push(b'"');
    }
}

pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Bytes that need escaping in a JSON string, or start a non-ASCII sequence.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x80;
        i += 1;
    }
    t
};

/// Length of the prefix of `b` made of bytes that need no escaping, eight at a time.
fn clean_prefix(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        // A byte below 0x20, a '"', a '\\' or a byte with the high bit set.
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * b'"' as u64);
        let bs = x ^ (ONES * b'\\' as u64);
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        if (below | zero(q) | zero(bs) | x) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    i + b[i..].iter().position(|&c| SPECIAL[c as usize]).unwrap_or(b.len() - i)
}

/// Write `b` as a JSON string literal.
pub(crate) fn escape_into(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    let mut rest = b;
    while !rest.is_empty() {
        // Longest prefix that needs no escaping (printable ASCII).
        let clean = clean_prefix(rest);
        out.extend_from_slice(&rest[..clean]);
        rest = &rest[clean..];
        let Some(&c) = rest.first() else { break };
        if c >= 0x80 {
            // Take the valid UTF-8 run that starts here, if any.
            let valid = match std::str::from_utf8(rest) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                let s = &rest[..valid];
                // Up to the next ASCII byte; ASCII is re-checked for escapes above.
                let end = s.iter().position(|&b| b < 0x80).unwrap_or(valid);
                out.extend_from_slice(&s[..end]);
                rest = &rest[end..];
                continue;
            }
            push_u_escape(out, c);
            rest = &rest[1..];
            continue;
        }
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => push_u_escape(out, c),
        }
        rest = &rest[1..];
    }
    out.push(b'"');
}

fn push_u_escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(HEX[(c >> 4) as usize]);
    out.push(HEX[(c & 15) as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_non_utf8() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\"b\\c\n\x01\xff\xc3\xa9z");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\\u00ffééz\"".replace("éé", "é"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v.as_str().unwrap(), "a\"b\\c\n\u{1}\u{ff}éz");
    }

    #[test]
    fn clean_prefix_agrees_with_the_table() {
        let mut x: u32 = 1;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    // Mostly printable, sometimes special.
                    let r = (x >> 16) as u8;
                    if r < 240 {
                        b'a' + r % 26
                    } else {
                        r
                    }
                })
                .collect();
            let want = v.iter().position(|&c| SPECIAL[c as usize]).unwrap_or(v.len());
            assert_eq!(clean_prefix(&v), want, "{v:?}");
        }
        for special in [0u8, 0x1f, b'"', b'\\', 0x80, 0xff] {
            for pos in 0..20 {
                let mut v = vec![b'x'; 24];
                v[pos] = special;
                assert_eq!(clean_prefix(&v), pos);
            }
        }
    }

    #[test]
    fn nested_structure_is_valid_json() {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin_object();
        w.key("a");
        w.u64(0);
        w.key("b");
        w.begin_array();
        w.i64(-5);
        w.null();
        w.begin_object();
        w.end_object();
        w.end_array();
        w.key("c");
        w.bool(true);
        w.end_object();
        assert_eq!(out, br#"{"a":0,"b":[-5,null,{}],"c":true}"#);
    }
}
