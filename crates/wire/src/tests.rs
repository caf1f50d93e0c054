//! Unit tests on hand-built frames: one per encapsulation, plus checksums and fragments.
//! Real captures are exercised by the integration tests under `tests/`.

use super::*;

fn tcp_bytes(payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = tcpflags::ACK | tcpflags::PSH;
    t.extend_from_slice(payload);
    t
}

fn with_tcp_checksum(src: [u8; 4], dst: [u8; 4], mut tcp: Vec<u8>) -> Vec<u8> {
    let mut pseudo = 6u64 + tcp.len() as u64;
    for p in src.chunks(2).chain(dst.chunks(2)) {
        pseudo += u16::from_be_bytes([p[0], p[1]]) as u64;
    }
    let sum = !ones_complement_sum(&tcp, pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    tcp
}

fn ipv4(proto: u8, id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 12];
    e.extend_from_slice(&ethertype.to_be_bytes());
    e.extend_from_slice(payload);
    e
}

fn expect_tcp(o: Outcome<'_>, payload: &[u8], depth: u8) {
    match o {
        Outcome::Tcp(s) => {
            assert_eq!(s.payload, payload);
            assert_eq!(s.sport, 40000);
            assert_eq!(s.dport, 80);
            assert_eq!(s.tunnel_depth, depth);
        }
        Outcome::Skip(r) => panic!("expected a TCP segment, got skip {r:?}"),
    }
}

#[test]
fn ethernet_ipv4_tcp_with_padding_and_good_checksum() {
    let tcp = with_tcp_checksum([10, 0, 0, 1], [10, 0, 0, 2], tcp_bytes(b"GET"));
    let mut f = ether(ETH_IPV4, &ipv4(6, 1, 0, &tcp));
    f.extend_from_slice(&[0u8; 6]); // Ethernet trailer padding
    let mut d = Decoder::new(DecoderConfig::default());
    match d.decode(linktype::ETHERNET, &f, 0) {
        Outcome::Tcp(s) => {
            assert_eq!(s.payload, b"GET");
            assert_eq!(s.checksum, Checksum::Good);
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn bad_checksum_is_decoded_and_flagged() {
    let f = ether(ETH_IPV4, &ipv4(6, 1, 0, &tcp_bytes(b"GET")));
    let mut d = Decoder::new(DecoderConfig::default());
    match d.decode(linktype::ETHERNET, &f, 0) {
        Outcome::Tcp(s) => assert_eq!(s.checksum, Checksum::Bad),
        o => panic!("{o:?}"),
    }
}

#[test]
fn qinq_mpls_pppoe() {
    let ip = ipv4(6, 1, 0, &tcp_bytes(b"x"));
    // QinQ: outer 802.1ad, inner 802.1Q, then IPv4.
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    let mut d = Decoder::new(DecoderConfig::default());
    expect_tcp(d.decode(linktype::ETHERNET, &f, 0), b"x", 0);
    // MPLS: two labels, bottom of stack on the second.
    let mut m = vec![0, 0, 0x10, 64, 0, 0, 0x21, 64];
    m.extend_from_slice(&ip);
    expect_tcp(d.decode(linktype::ETHERNET, &ether(ETH_MPLS_UC, &m), 0), b"x", 0);
    // PPPoE session with PPP IPv4.
    let mut p = vec![0x11, 0, 0, 1];
    p.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    p.extend_from_slice(&[0x00, 0x21]);
    p.extend_from_slice(&ip);
    expect_tcp(d.decode(linktype::ETHERNET, &ether(ETH_PPPOE_SESSION, &p), 0), b"x", 0);
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&5555u16.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

#[test]
fn vxlan_geneve_gre_erspan() {
    let inner = ether(ETH_IPV4, &ipv4(6, 1, 0, &tcp_bytes(b"in")));
    let mut d = Decoder::new(DecoderConfig::default());
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&inner);
    let f = ether(ETH_IPV4, &ipv4(17, 2, 0, &udp(4789, &vx)));
    expect_tcp(d.decode(linktype::ETHERNET, &f, 0), b"in", 1);

    let mut gen = vec![0x00, 0, 0x65, 0x58, 0, 0, 1, 0];
    gen.extend_from_slice(&inner);
    let f = ether(ETH_IPV4, &ipv4(17, 3, 0, &udp(6081, &gen)));
    expect_tcp(d.decode(linktype::ETHERNET, &f, 0), b"in", 1);

    // ERSPAN type II: GRE with sequence number, 8-byte ERSPAN header.
    let mut gre = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1];
    gre.extend_from_slice(&[0x10, 0, 0, 1, 0, 0, 0, 0]);
    gre.extend_from_slice(&inner);
    let f = ether(ETH_IPV4, &ipv4(47, 4, 0, &gre));
    expect_tcp(d.decode(linktype::ETHERNET, &f, 0), b"in", 1);

    // Plain GRE carrying IPv4 directly.
    let mut gre = vec![0x00, 0x00, 0x08, 0x00];
    gre.extend_from_slice(&ipv4(6, 5, 0, &tcp_bytes(b"in")));
    let f = ether(ETH_IPV4, &ipv4(47, 6, 0, &gre));
    expect_tcp(d.decode(linktype::ETHERNET, &f, 0), b"in", 1);
}

#[test]
fn ipv4_fragments_reassemble_in_any_order() {
    let tcp = tcp_bytes(&[b'a'; 100]);
    let (a, b) = tcp.split_at(64);
    let f1 = ether(ETH_IPV4, &ipv4(6, 77, 0x2000, a));
    let f2 = ether(ETH_IPV4, &ipv4(6, 77, 64 / 8, b));
    let mut d = Decoder::new(DecoderConfig::default());
    assert!(matches!(d.decode(linktype::ETHERNET, &f2, 0), Outcome::Skip(SkipReason::FragmentHeld)));
    expect_tcp(d.decode(linktype::ETHERNET, &f1, 1), &[b'a'; 100], 0);
    assert_eq!(d.defrag_stats().reassembled, 1);
    assert_eq!(d.defrag_stats().held_now, 0);
}

#[test]
fn fragment_table_is_bounded() {
    let lim = DefragLimits { max_datagrams: 2, ..DefragLimits::default() };
    let mut d = Decoder::new(DecoderConfig { defrag: lim, ..DecoderConfig::default() });
    for id in 0..10u16 {
        let f = ether(ETH_IPV4, &ipv4(6, id, 0x2000, &[0u8; 16]));
        let _ = d.decode(linktype::ETHERNET, &f, 0);
    }
    assert_eq!(d.defrag_stats().held_now, 2);
    assert_eq!(d.defrag_stats().dropped_table_full, 8);
}

#[test]
fn ipv6_with_extension_headers_and_sll2() {
    let tcp = tcp_bytes(b"v6");
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
    ip[4..6].copy_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
    ip[6] = 60; // destination options first
    ip.extend_from_slice(&[0u8; 32]);
    ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // dest opts: next TCP, len 0 (8 bytes)
    ip.extend_from_slice(&tcp);
    let mut f = vec![0x86, 0xdd];
    f.extend_from_slice(&[0u8; 18]);
    f.extend_from_slice(&ip);
    let mut d = Decoder::new(DecoderConfig::default());
    expect_tcp(d.decode(linktype::LINUX_SLL2, &f, 0), b"v6", 0);
}

#[test]
fn garbage_never_panics() {
    let mut d = Decoder::new(DecoderConfig::default());
    let mut x: u32 = 12345;
    for len in 0..400usize {
        let mut f = vec![0u8; len];
        for b in f.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        for lt in [0, 1, 101, 108, 113, 228, 229, 239, 276, 9999] {
            let _ = d.decode(lt, &f, len as i64);
        }
    }
}
