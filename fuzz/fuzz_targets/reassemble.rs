//! A sequence of TCP segments (both directions, arbitrary sequence numbers, flags and
//! payloads) through the flow table with the HTTP stage on top.
#![no_main]
use apiwatch_flow::{FlowConfig, FlowTable};
use apiwatch_http1::{HttpConfig, HttpHandler};
use apiwatch_wire::{Checksum, TcpSegment};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

fuzz_target!(|data: &[u8]| {
    let cfg = FlowConfig { max_ooo_per_flow: 4096, max_ooo_total: 16384, max_flows: 8, ..FlowConfig::default() };
    let mut table = FlowTable::new(cfg);
    let mut http = HttpHandler::new(HttpConfig { max_header_bytes: 512, body_sample_bytes: 256, ..HttpConfig::default() });
    let (c, s) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    let mut rest = data;
    let mut i = 0u64;
    // Record: dir/port (1), flags (1), seq (2), ack (2), len (1), payload.
    while rest.len() >= 7 {
        let (h, tail) = rest.split_at(7);
        let len = (h[6] as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let from_client = h[0] & 1 == 0;
        let cport = 40000 + (h[0] >> 1) as u16 % 3;
        let (src, dst, sport, dport) = if from_client { (c, s, cport, 80) } else { (s, c, 80, cport) };
        let seg = TcpSegment {
            src,
            dst,
            sport,
            dport,
            seq: u16::from_be_bytes([h[2], h[3]]) as u32 * 7,
            ack: u16::from_be_bytes([h[4], h[5]]) as u32 * 7,
            flags: h[1],
            window: 1000,
            header: &[],
            payload,
            seg_len: payload.len() as u32 + (h[1] >> 6) as u32,
            checksum: Checksum::Unchecked,
            tunnel_depth: 0,
        };
        table.process(&seg, i as i64 * 1_000_000, i, &mut http);
        http.out.clear();
        i += 1;
    }
    table.flush(i as i64 * 1_000_000, &mut http);
});
