//! Streaming content decoding (gzip, deflate) of bodies as they arrive.
//!
//! The decoded bytes go to a [`Sink`] that counts them (the decoded body length) and keeps
//! the first `cap` as the body sample: memory per body is the inflater's state plus the
//! sample, whatever the body size.

use std::io::Write;

/// Counts decoded bytes and keeps the first `cap`.
#[derive(Debug)]
pub struct Sink {
    pub sample: Vec<u8>,
    pub cap: usize,
    pub total: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.total += buf.len() as u64;
        let room = self.cap.saturating_sub(self.sample.len());
        if room > 0 {
            self.sample.extend_from_slice(&buf[..room.min(buf.len())]);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Raw(flate2::write::DeflateDecoder<Sink>),
    /// deflate: zlib-wrapped or raw is decided by the first byte.
    DeflateUndecided(Sink),
}

/// A content decoder for one body.
pub struct BodyDecoder {
    inner: Option<Inner>,
    pub failed: bool,
}

impl std::fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyDecoder {{ failed: {} }}", self.failed)
    }
}

/// Whether we decode this Content-Encoding.
pub fn supported(coding: &[u8]) -> Option<bool> {
    let c = crate::parse::trim(coding);
    if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") {
        Some(true)
    } else if c.eq_ignore_ascii_case(b"deflate") {
        Some(false)
    } else {
        None
    }
}

impl BodyDecoder {
    /// `gzip`: true for gzip, false for deflate (see [`supported`]).
    pub fn new(gzip: bool, cap: usize) -> Self {
        let sink = Sink { sample: Vec::new(), cap, total: 0 };
        let inner =
            if gzip { Inner::Gzip(flate2::write::MultiGzDecoder::new(sink)) } else { Inner::DeflateUndecided(sink) };
        BodyDecoder { inner: Some(inner), failed: false }
    }

    pub fn write(&mut self, data: &[u8]) {
        if self.failed || data.is_empty() {
            return;
        }
        if let Some(Inner::DeflateUndecided(_)) = self.inner {
            let Some(Inner::DeflateUndecided(sink)) = self.inner.take() else { unreachable!() };
            let b = data[0];
            // A zlib header: compression method 8, window at most 32 KiB.
            let zlib = b & 0x0f == 8 && b >> 4 <= 7;
            self.inner = Some(if zlib {
                Inner::Zlib(flate2::write::ZlibDecoder::new(sink))
            } else {
                Inner::Raw(flate2::write::DeflateDecoder::new(sink))
            });
        }
        let r = match self.inner.as_mut() {
            Some(Inner::Gzip(d)) => d.write_all(data),
            Some(Inner::Zlib(d)) => d.write_all(data),
            Some(Inner::Raw(d)) => d.write_all(data),
            _ => Ok(()),
        };
        if r.is_err() {
            self.failed = true;
        }
    }

    /// Flush and return the sink (decoded sample and count).
    pub fn finish(mut self) -> (Sink, bool) {
        let res = match self.inner.take() {
            Some(Inner::Gzip(mut d)) => d.try_finish().map(|_| d.finish().ok()),
            Some(Inner::Zlib(mut d)) => d.try_finish().map(|_| d.finish().ok()),
            Some(Inner::Raw(mut d)) => d.try_finish().map(|_| d.finish().ok()),
            Some(Inner::DeflateUndecided(s)) => Ok(Some(s)),
            None => Ok(None),
        };
        match res {
            Ok(Some(s)) => (s, self.failed),
            _ => (Sink { sample: Vec::new(), cap: 0, total: 0 }, true),
        }
    }
}
