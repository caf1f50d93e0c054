//! Constants and the IP layer: checked parsing of IPv4 and IPv6 headers.

use crate::{v4, v6, SkipReason};
use std::net::IpAddr;

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const ETH_QINQ_OLD: u16 = 0x9100;
pub const ETH_MPLS_UC: u16 = 0x8847;
pub const ETH_MPLS_MC: u16 = 0x8848;
pub const ETH_PPPOE_SESSION: u16 = 0x8864;
/// Transparent Ethernet bridging (GRE, Geneve carrying Ethernet).
pub const ETH_TEB: u16 = 0x6558;
pub const ETH_ERSPAN_II: u16 = 0x88be;
pub const ETH_ERSPAN_III: u16 = 0x22eb;

pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_GRE: u8 = 47;

/// Fragment fields of an IP header, present when the datagram is a fragment.
#[derive(Debug, Clone, Copy)]
pub struct FragInfo {
    pub id: u32,
    /// Byte offset of this fragment in the datagram payload.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

/// A parsed IP header with its payload.
#[derive(Debug, Clone, Copy)]
pub struct IpHeader<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Captured payload, trimmed to what the header announces (Ethernet padding removed).
    pub payload: &'a [u8],
    /// Payload length announced by the header (may exceed `payload.len()` on snapped frames).
    pub claimed_len: usize,
    pub fragment: Option<FragInfo>,
}

pub fn parse_ipv4(d: &[u8]) -> Result<IpHeader<'_>, SkipReason> {
    let h = d.get(..20).ok_or(SkipReason::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(SkipReason::Malformed);
    }
    let ihl = (h[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        return Err(SkipReason::Malformed);
    }
    if d.len() < ihl {
        return Err(SkipReason::Truncated);
    }
    let mut total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total == 0 {
        // Segmentation offload on the capturing host can leave the length at 0.
        total = d.len();
    }
    if total < ihl {
        return Err(SkipReason::Malformed);
    }
    let end = total.min(d.len());
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let more = frag & 0x2000 != 0;
    let offset = (frag & 0x1fff) as u32 * 8;
    let fragment =
        (more || offset != 0).then_some(FragInfo { id: u16::from_be_bytes([h[4], h[5]]) as u32, offset, more });
    Ok(IpHeader {
        src: v4(&h[12..16]),
        dst: v4(&h[16..20]),
        proto: h[9],
        payload: &d[ihl..end],
        claimed_len: total - ihl,
        fragment,
    })
}

pub fn parse_ipv6(d: &[u8]) -> Result<IpHeader<'_>, SkipReason> {
    let h = d.get(..40).ok_or(SkipReason::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(SkipReason::Malformed);
    }
    let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
    // Payload length 0 is a jumbogram or offload: trust the capture.
    let claimed = if plen == 0 { d.len() - 40 } else { plen };
    let end = (40 + claimed).min(d.len());
    let mut next = h[6];
    let mut off = 40;
    let mut fragment = None;
    // Walk extension headers. Each iteration consumes at least 8 bytes, so this ends.
    loop {
        match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let e = d.get(off..off + 2).filter(|_| off + 2 <= end).ok_or(SkipReason::Truncated)?;
                next = e[0];
                off += (e[1] as usize + 1) * 8;
            }
            44 => {
                let e = d.get(off..off + 8).filter(|_| off + 8 <= end).ok_or(SkipReason::Truncated)?;
                next = e[0];
                let fo = u16::from_be_bytes([e[2], e[3]]);
                let offset = (fo & 0xfff8) as u32;
                let more = fo & 1 != 0;
                if more || offset != 0 {
                    fragment = Some(FragInfo { id: u32::from_be_bytes([e[4], e[5], e[6], e[7]]), offset, more });
                }
                off += 8;
            }
            // Authentication header: length in 4-byte words, minus 2.
            51 => {
                let e = d.get(off..off + 2).filter(|_| off + 2 <= end).ok_or(SkipReason::Truncated)?;
                next = e[0];
                off += (e[1] as usize + 2) * 4;
            }
            _ => break,
        }
        if off > end {
            return Err(SkipReason::Truncated);
        }
    }
    Ok(IpHeader {
        src: v6(&h[8..24]),
        dst: v6(&h[24..40]),
        proto: next,
        payload: &d[off..end],
        claimed_len: (40 + claimed).saturating_sub(off),
        fragment,
    })
}
