//! Two byte streams (client, server) cut into random pieces, with gaps and FINs, straight
//! into the HTTP stage.
#![no_main]
use apiwatch_flow::{CloseReason, ConnInfo, Dir, Handler};
use apiwatch_http1::{HttpConfig, HttpHandler};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

fuzz_target!(|data: &[u8]| {
    let mut h = HttpHandler::new(HttpConfig { max_header_bytes: 1024, body_sample_bytes: 512, ..HttpConfig::default() });
    let info = ConnInfo {
        id: 1,
        client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
        server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80),
        first_ts: 0,
        midstream: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut c = h.open(&info, 0);
    // Pieces: a control byte, then up to 63 bytes. Control: direction, gap, fin.
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut t = 0;
    while let Some((&ctl, tail)) = rest.split_first() {
        let n = ((ctl & 0x3f) as usize).min(tail.len());
        let (piece, tail) = tail.split_at(n);
        rest = tail;
        let dir = if ctl & 0x40 == 0 { Dir::ToServer } else { Dir::ToClient };
        t += 1;
        if ctl & 0x80 != 0 && n == 0 {
            h.fin(&mut c, &info, dir, t);
        } else if ctl & 0x80 != 0 {
            h.gap(&mut c, &info, dir, n as u64, t);
        } else {
            h.data(&mut c, &info, dir, piece, t, None);
        }
        h.out.clear();
    }
    h.close(c, &info, CloseReason::Shutdown, t);
});
