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

/// Append `b` to `out`. Keys and most values here are short: those are copied inline by
/// two overlapping fixed-size copies (a few instructions) instead of a call to `memcpy`,
/// which took a fifth of the time spent rendering a transaction.
#[inline(always)]
pub(crate) fn put(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if !(4..=32).contains(&n) {
        out.extend_from_slice(b);
        return;
    }
    out.reserve(32);
    let len = out.len();
    let src = b.as_ptr();
    // SAFETY: `reserve(32)` leaves room for at least 32 more bytes after `len`, and
    // 4 <= n <= 32: every copy below writes inside `[len, len + n)` of that room and reads
    // inside `b` (`n - 16 >= 0` where 16-byte copies are made, and so on). `b` cannot
    // overlap the spare capacity of `out` (it is a shared borrow while `out` is borrowed
    // mutably). The `n` bytes are all written before the length is set.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        if n >= 16 {
            std::ptr::copy_nonoverlapping(src, dst, 16);
            std::ptr::copy_nonoverlapping(src.add(n - 16), dst.add(n - 16), 16);
        } else if n >= 8 {
            std::ptr::copy_nonoverlapping(src, dst, 8);
            std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
        }
        out.set_len(len + n);
    }
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

    #[inline(always)]
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
    #[inline(always)]
    pub fn key_raw(&mut self, quoted: &[u8]) {
        if self.need_comma {
            self.out.push(b',');
        }
        put(self.out, quoted);
        self.need_comma = false;
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.sep();
        escape_into(self.out, b);
    }

    #[inline]
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
    // Two digits a step, from a table, written straight into the vector's spare room.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
    // Most numbers here are short (ports, lengths, statuses): count their digits by
    // comparison; `ilog10` for the rest.
    let n = match v {
        0..10 => 1,
        10..100 => 2,
        100..1_000 => 3,
        1_000..10_000 => 4,
        10_000..100_000 => 5,
        _ => v.ilog10() as usize + 1,
    };
    out.reserve(20);
    let spare = &mut out.spare_capacity_mut()[..n];
    let mut i = n;
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        spare[i].write(PAIRS[d]);
        spare[i + 1].write(PAIRS[d + 1]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        spare[0].write(PAIRS[d]);
        spare[1].write(PAIRS[d + 1]);
    } else {
        spare[0].write(b'0' + v as u8);
    }
    let len = out.len();
    // SAFETY: the `n` bytes after `len` were all written above (digits fill `spare` from
    // its end down to index 0, `n` being the number of digits of `v`).
    unsafe { out.set_len(len + n) };
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

/// Whether the eight bytes at the start of `w` may hold one that needs escaping (a byte
/// below 0x20, a '"', a '\\' or one with the high bit set). May say yes wrongly (the borrow
/// of a zero test spills into the next byte), never no wrongly.
#[inline(always)]
fn may_need_escape(w: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    let below = x.wrapping_sub(ONES * 0x20) & !x;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let q = zero(x ^ (ONES * b'"' as u64));
    let bs = zero(x ^ (ONES * b'\\' as u64));
    (below | q | bs | x) & HIGH != 0
}

/// Length of the prefix of `b` made of bytes that need no escaping, eight at a time.
fn clean_prefix(b: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= b.len() && !may_need_escape(&b[i..]) {
        i += 8;
    }
    // The last bytes, as one overlapping word when there are eight or more (the common
    // case: a clean string ends clean).
    if i < b.len() && b.len() >= 8 && i + 8 > b.len() && !may_need_escape(&b[b.len() - 8..]) {
        return b.len();
    }
    i + b[i..].iter().position(|&c| SPECIAL[c as usize]).unwrap_or(b.len() - i)
}

/// Write `b` as a JSON string literal.
#[inline]
pub(crate) fn escape_into(out: &mut Vec<u8>, b: &[u8]) {
    // Most strings need no escaping: one check, one copy.
    let clean = clean_prefix(b);
    if clean == b.len() {
        out.reserve(b.len() + 2);
        out.push(b'"');
        put(out, b);
        out.push(b'"');
        return;
    }
    escape_slow(out, b, clean);
}

/// [`escape_into`] for a string with something to escape from `clean` on.
#[cold]
#[inline(never)]
fn escape_slow(out: &mut Vec<u8>, b: &[u8], clean: usize) {
    out.push(b'"');
    put(out, &b[..clean]);
    let mut rest = &b[clean..];
    while !rest.is_empty() {
        // Longest prefix that needs no escaping (printable ASCII).
        let clean = clean_prefix(rest);
        put(out, &rest[..clean]);
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
    fn numbers_and_short_copies() {
        let mut vals = vec![0u64, 1, 9, 10, 11, 99, 100, 101, 999, 1000, u64::MAX, u64::MAX / 10];
        for p in 0..20 {
            let x = 10u64.pow(p);
            vals.extend([x - 1, x, x + 1, (x / 3).saturating_mul(7)]);
        }
        for v in vals {
            let mut out = b"x".to_vec();
            push_u64(&mut out, v);
            assert_eq!(out, format!("x{v}").as_bytes());
        }
        for n in 0..80 {
            let src: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            let mut out = b"head".to_vec();
            put(&mut out, &src);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &src[..]);
        }
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
