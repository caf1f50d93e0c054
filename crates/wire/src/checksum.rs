//! Internet checksum (RFC 1071), summed 8 bytes at a time.

use std::net::IpAddr;

/// Ones'-complement sum of `data` folded to 16 bits, not inverted, starting from `initial`.
pub fn ones_complement_sum(data: &[u8], initial: u64) -> u16 {
    // The sum is independent of byte order up to a final swap (RFC 1071, 2.B): add the data
    // as little-endian 32-bit words into eight 64-bit lanes (which the compiler turns into
    // vector adds; no lane can overflow for any frame size), fold, then swap to network order.
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (k, lane) in lanes.iter_mut().enumerate() {
            *lane += u64::from(u32::from_le_bytes([b[k * 4], b[k * 4 + 1], b[k * 4 + 2], b[k * 4 + 3]]));
        }
    }
    let mut sum: u64 = lanes.iter().sum();
    let rest = blocks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u64::from(u16::from_le_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        sum += u64::from(rest[i]);
    }
    let mut folded = fold(sum) as u16;
    folded = folded.swap_bytes();
    fold(u64::from(folded) + fold(initial)) as u16
}

/// Fold a 64-bit sum of 16-bit words into 16 bits with end-around carry.
fn fold(mut sum: u64) -> u64 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Whether the TCP segment `tcp` (header and payload, complete) carries a correct checksum.
pub fn tcp_checksum_ok(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> bool {
    tcp_checksum_ok_parts(src, dst, &[], tcp)
}

/// [`tcp_checksum_ok`] over a header and a payload held apart (the header's length is a
/// multiple of four, so the two sums simply add).
pub fn tcp_checksum_ok_parts(src: IpAddr, dst: IpAddr, header: &[u8], payload: &[u8]) -> bool {
    let tcp_len = header.len() + payload.len();
    let mut pseudo: u64 = 6 + tcp_len as u64;
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
    if !header.len().is_multiple_of(2) {
        return false;
    }
    let head = ones_complement_sum(header, pseudo);
    ones_complement_sum(payload, u64::from(head)) == 0xffff
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
    fn a_checksum_over_header_and_payload_apart_equals_one_over_both() {
        let (src, dst): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for len in [20usize, 21, 40, 61, 1480] {
            let mut tcp: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            // Set the checksum field so that the segment is correct.
            tcp[16] = 0;
            tcp[17] = 0;
            let mut pseudo = 6 + len as u64;
            for p in [10u64 << 8, 1, 10 << 8, 2] {
                pseudo += p;
            }
            let c = !ones_complement_sum(&tcp, pseudo);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            assert!(tcp_checksum_ok(src, dst, &tcp), "length {len}");
            for hl in [20usize, 20.min(len), 4] {
                assert!(tcp_checksum_ok_parts(src, dst, &tcp[..hl], &tcp[hl..]), "length {len}, split {hl}");
            }
            tcp[len - 1] ^= 1;
            assert!(!tcp_checksum_ok_parts(src, dst, &tcp[..20], &tcp[20..]));
        }
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
        // The largest IP payloads, and a pseudo-header sum carried in.
        assert_eq!(ones_complement_sum(&[0xff; 65535], 0), slow(&[0xff; 65535]));
        for (len, initial) in [(0usize, 0x1_fffeu64), (1, 0xffff), (33, 0x2_0006), (1500, 0xdead_beef)] {
            let v: Vec<u8> = (0..len).map(|i| (i * 151 % 256) as u8).collect();
            let want = fold(u64::from(slow(&v)) + initial) as u16;
            assert_eq!(ones_complement_sum(&v, initial), want, "length {len}, initial {initial:#x}");
        }
    }
}
