//! Link, network and transport decoding: from one captured frame to one TCP segment.
//!
//! The entry point is [`Decoder::decode`]. It peels the link layer (Ethernet, 802.1Q/QinQ,
//! Linux cooked SLL/SLL2, raw IP, BSD loopback, NFLOG), any encapsulation that traffic
//! mirroring produces (VXLAN, Geneve, GRE, ERSPAN II/III, MPLS, PPPoE, Teredo, GTP-U, AYIYA,
//! IP-in-IP), the IP layer (IPv4 with fragment reassembly, IPv6 with extension headers), and
//! returns a borrowed view of the innermost TCP segment.
//!
//! Nothing here allocates per packet except fragment reassembly, which is bounded by
//! [`DefragLimits`]. Malformed input never panics: every read is bounds-checked and a frame
//! that cannot be decoded yields [`Outcome::Skip`] with a reason the caller counts.

mod checksum;
mod defrag;
mod headers;

pub use checksum::{ones_complement_sum, tcp_checksum_ok, tcp_checksum_ok_parts};
pub use defrag::{DefragLimits, DefragStats};
pub use headers::*;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link-layer header types (the `LINKTYPE_*` values of pcap and pcapng) that we decode.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OLD: u32 = 12;
    pub const RAW_OPENBSD: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;

    /// Whether [`crate::Decoder`] understands frames of this link type.
    pub fn supported(lt: u32) -> bool {
        matches!(
            lt,
            NULL | ETHERNET | RAW_OLD | RAW_OPENBSD | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | NFLOG | LINUX_SLL2
        )
    }
}

/// TCP flag bits as they appear in the header's flags byte.
pub mod tcpflags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Deepest stack of encapsulations we follow before giving up (a loop guard).
pub const MAX_LAYERS: usize = 16;

/// Checksum verdict for a decoded segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Good,
    /// Wrong on the wire. Common on captures taken on the sending host with checksum
    /// offload; the segment is kept and counted.
    Bad,
    /// Not checked: verification off, or the segment was not captured in full.
    Unchecked,
}

/// One decoded TCP segment, borrowing its payload from the frame (or from the fragment
/// reassembly buffer).
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// The TCP header, options included (empty when the capture did not carry it).
    pub header: &'a [u8],
    /// Payload bytes actually captured.
    pub payload: &'a [u8],
    /// Payload length the IP header announces; larger than `payload.len()` when the frame
    /// was cut by the snap length. The difference is a gap the reassembler must record.
    pub seg_len: u32,
    pub checksum: Checksum,
    /// How many encapsulations were removed to reach this segment.
    pub tunnel_depth: u8,
}

impl TcpSegment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Why a frame produced no TCP segment. Callers count these by [`SkipReason::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// A link type we do not decode.
    UnsupportedLink,
    /// Ethertype, PPP protocol or tunnel payload that is not IP.
    NotIp,
    /// IP, but the innermost transport is not TCP (UDP that is not a tunnel, ICMP ...).
    NotTcp,
    /// A header claims more bytes than the frame holds.
    Truncated,
    /// A header field with an impossible value (IHL < 5, data offset < 5, bad version ...).
    Malformed,
    /// A fragment was stored; the datagram is not complete yet.
    FragmentHeld,
    /// A fragment was dropped (table full, overlap, oversize, nested reassembly).
    FragmentDropped,
    /// More than [`MAX_LAYERS`] encapsulations.
    TooDeep,
}

impl SkipReason {
    pub const ALL: [SkipReason; 8] = [
        SkipReason::UnsupportedLink,
        SkipReason::NotIp,
        SkipReason::NotTcp,
        SkipReason::Truncated,
        SkipReason::Malformed,
        SkipReason::FragmentHeld,
        SkipReason::FragmentDropped,
        SkipReason::TooDeep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLink => "unsupported_link",
            SkipReason::NotIp => "not_ip",
            SkipReason::NotTcp => "not_tcp",
            SkipReason::Truncated => "truncated",
            SkipReason::Malformed => "malformed",
            SkipReason::FragmentHeld => "fragment_held",
            SkipReason::FragmentDropped => "fragment_dropped",
            SkipReason::TooDeep => "too_deep",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Result of decoding one frame.
#[derive(Debug)]
pub enum Outcome<'a> {
    Tcp(TcpSegment<'a>),
    Skip(SkipReason),
}

/// Decoder options.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Verify TCP checksums (bad ones are still decoded, only counted).
    pub verify_checksums: bool,
    pub defrag: DefragLimits,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig { verify_checksums: true, defrag: DefragLimits::default() }
    }
}

/// What the next bytes are.
#[derive(Debug, Clone, Copy)]
enum Next {
    Ether,
    /// An ethertype value (also used by GRE, Geneve, SLL).
    EtherType(u16),
    Ipv4,
    Ipv6,
    /// IP version decided by the first nibble.
    IpAny,
    Mpls,
    Ppp(u16),
    /// PPP frame with optional address/control bytes.
    PppFrame,
    Gre,
}

/// Stateful decoder: it owns the IP fragment table. One per worker.
#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    defrag: defrag::Defrag,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        let defrag = defrag::Defrag::new(cfg.defrag.clone());
        Decoder { cfg, defrag }
    }

    pub fn defrag_stats(&self) -> DefragStats {
        self.defrag.stats()
    }

    /// Decode one frame of link type `linktype`, captured at `ts_ns` (nanoseconds since
    /// the epoch; used only to expire fragments).
    pub fn decode<'a>(&'a mut self, linktype: u32, frame: &'a [u8], ts_ns: i64) -> Outcome<'a> {
        let verify = self.cfg.verify_checksums;
        let (next, data) = match linktype {
            linktype::ETHERNET => (Next::Ether, frame),
            linktype::RAW | linktype::RAW_OLD | linktype::RAW_OPENBSD => (Next::IpAny, frame),
            linktype::IPV4 => (Next::Ipv4, frame),
            linktype::IPV6 => (Next::Ipv6, frame),
            linktype::NULL | linktype::LOOP => {
                let Some(h) = frame.get(..4) else { return skip(SkipReason::Truncated) };
                let family = if linktype == linktype::LOOP {
                    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
                } else {
                    // Host byte order of the capturing machine: accept either.
                    let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                    if le < 0x10000 {
                        le
                    } else {
                        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
                    }
                };
                match family {
                    2 => (Next::Ipv4, &frame[4..]),
                    // AF_INET6 differs per OS: 10 (Linux), 24, 28, 30 (BSDs, macOS).
                    10 | 24 | 28 | 30 => (Next::Ipv6, &frame[4..]),
                    _ => return skip(SkipReason::NotIp),
                }
            }
            linktype::LINUX_SLL => {
                let Some(h) = frame.get(..16) else { return skip(SkipReason::Truncated) };
                (Next::EtherType(u16::from_be_bytes([h[14], h[15]])), &frame[16..])
            }
            linktype::LINUX_SLL2 => {
                let Some(h) = frame.get(..20) else { return skip(SkipReason::Truncated) };
                (Next::EtherType(u16::from_be_bytes([h[0], h[1]])), &frame[20..])
            }
            linktype::NFLOG => match nflog_payload(frame) {
                Some(p) => (Next::IpAny, p),
                None => return skip(SkipReason::NotIp),
            },
            _ => return skip(SkipReason::UnsupportedLink),
        };
        walk(next, data, ts_ns, verify, Some(&mut self.defrag))
    }
}

fn skip<'a>(r: SkipReason) -> Outcome<'a> {
    Outcome::Skip(r)
}

/// Peel layers until a TCP segment or a reason to stop.
///
/// `defrag` is taken on the first fragment: a datagram reassembled from fragments is
/// borrowed from the table, so a fragment nested inside it is dropped (and counted).
fn walk<'a>(
    mut next: Next,
    mut data: &'a [u8],
    ts_ns: i64,
    verify: bool,
    mut defrag: Option<&'a mut defrag::Defrag>,
) -> Outcome<'a> {
    let mut tunnels: u8 = 0;
    for _ in 0..MAX_LAYERS {
        match next {
            Next::Ether => {
                let Some(h) = data.get(..14) else { return skip(SkipReason::Truncated) };
                next = Next::EtherType(u16::from_be_bytes([h[12], h[13]]));
                data = &data[14..];
            }
            Next::EtherType(et) => match et {
                ETH_IPV4 => next = Next::Ipv4,
                ETH_IPV6 => next = Next::Ipv6,
                ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                    let Some(h) = data.get(..4) else { return skip(SkipReason::Truncated) };
                    next = Next::EtherType(u16::from_be_bytes([h[2], h[3]]));
                    data = &data[4..];
                }
                ETH_MPLS_UC | ETH_MPLS_MC => next = Next::Mpls,
                ETH_PPPOE_SESSION => {
                    let Some(h) = data.get(..8) else { return skip(SkipReason::Truncated) };
                    // The PPPoE length field bounds the PPP payload (Ethernet pads).
                    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
                    let end = (6 + len).clamp(8, data.len());
                    next = Next::Ppp(u16::from_be_bytes([h[6], h[7]]));
                    data = &data[8..end];
                }
                ETH_TEB => next = Next::Ether,
                // 802.3 length field: an LLC header follows. Only SNAP carries an ethertype.
                len if len < 0x0600 => match data.get(..8) {
                    Some(h) if h[0] == 0xaa && h[1] == 0xaa && h[2] == 0x03 => {
                        next = Next::EtherType(u16::from_be_bytes([h[6], h[7]]));
                        data = &data[8..];
                    }
                    _ => return skip(SkipReason::NotIp),
                },
                _ => return skip(SkipReason::NotIp),
            },
            Next::Mpls => {
                // Pop labels to the bottom of the stack.
                loop {
                    let Some(h) = data.get(..4) else { return skip(SkipReason::Truncated) };
                    data = &data[4..];
                    if h[2] & 1 == 1 {
                        break;
                    }
                }
                match data.first().map(|b| b >> 4) {
                    Some(4) => next = Next::Ipv4,
                    Some(6) => next = Next::Ipv6,
                    // Pseudowire control word (first nibble 0), then Ethernet.
                    Some(0) => {
                        let Some(rest) = data.get(4..) else { return skip(SkipReason::Truncated) };
                        data = rest;
                        next = Next::Ether;
                    }
                    _ => return skip(SkipReason::NotIp),
                }
            }
            Next::PppFrame => {
                let mut d = data;
                if d.starts_with(&[0xff, 0x03]) {
                    d = &d[2..];
                }
                let Some(&b0) = d.first() else { return skip(SkipReason::Truncated) };
                // Protocol field compression: an odd first byte is a 1-byte protocol.
                if b0 & 1 == 1 {
                    next = Next::Ppp(b0 as u16);
                    data = &d[1..];
                } else {
                    let Some(h) = d.get(..2) else { return skip(SkipReason::Truncated) };
                    next = Next::Ppp(u16::from_be_bytes([h[0], h[1]]));
                    data = &d[2..];
                }
            }
            Next::Ppp(proto) => match proto {
                0x0021 => next = Next::Ipv4,
                0x0057 => next = Next::Ipv6,
                _ => return skip(SkipReason::NotIp),
            },
            Next::IpAny => match data.first().map(|b| b >> 4) {
                Some(4) => next = Next::Ipv4,
                Some(6) => next = Next::Ipv6,
                Some(_) => return skip(SkipReason::NotIp),
                None => return skip(SkipReason::Truncated),
            },
            Next::Gre => {
                let Some(g) = parse_gre(data) else { return skip(SkipReason::NotIp) };
                tunnels = tunnels.saturating_add(1);
                data = g.payload;
                next = g.next;
            }
            Next::Ipv4 | Next::Ipv6 => {
                let parsed = if matches!(next, Next::Ipv4) { parse_ipv4(data) } else { parse_ipv6(data) };
                let mut ip = match parsed {
                    Ok(ip) => ip,
                    Err(r) => return skip(r),
                };
                if let Some(frag) = ip.fragment {
                    let Some(table) = defrag.take() else { return skip(SkipReason::FragmentDropped) };
                    let key = defrag::Key { src: ip.src, dst: ip.dst, id: frag.id, proto: ip.proto };
                    match table.insert(key, frag.offset, frag.more, ip.payload, ts_ns) {
                        defrag::Insert::Held => return skip(SkipReason::FragmentHeld),
                        defrag::Insert::Dropped => return skip(SkipReason::FragmentDropped),
                        defrag::Insert::Complete => {
                            let table: &'a defrag::Defrag = table;
                            let payload = table.completed();
                            ip = IpHeader { payload, claimed_len: payload.len(), fragment: None, ..ip };
                        }
                    }
                }
                match transport_step(ip, tunnels, verify) {
                    Step::Done(o) => return o,
                    Step::Continue(n, d, t) => {
                        next = n;
                        data = d;
                        tunnels = t;
                    }
                }
            }
        }
    }
    skip(SkipReason::TooDeep)
}

enum Step<'a> {
    Done(Outcome<'a>),
    Continue(Next, &'a [u8], u8),
}

/// Handle the transport protocol of an unfragmented IP datagram.
fn transport_step(ip: IpHeader<'_>, tunnels: u8, verify: bool) -> Step<'_> {
    match ip.proto {
        IPPROTO_TCP => Step::Done(match parse_tcp(&ip, tunnels, verify) {
            Ok(seg) => Outcome::Tcp(seg),
            Err(r) => Outcome::Skip(r),
        }),
        IPPROTO_UDP => match udp_tunnel(ip.payload) {
            Some((next, inner)) => Step::Continue(next, inner, tunnels.saturating_add(1)),
            None => Step::Done(Outcome::Skip(SkipReason::NotTcp)),
        },
        IPPROTO_GRE => Step::Continue(Next::Gre, ip.payload, tunnels),
        IPPROTO_IPIP => Step::Continue(Next::Ipv4, ip.payload, tunnels.saturating_add(1)),
        IPPROTO_IPV6 => Step::Continue(Next::Ipv6, ip.payload, tunnels.saturating_add(1)),
        _ => Step::Done(Outcome::Skip(SkipReason::NotTcp)),
    }
}

fn parse_tcp<'a>(ip: &IpHeader<'a>, tunnels: u8, verify: bool) -> Result<TcpSegment<'a>, SkipReason> {
    let d = ip.payload;
    let h = d.get(..20).ok_or(SkipReason::Truncated)?;
    let doff = ((h[12] >> 4) as usize) * 4;
    if doff < 20 {
        return Err(SkipReason::Malformed);
    }
    if d.len() < doff {
        return Err(SkipReason::Truncated);
    }
    let claimed_tcp_len = ip.claimed_len;
    if claimed_tcp_len < doff {
        return Err(SkipReason::Malformed);
    }
    let payload = &d[doff..];
    let seg_len = (claimed_tcp_len - doff) as u32;
    let complete = d.len() == claimed_tcp_len;
    let checksum = if !verify || !complete {
        Checksum::Unchecked
    } else if tcp_checksum_ok(ip.src, ip.dst, d) {
        Checksum::Good
    } else {
        Checksum::Bad
    };
    Ok(TcpSegment {
        src: ip.src,
        dst: ip.dst,
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: h[13],
        window: u16::from_be_bytes([h[14], h[15]]),
        header: &d[..doff],
        payload,
        seg_len: seg_len.max(payload.len() as u32),
        checksum,
        tunnel_depth: tunnels,
    })
}

/// UDP ports of the tunnels we unwrap, and what follows their header.
fn udp_tunnel(udp: &[u8]) -> Option<(Next, &[u8])> {
    let h = udp.get(..8)?;
    let sport = u16::from_be_bytes([h[0], h[1]]);
    let dport = u16::from_be_bytes([h[2], h[3]]);
    let ulen = u16::from_be_bytes([h[4], h[5]]) as usize;
    let end = if ulen >= 8 { ulen.min(udp.len()) } else { udp.len() };
    let p = &udp[8..end];
    let is = |port: u16| sport == port || dport == port;
    if is(4789) || is(8472) {
        // VXLAN: 8-byte header, I flag set, then Ethernet.
        let v = p.get(..8)?;
        if v[0] & 0x08 == 0 {
            return None;
        }
        return Some((Next::Ether, &p[8..]));
    }
    if is(6081) {
        // Geneve: version 0, options length in 4-byte words, protocol type.
        let g = p.get(..8)?;
        if g[0] >> 6 != 0 {
            return None;
        }
        let hl = 8 + (g[0] & 0x3f) as usize * 4;
        let proto = u16::from_be_bytes([g[2], g[3]]);
        return Some((Next::EtherType(proto), p.get(hl..)?));
    }
    if is(4754) {
        // GRE-in-UDP (RFC 8086).
        return Some((Next::Gre, p));
    }
    if is(2152) {
        return gtpu(p).map(|inner| (Next::IpAny, inner));
    }
    if is(5072) {
        return ayiya(p);
    }
    // Teredo: the server port is 3544, but relays use any port, so recognize it by its
    // content: an IPv6 header whose payload length fills the datagram exactly.
    teredo(p).map(|inner| (Next::Ipv6, inner))
}

/// GTP-U (3GPP TS 29.281) G-PDU: strip the header and its extension chain.
fn gtpu(p: &[u8]) -> Option<&[u8]> {
    let h = p.get(..8)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 || h[1] != 0xff {
        return None;
    }
    let len = u16::from_be_bytes([h[2], h[3]]) as usize;
    let end = (8 + len).min(p.len());
    let mut off = 8;
    if h[0] & 0x07 != 0 {
        let opt = p.get(8..12)?;
        off = 12;
        let mut next_ext = opt[3];
        while next_ext != 0 {
            let ext_len = *p.get(off)? as usize * 4;
            if ext_len == 0 {
                return None;
            }
            next_ext = *p.get(off + ext_len - 1)?;
            off += ext_len;
        }
    }
    p.get(off..end)
}

/// AYIYA (Anything In Anything) forward packets.
fn ayiya(p: &[u8]) -> Option<(Next, &[u8])> {
    let h = p.get(..8)?;
    let id_len = 1usize << (h[0] >> 4);
    let sig_len = (h[1] >> 4) as usize * 4;
    let opcode = h[2] & 0x0f;
    if opcode != 1 {
        return None;
    }
    let inner = p.get(8 + id_len + sig_len..)?;
    match h[3] {
        IPPROTO_IPV6 => Some((Next::Ipv6, inner)),
        IPPROTO_IPIP => Some((Next::Ipv4, inner)),
        _ => None,
    }
}

/// Teredo (RFC 4380): optional authentication and origin indication, then IPv6.
fn teredo(mut p: &[u8]) -> Option<&[u8]> {
    if p.len() >= 4 && p[0] == 0 && p[1] == 1 {
        let id_len = p[2] as usize;
        let au_len = p[3] as usize;
        p = p.get(4 + id_len + au_len + 9..)?;
    }
    if p.len() >= 8 && p[0] == 0 && p[1] == 0 {
        p = &p[8..];
    }
    let h = p.get(..40)?;
    let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
    if h[0] >> 4 != 6 || 40 + plen != p.len() {
        return None;
    }
    Some(p)
}

struct Gre<'a> {
    next: Next,
    payload: &'a [u8],
}

fn parse_gre(d: &[u8]) -> Option<Gre<'_>> {
    let h = d.get(..4)?;
    let flags = u16::from_be_bytes([h[0], h[1]]);
    let proto = u16::from_be_bytes([h[2], h[3]]);
    let version = flags & 0x7;
    let mut len = 4;
    if flags & 0x8000 != 0 {
        len += 4; // checksum + reserved
    }
    if flags & 0x2000 != 0 {
        len += 4; // key
    }
    let seq_present = flags & 0x1000 != 0;
    if seq_present {
        len += 4;
    }
    if version == 1 && flags & 0x0080 != 0 {
        len += 4; // PPTP acknowledgment number
    }
    let mut payload = d.get(len..)?;
    let next = match proto {
        ETH_IPV4 => Next::Ipv4,
        ETH_IPV6 => Next::Ipv6,
        ETH_TEB => Next::Ether,
        0x880b => Next::PppFrame,
        ETH_ERSPAN_II => {
            // Type I has no ERSPAN header (and no GRE sequence number); type II has 8 bytes.
            if seq_present {
                payload = payload.get(8..)?;
            }
            Next::Ether
        }
        ETH_ERSPAN_III => {
            let e = payload.get(..12)?;
            let opt = e[11] & 0x01 != 0;
            payload = payload.get(if opt { 20 } else { 12 }..)?;
            Next::Ether
        }
        ETH_MPLS_UC | ETH_MPLS_MC => Next::Mpls,
        _ => return None,
    };
    Some(Gre { next, payload })
}

/// Find the packet payload TLV (type 9) of an NFLOG frame. TLV lengths and types are in
/// the capturing host's byte order: try little endian, then big endian.
fn nflog_payload(frame: &[u8]) -> Option<&[u8]> {
    let read = |b: [u8; 2], little: bool| if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) };
    for little in [true, false] {
        let mut off = 4;
        while off + 4 <= frame.len() {
            let len = read([frame[off], frame[off + 1]], little) as usize;
            let typ = read([frame[off + 2], frame[off + 3]], little);
            if len < 4 || off + len > frame.len() {
                break; // implausible in this byte order
            }
            if typ & 0x7fff == 9 {
                return Some(&frame[off + 4..off + len]);
            }
            off += (len + 3) & !3;
        }
    }
    None
}

// Needed by defrag for keys and by callers that print addresses.
pub(crate) fn v4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

pub(crate) fn v6(b: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

#[cfg(test)]
mod tests;
