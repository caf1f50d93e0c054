//! A minimal streaming JSON writer: objects and arrays with fixed key order, strings from
//! bytes. Invalid UTF-8 bytes are written as `\u00XX` escapes of the byte value, so no
//! input byte is silently replaced; readers see the byte as a Latin-1 code point.

pub struct JsonWriter<'a> {
    out: &'a mut String,
    /// Whether the next value in the current container needs a comma first.
    need_comma: bool,
}

impl<'a> JsonWriter<'a> {
    pub fn new(out: &'a mut String) -> Self {
        JsonWriter { out, need_comma: false }
    }

    fn sep(&mut self) {
        if self.need_comma {
            self.out.push(',');
        }
        self.need_comma = true;
    }

    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push('{');
        self.need_comma = false;
    }

    pub fn end_object(&mut self) {
        self.out.push('}');
        self.need_comma = true;
    }

    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push('[');
        self.need_comma = false;
    }

    pub fn end_array(&mut self) {
        self.out.push(']');
        self.need_comma = true;
    }

    /// Write a key; the next call writes its value.
    pub fn key(&mut self, k: &str) {
        self.sep();
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
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
        let mut buf = itoa_buf();
        self.out.push_str(fmt_u64(v, &mut buf));
    }

    pub fn i64(&mut self, v: i64) {
        if v < 0 {
            self.sep();
            self.out.push('-');
            self.need_comma = false;
            self.u64(v.unsigned_abs());
        } else {
            self.u64(v as u64);
        }
    }

    pub fn bool(&mut self, v: bool) {
        self.sep();
        self.out.push_str(if v { "true" } else { "false" });
    }

    pub fn null(&mut self) {
        self.sep();
        self.out.push_str("null");
    }

    /// Append pre-rendered JSON text as one value.
    pub fn raw(&mut self, json: &str) {
        self.sep();
        self.out.push_str(json);
    }

    pub fn string_mut(&mut self) -> &mut String {
        self.out
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Write `b` as a JSON string literal.
pub(crate) fn escape_into(out: &mut String, b: &[u8]) {
    out.push('"');
    let mut rest = b;
    while !rest.is_empty() {
        // Longest prefix that needs no escaping.
        let clean = rest.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\' || c >= 0x80).unwrap_or(rest.len());
        if clean > 0 {
            // ASCII only, so valid UTF-8.
            out.push_str(std::str::from_utf8(&rest[..clean]).unwrap_or(""));
            rest = &rest[clean..];
            continue;
        }
        let c = rest[0];
        if c >= 0x80 {
            // Take a valid UTF-8 run if there is one.
            let valid = match std::str::from_utf8(rest) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                let s = std::str::from_utf8(&rest[..valid]).unwrap_or("");
                // Push only the non-ASCII-prefix part; ASCII inside is re-checked next loop.
                let end = s.char_indices().find(|&(_, ch)| (ch as u32) < 0x80).map(|(i, _)| i).unwrap_or(s.len());
                out.push_str(&s[..end]);
                rest = &rest[end..];
                continue;
            }
            push_u_escape(out, c);
            rest = &rest[1..];
            continue;
        }
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => push_u_escape(out, c),
        }
        rest = &rest[1..];
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, c: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u00");
    out.push(HEX[(c >> 4) as usize] as char);
    out.push(HEX[(c & 15) as usize] as char);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_non_utf8() {
        let mut s = String::new();
        escape_into(&mut s, b"a\"b\\c\n\x01\xff\xc3\xa9z");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\\u00ffééz\"".replace("éé", "é"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v.as_str().unwrap(), "a\"b\\c\n\u{1}\u{ff}éz");
    }

    #[test]
    fn nested_structure_is_valid_json() {
        let mut s = String::new();
        let mut w = JsonWriter::new(&mut s);
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
        assert_eq!(s, r#"{"a":0,"b":[-5,null,{}],"c":true}"#);
    }
}
