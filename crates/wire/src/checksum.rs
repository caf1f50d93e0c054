//! Internet checksum (RFC 1071), summed 8 bytes at a time.

use std::net::IpAddr;

/// Ones'-complement sum of `data` folded to 16 bits, not inverted, starting from `initial`.
pub fn ones_complement_sum(data: &[u8], initial: u64) -> u16 {
    let mut acc: u64 = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves: no overflow of the 64-bit accumulator for any
        // realistic length (2^32 words).
        acc += w >> 32;
        acc += w & 0xffff_ffff;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether the TCP segment `tcp` (header and payload, complete) carries a correct checksum.
pub fn tcp_checksum_ok(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> bool {
    let mut pseudo: u64 = 6 + tcp.len() as u64;
    let mut add = |b: &[u8]| {
        for p in b.chunks_exact(2) {
            pseudo += u16::from_be_bytes([p[0], p[1]]) as u64;
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => return false,
    }
    ones_complement_sum(tcp, pseudo) == 0xffff
}
