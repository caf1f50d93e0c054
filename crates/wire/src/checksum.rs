//! Internet checksum (RFC 1071), summed 8 bytes at a time.

use std::net::IpAddr;

/// Ones'-complement sum of `data` folded to 16 bits, not inverted, starting from `initial`.
pub fn ones_complement_sum(data: &[u8], initial: u64) -> u16 {
    // Four independent accumulators over 32-byte blocks, then 8-byte words. Adding 32-bit
    // halves into 64-bit accumulators cannot overflow for any frame size.
    let mut acc = [initial, 0u64, 0u64, 0u64];
    let word = |c: &[u8]| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            let w = word(&b[k * 8..k * 8 + 8]);
            *a += (w >> 32) + (w & 0xffff_ffff);
        }
    }
    let mut sum = acc.iter().fold(0u64, |s, &a| {
        let (v, carry) = s.overflowing_add(a);
        v + carry as u64
    });
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        let w = word(c);
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = words.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        sum += (rest[i] as u64) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071, two bytes at a time: the reference.
    fn slow(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for c in data.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn fast_sum_equals_the_reference() {
        let mut x: u32 = 3;
        for len in 0..300 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect();
            assert_eq!(ones_complement_sum(&v, 0), slow(&v), "length {len}");
        }
        assert_eq!(ones_complement_sum(&[0xff; 4096], 0), slow(&[0xff; 4096]));
    }
}
