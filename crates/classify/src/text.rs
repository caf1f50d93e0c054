//! Small owned texts for findings: a finding is made for every sensitive value seen, so
//! its masked form and hash cost no allocation.

use std::fmt;

/// Bytes kept in place; longer texts go to the heap.
const INLINE: usize = 30;

/// A string stored in place when short (masked values are), on the heap when not.
#[derive(Clone)]
pub struct SmallStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline(u8, [u8; INLINE]),
    Heap(String),
}

impl SmallStr {
    pub const fn new() -> SmallStr {
        SmallStr(Repr::Inline(0, [0; INLINE]))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
            Repr::Inline(n, b) => std::str::from_utf8(&b[..*n as usize]).unwrap_or(""),
            Repr::Heap(s) => s,
        }
    }

    #[inline]
    pub fn push_str(&mut self, s: &str) {
        match &mut self.0 {
            Repr::Inline(n, b) if *n as usize + s.len() <= INLINE => {
                // Byte by byte: the pieces are a few bytes, less than a call to memcpy.
                for (d, c) in b[*n as usize..].iter_mut().zip(s.bytes()) {
                    *d = c;
                }
                *n += s.len() as u8;
            }
            Repr::Inline(..) => {
                let mut h = String::with_capacity(self.as_str().len() + s.len());
                h.push_str(self.as_str());
                h.push_str(s);
                self.0 = Repr::Heap(h);
            }
            Repr::Heap(h) => h.push_str(s),
        }
    }

    /// ASCII bytes (anything else is replaced by `?`).
    #[inline]
    pub fn push_ascii(&mut self, b: &[u8]) {
        if b.is_ascii() {
            // ASCII is UTF-8.
            self.push_str(std::str::from_utf8(b).unwrap_or(""));
        } else {
            for &c in b {
                self.push(if c.is_ascii() { char::from(c) } else { '?' });
            }
        }
    }

    pub fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }
}

impl Default for SmallStr {
    fn default() -> Self {
        SmallStr::new()
    }
}

impl From<&str> for SmallStr {
    fn from(s: &str) -> SmallStr {
        let mut t = SmallStr::new();
        t.push_str(s);
        t
    }
}

impl std::ops::Deref for SmallStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SmallStr {
    fn eq(&self, o: &SmallStr) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for SmallStr {}

impl PartialEq<str> for SmallStr {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for SmallStr {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl fmt::Display for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for SmallStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl serde::Serialize for SmallStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A keyed hash of a value: the first 16 bytes of an HMAC-SHA256, shown in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueHash(pub [u8; 16]);

/// 32 hex digits, in place.
#[derive(Clone, Copy)]
pub struct Hex([u8; 32]);

impl ValueHash {
    pub fn hex(&self) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut h = [0u8; 32];
        for (k, b) in self.0.iter().enumerate() {
            h[2 * k] = DIGITS[(b >> 4) as usize];
            h[2 * k + 1] = DIGITS[(b & 15) as usize];
        }
        Hex(h)
    }
}

impl std::ops::Deref for Hex {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueHash({})", &*self.hex())
    }
}

impl serde::Serialize for ValueHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_strings_spill_to_the_heap() {
        let mut s = SmallStr::new();
        s.push_str("4111 **** ");
        assert_eq!(s, "4111 **** ");
        s.push_str("**** 1111 and a good deal more than thirty bytes");
        assert_eq!(s, "4111 **** **** 1111 and a good deal more than thirty bytes");
        s.push('é');
        assert!(s.ends_with('é'));
        assert_eq!(SmallStr::from("ab").len(), 2);
        assert_eq!(ValueHash([0xab; 16]).to_string(), "ab".repeat(16));
    }
}
