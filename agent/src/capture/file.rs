//! Capture file formats: pcap (microsecond and nanosecond, either byte order, and the
//! "modified" variant) and pcapng (sections of either byte order, several interfaces with
//! their own link types and timestamp resolutions), read from one byte slice.
//!
//! [`Reader`] is an iterator of [`Packet`]s borrowing from the slice: no copy per packet.
//! A damaged file yields the packets before the damage, then one [`FormatError`] naming
//! the byte offset of the bad record, then nothing.

use std::fmt;

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub linktype: u32,
    pub data: &'a [u8],
    /// Length of the frame on the wire (larger than `data` when snapped).
    pub orig_len: u32,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub offset: u64,
    pub what: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte offset {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for FormatError {}

/// Largest captured frame we accept in one record (GSO/TSO captures reach 256 KiB).
pub const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second: 10^n or 2^n.
    units: TsUnits,
    offset_s: i64,
}

#[derive(Debug, Clone, Copy)]
enum TsUnits {
    Pow10(u8),
    Pow2(u8),
}

impl TsUnits {
    fn to_ns(self, t: u64) -> i64 {
        match self {
            TsUnits::Pow10(n) if n <= 9 => (t as i128 * 10i128.pow(9 - n as u32)) as i64,
            TsUnits::Pow10(n) => (t as i128 / 10i128.pow((n as u32 - 9).min(30))) as i64,
            TsUnits::Pow2(n) => ((t as u128 * 1_000_000_000u128) >> n.min(64)) as i64,
        }
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    format: Format,
    big_endian: bool,
    // pcap
    linktype: u32,
    nanos: bool,
    record_extra: usize,
    // pcapng
    ifaces: Vec<Iface>,
    failed: bool,
}

fn rd16(b: &[u8], be: bool) -> u16 {
    let a = [b[0], b[1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn rd32(b: &[u8], be: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl<'a> Reader<'a> {
    /// Recognize the format from the file header.
    pub fn new(buf: &'a [u8]) -> Result<Self, FormatError> {
        let err = |what: &str| FormatError { offset: 0, what: what.to_string() };
        if buf.len() < 4 {
            return Err(err("file too short to be a capture (no magic number)"));
        }
        let magic_le = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let mut r = Reader {
            buf,
            pos: 0,
            format: Format::Pcap,
            big_endian: false,
            linktype: 0,
            nanos: false,
            record_extra: 0,
            ifaces: Vec::new(),
            failed: false,
        };
        match magic_le {
            0x0a0d0d0a => {
                r.format = Format::PcapNg;
                Ok(r)
            }
            _ => {
                let (be, nanos, extra) = match (magic_le, magic_le.swap_bytes()) {
                    (0xa1b2c3d4, _) => (false, false, 0),
                    (0xa1b23c4d, _) => (false, true, 0),
                    (0xa1b2cd34, _) => (false, false, 8),
                    (_, 0xa1b2c3d4) => (true, false, 0),
                    (_, 0xa1b23c4d) => (true, true, 0),
                    (_, 0xa1b2cd34) => (true, false, 8),
                    _ => {
                        return Err(err(&format!(
                            "not a pcap or pcapng file (magic number {:02x}{:02x}{:02x}{:02x})",
                            buf[0], buf[1], buf[2], buf[3]
                        )))
                    }
                };
                if buf.len() < 24 {
                    return Err(err("pcap file header truncated (24 bytes needed)"));
                }
                r.big_endian = be;
                r.nanos = nanos;
                r.record_extra = extra;
                // The upper bits of the link type field carry FCS information.
                r.linktype = rd32(&buf[20..24], be) & 0x0fff_ffff;
                r.pos = 24;
                Ok(r)
            }
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn fail(&mut self, offset: usize, what: String) -> Option<Result<Packet<'a>, FormatError>> {
        self.failed = true;
        Some(Err(FormatError { offset: offset as u64, what }))
    }

    fn next_pcap(&mut self) -> Option<Result<Packet<'a>, FormatError>> {
        let at = self.pos;
        let rest = &self.buf[at..];
        if rest.is_empty() {
            return None;
        }
        let hl = 16 + self.record_extra;
        if rest.len() < hl {
            return self.fail(at, format!("truncated packet record header ({} of {hl} bytes)", rest.len()));
        }
        let be = self.big_endian;
        let sec = rd32(&rest[0..4], be) as i64;
        let frac = rd32(&rest[4..8], be) as i64;
        let caplen = rd32(&rest[8..12], be) as usize;
        let orig = rd32(&rest[12..16], be);
        if caplen > MAX_RECORD {
            return self.fail(at, format!("packet record claims {caplen} captured bytes (corrupt record header)"));
        }
        if rest.len() < hl + caplen {
            return self
                .fail(at, format!("truncated packet record: {caplen} bytes announced, {} present", rest.len() - hl));
        }
        self.pos = at + hl + caplen;
        let ts_ns = sec * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Some(Ok(Packet {
            ts_ns,
            linktype: self.linktype,
            data: &rest[hl..hl + caplen],
            orig_len: orig,
            offset: at as u64,
        }))
    }

    fn next_pcapng(&mut self) -> Option<Result<Packet<'a>, FormatError>> {
        loop {
            let at = self.pos;
            let rest = &self.buf[at..];
            if rest.is_empty() {
                return None;
            }
            if rest.len() < 12 {
                return self.fail(at, format!("truncated pcapng block header ({} bytes left)", rest.len()));
            }
            let raw_type = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            if raw_type == 0x0a0d0d0a {
                // Section header: its byte-order magic decides the endianness of the section.
                let bom = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
                self.big_endian = match bom {
                    0x1a2b3c4d => false,
                    0x4d3c2b1a => true,
                    _ => return self.fail(at, format!("pcapng section header with bad byte-order magic {bom:#010x}")),
                };
                self.ifaces.clear();
            }
            let be = self.big_endian;
            let btype = rd32(&rest[0..4], be);
            let blen = rd32(&rest[4..8], be) as usize;
            if blen < 12 || !blen.is_multiple_of(4) {
                return self.fail(at, format!("pcapng block of type {btype:#x} has invalid length {blen}"));
            }
            if blen > rest.len() {
                return self.fail(
                    at,
                    format!(
                        "truncated pcapng block of type {btype:#x}: {blen} bytes announced, {} present",
                        rest.len()
                    ),
                );
            }
            let body = &rest[8..blen - 4];
            self.pos = at + blen;
            match btype {
                1 => {
                    if body.len() < 8 {
                        return self.fail(at, "interface description block too short".into());
                    }
                    let mut iface = Iface {
                        linktype: rd16(&body[0..2], be) as u32,
                        snaplen: rd32(&body[4..8], be),
                        units: TsUnits::Pow10(6),
                        offset_s: 0,
                    };
                    for (code, val) in options(&body[8..], be) {
                        match code {
                            9 if !val.is_empty() => {
                                let v = val[0];
                                iface.units = if v & 0x80 != 0 { TsUnits::Pow2(v & 0x7f) } else { TsUnits::Pow10(v) };
                            }
                            14 if val.len() >= 8 => {
                                let lo = rd32(&val[0..4], be) as u64;
                                let hi = rd32(&val[4..8], be) as u64;
                                iface.offset_s = (if be { lo << 32 | hi } else { hi << 32 | lo }) as i64;
                            }
                            _ => {}
                        }
                    }
                    self.ifaces.push(iface);
                }
                6 | 2 => {
                    // Enhanced packet block, or the obsolete packet block.
                    if body.len() < 20 {
                        return self.fail(at, "packet block too short".into());
                    }
                    let ifid = if btype == 6 { rd32(&body[0..4], be) as usize } else { rd16(&body[0..2], be) as usize };
                    let Some(iface) = self.ifaces.get(ifid).copied() else {
                        return self.fail(at, format!("packet block refers to undefined interface {ifid}"));
                    };
                    let ts = (rd32(&body[4..8], be) as u64) << 32 | rd32(&body[8..12], be) as u64;
                    let caplen = rd32(&body[12..16], be) as usize;
                    let orig = rd32(&body[16..20], be);
                    if caplen > body.len() - 20 {
                        return self.fail(
                            at,
                            format!("packet block claims {caplen} captured bytes, block holds {}", body.len() - 20),
                        );
                    }
                    let ts_ns = iface.units.to_ns(ts).saturating_add(iface.offset_s.saturating_mul(1_000_000_000));
                    return Some(Ok(Packet {
                        ts_ns,
                        linktype: iface.linktype,
                        data: &body[20..20 + caplen],
                        orig_len: orig,
                        offset: at as u64,
                    }));
                }
                3 => {
                    // Simple packet block: no timestamp, interface 0.
                    if body.len() < 4 {
                        return self.fail(at, "simple packet block too short".into());
                    }
                    let Some(iface) = self.ifaces.first().copied() else {
                        return self.fail(at, "simple packet block before any interface".into());
                    };
                    let orig = rd32(&body[0..4], be);
                    let mut caplen = (orig as usize).min(body.len() - 4);
                    if iface.snaplen > 0 {
                        caplen = caplen.min(iface.snaplen as usize);
                    }
                    return Some(Ok(Packet {
                        ts_ns: 0,
                        linktype: iface.linktype,
                        data: &body[4..4 + caplen],
                        orig_len: orig,
                        offset: at as u64,
                    }));
                }
                _ => {} // statistics, name resolution, custom blocks: skipped
            }
        }
    }
}

/// pcapng options: (code, value) until opt_endofopt.
fn options(mut b: &[u8], be: bool) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let code = rd16(&b[0..2], be);
        let len = rd16(&b[2..4], be) as usize;
        if code == 0 || 4 + len > b.len() {
            break;
        }
        out.push((code, &b[4..4 + len]));
        let padded = (4 + len + 3) & !3;
        b = &b[padded.min(b.len())..];
    }
    out
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Packet<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.format {
            Format::Pcap => self.next_pcap(),
            Format::PcapNg => self.next_pcapng(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(be: bool, nanos: bool, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = Vec::new();
        f.extend_from_slice(&w32(if nanos { 0xa1b23c4d } else { 0xa1b2c3d4 }));
        f.extend_from_slice(&w16(2));
        f.extend_from_slice(&w16(4));
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w32(1));
        for (s, frac, data) in records {
            f.extend_from_slice(&w32(*s));
            f.extend_from_slice(&w32(*frac));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn pcap_all_byte_orders_and_resolutions() {
        for be in [false, true] {
            for nanos in [false, true] {
                let f = pcap(be, nanos, &[(10, 5, b"abc"), (11, 0, b"")]);
                let pkts: Vec<_> = Reader::new(&f).unwrap().collect::<Result<_, _>>().unwrap();
                assert_eq!(pkts.len(), 2);
                assert_eq!(pkts[0].data, b"abc");
                assert_eq!(pkts[0].linktype, 1);
                assert_eq!(pkts[0].ts_ns, 10_000_000_000 + if nanos { 5 } else { 5000 });
            }
        }
    }

    #[test]
    fn truncated_pcap_reports_offset_after_good_packets() {
        let mut f = pcap(false, false, &[(1, 0, b"abcd"), (2, 0, b"efgh")]);
        f.truncate(f.len() - 2);
        let items: Vec<_> = Reader::new(&f).unwrap().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.offset, 24 + 16 + 4);
        assert!(e.what.contains("truncated packet record"), "{e}");
    }

    #[test]
    fn rejects_non_capture() {
        let e = Reader::new(b"hello world, not a capture").err().unwrap();
        assert!(e.what.contains("not a pcap"), "{e}");
    }

    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()).div_ceil(4) * 4;
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b
    }

    #[test]
    fn pcapng_interfaces_and_resolution() {
        let mut f =
            block(0x0a0d0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        // Interface 0: Ethernet, default microseconds. Interface 1: raw IP, nanoseconds.
        f.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
        f.extend(block(1, &[101, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]));
        let epb = |ifid: u32, ts: u64, data: &[u8]| {
            let mut b = ifid.to_le_bytes().to_vec();
            b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
            b.extend_from_slice(&(ts as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
            block(6, &b)
        };
        f.extend(epb(0, 1_500_000, b"eth"));
        f.extend(epb(1, 2_000_000_007, b"raw"));
        f.extend(block(5, &[0; 8])); // statistics: skipped
        let pkts: Vec<_> = Reader::new(&f).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 2);
        assert_eq!((pkts[0].linktype, pkts[0].ts_ns, pkts[0].data), (1, 1_500_000_000, &b"eth"[..]));
        assert_eq!((pkts[1].linktype, pkts[1].ts_ns, pkts[1].data), (101, 2_000_000_007, &b"raw"[..]));
    }
}
