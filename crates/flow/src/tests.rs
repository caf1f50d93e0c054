//! Reassembly tests against a recording handler: each test feeds segments and checks the
//! exact event stream the handler saw.

use super::*;
use apiwatch_wire::{Checksum, TcpSegment};
use std::net::Ipv4Addr;

#[derive(Default)]
struct Rec {
    events: Vec<String>,
}

impl Handler for Rec {
    type Conn = ();
    fn open(&mut self, info: &ConnInfo, _ts: i64) {
        self.events.push(format!("open c={} mid={}", info.client.1, info.midstream));
    }
    fn data(&mut self, _: &mut (), _: &ConnInfo, dir: Dir, data: &[u8], _ts: i64, _acked: Option<u64>) {
        self.events.push(format!("{dir:?} {}", String::from_utf8_lossy(data)));
    }
    fn gap(&mut self, _: &mut (), _: &ConnInfo, dir: Dir, len: u64, _ts: i64) {
        self.events.push(format!("{dir:?} gap {len}"));
    }
    fn fin(&mut self, _: &mut (), _: &ConnInfo, dir: Dir, _ts: i64) {
        self.events.push(format!("{dir:?} fin"));
    }
    fn close(&mut self, _: (), _: &ConnInfo, why: CloseReason, _ts: i64) {
        self.events.push(format!("close {why:?}"));
    }
    fn sniff(&self, p: &[u8]) -> Option<Role> {
        if p.starts_with(b"HTTP/") {
            Some(Role::Server)
        } else if p.starts_with(b"GET ") {
            Some(Role::Client)
        } else {
            None
        }
    }
}

const C: u16 = 40000;
const S: u16 = 80;

/// A segment from the client (`from_client`) or the server.
fn seg(from_client: bool, seq: u32, ack: u32, flags: u8, payload: &'static [u8]) -> TcpSegment<'static> {
    let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let s = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let (src, dst, sport, dport) = if from_client { (c, s, C, S) } else { (s, c, S, C) };
    TcpSegment {
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        window: 1000,
        header: &[],
        payload,
        seg_len: payload.len() as u32,
        checksum: Checksum::Good,
        tunnel_depth: 0,
    }
}

use apiwatch_wire::tcpflags::{ACK, FIN, PSH, RST, SYN};

fn run(segs: &[TcpSegment<'static>]) -> (Vec<String>, FlowStats) {
    run_cfg(segs, FlowConfig::default())
}

fn run_cfg(segs: &[TcpSegment<'static>], cfg: FlowConfig) -> (Vec<String>, FlowStats) {
    let mut t = FlowTable::new(cfg);
    let mut h = Rec::default();
    for (i, s) in segs.iter().enumerate() {
        t.process(s, i as i64 * 1000, i as u64, &mut h);
    }
    t.flush(i64::MAX / 2, &mut h);
    (h.events, t.stats())
}

fn handshake(cisn: u32, sisn: u32) -> Vec<TcpSegment<'static>> {
    vec![
        seg(true, cisn, 0, SYN, b""),
        seg(false, sisn, cisn + 1, SYN | ACK, b""),
        seg(true, cisn + 1, sisn + 1, ACK, b""),
    ]
}

#[test]
fn in_order_both_ways_then_fin() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 101, 501, ACK | PSH, b"GET / "));
    s.push(seg(true, 107, 501, ACK | PSH, b"HTTP/1.1"));
    s.push(seg(false, 501, 115, ACK | PSH, b"HTTP/1.1 200"));
    s.push(seg(true, 115, 513, ACK | FIN, b""));
    s.push(seg(false, 513, 116, ACK | FIN, b""));
    let (ev, st) = run(&s);
    assert_eq!(
        ev,
        [
            "open c=40000 mid=false",
            "ToServer GET / ",
            "ToServer HTTP/1.1",
            "ToClient HTTP/1.1 200",
            "ToServer fin",
            "ToClient fin",
            "close Fin"
        ]
    );
    assert_eq!(st.flows_closed_fin, 1);
    assert_eq!(st.bytes_delivered, 26);
}

#[test]
fn out_of_order_and_retransmit_and_overlap() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 105, 501, ACK, b"efgh")); // early
    s.push(seg(true, 101, 501, ACK, b"abcd"));
    s.push(seg(true, 101, 501, ACK, b"abcd")); // retransmit
    s.push(seg(true, 107, 501, ACK, b"ghij")); // overlaps "gh"
    let (ev, st) = run(&s);
    assert_eq!(ev[1..], ["ToServer abcd", "ToServer efgh", "ToServer ij", "close Shutdown"]);
    assert_eq!(st.bytes_retransmitted, 6);
    assert_eq!(st.segments_out_of_order, 1);
    assert_eq!(st.ooo_bytes_now, 0);
}

#[test]
fn lost_segment_becomes_gap_when_acked() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 101, 501, ACK, b"abcd"));
    // 105..109 lost in the capture; the server acknowledges it anyway.
    s.push(seg(true, 109, 501, ACK, b"ijkl"));
    s.push(seg(false, 501, 113, ACK, b""));
    s.push(seg(false, 501, 113, ACK, b"resp"));
    let (ev, st) = run(&s);
    assert_eq!(ev[1..], ["ToServer abcd", "ToServer gap 4", "ToServer ijkl", "ToClient resp", "close Shutdown"]);
    assert_eq!(st.gaps, 1);
    assert_eq!(st.gap_bytes, 4);
}

#[test]
fn hole_given_up_at_close_and_fin_after_it() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 101, 501, ACK, b"ab"));
    s.push(seg(true, 105, 501, ACK | FIN, b"ef"));
    let (ev, _) = run(&s);
    assert_eq!(ev[1..], ["ToServer ab", "ToServer gap 2", "ToServer ef", "ToServer fin", "close Shutdown"]);
}

#[test]
fn midstream_pickup_oriented_by_payload() {
    // No handshake: the server's response is the first thing we see.
    let s = vec![seg(false, 9000, 7000, ACK, b"HTTP/1.1 200 OK"), seg(true, 7000, 9015, ACK, b"GET /next")];
    let (ev, st) = run(&s);
    assert_eq!(ev, ["open c=40000 mid=true", "ToClient HTTP/1.1 200 OK", "ToServer GET /next", "close Shutdown"]);
    assert_eq!(st.flows_midstream, 1);
}

#[test]
fn sequence_wraparound() {
    let isn = u32::MAX - 2;
    let mut s = handshake(isn, 10);
    s.push(seg(true, isn.wrapping_add(1), 11, ACK, b"ab"));
    s.push(seg(true, isn.wrapping_add(3), 11, ACK, b"cd")); // crosses 2^32
    s.push(seg(true, isn.wrapping_add(5), 11, ACK, b"ef"));
    let (ev, _) = run(&s);
    assert_eq!(ev[1..4], ["ToServer ab", "ToServer cd", "ToServer ef"]);
}

#[test]
fn rst_closes_and_late_packets_do_not_reopen() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 101, 501, ACK, b"abc"));
    s.push(seg(false, 501, 104, RST | ACK, b""));
    s.push(seg(true, 104, 501, ACK, b"late"));
    let (ev, st) = run(&s);
    assert_eq!(ev[1..], ["ToServer abc", "close Rst"]);
    assert_eq!(st.segments_after_close, 1);
    assert_eq!(st.flows_created, 1);
}

#[test]
fn snapped_segment_reports_missing_tail() {
    let mut s = handshake(100, 500);
    let mut cut = seg(true, 101, 501, ACK, b"abcd");
    cut.seg_len = 10;
    s.push(cut);
    s.push(seg(true, 111, 501, ACK, b"next"));
    let (ev, _) = run(&s);
    assert_eq!(ev[1..4], ["ToServer abcd", "ToServer gap 6", "ToServer next"]);
}

#[test]
fn per_flow_cap_forces_gap_and_counts() {
    let cfg = FlowConfig { max_ooo_per_flow: 8, ..FlowConfig::default() };
    let mut s = handshake(100, 500);
    s.push(seg(true, 111, 501, ACK, b"kkkk")); // hole 101..111
    s.push(seg(true, 115, 501, ACK, b"oooo"));
    s.push(seg(true, 119, 501, ACK, b"ssss")); // exceeds cap of 8 buffered bytes
    let (ev, st) = run_cfg(&s, cfg);
    assert_eq!(ev[1..5], ["ToServer gap 10", "ToServer kkkk", "ToServer oooo", "ToServer ssss"]);
    assert_eq!(st.ooo_dropped_flow_cap, 8);
    assert_eq!(st.ooo_bytes_now, 0);
}

#[test]
fn table_is_bounded() {
    let cfg = FlowConfig { max_flows: 4, ..FlowConfig::default() };
    let mut t = FlowTable::new(cfg);
    let mut h = Rec::default();
    for i in 0..20u16 {
        let mut s = seg(true, 1, 0, SYN, b"");
        s.sport = 1000 + i;
        t.process(&s, 0, i as u64, &mut h);
    }
    let st = t.stats();
    assert_eq!(st.flows_active, 4);
    assert_eq!(st.flows_dropped_table_full, 16);
}

#[test]
fn idle_flows_time_out_in_packet_time() {
    let cfg = FlowConfig { idle_timeout_ns: 5_000, ..FlowConfig::default() };
    let mut t = FlowTable::new(cfg);
    let mut h = Rec::default();
    let a = seg(true, 1, 0, ACK, b"GET x");
    t.process(&a, 0, 0, &mut h);
    let mut b = seg(true, 1, 0, ACK, b"GET y");
    b.sport = 5;
    t.process(&b, 2_000_000_000, 1, &mut h);
    assert!(h.events.contains(&"close Timeout".to_string()), "{:?}", h.events);
    assert_eq!(t.stats().flows_timed_out, 1);
}

#[test]
fn ack_seen_just_before_the_data_it_acknowledges_is_not_a_gap() {
    // Captures merged from several queues can show the receiver's ACK a little before the
    // segment it acknowledges.
    let mut s = handshake(100, 500);
    s.push(seg(false, 505, 101, ACK, b"efgh")); // early
    s.push(seg(true, 101, 509, ACK, b"")); // client already acknowledges 501..509
    s.push(seg(false, 501, 101, ACK, b"abcd")); // the segment it acknowledged
    let (ev, st) = run(&s);
    assert_eq!(ev[1..], ["ToClient abcd", "ToClient efgh", "close Shutdown"]);
    assert_eq!(st.gaps, 0);
}

#[test]
fn data_acknowledging_a_lost_request_flushes_it_first() {
    let mut s = handshake(100, 500);
    s.push(seg(true, 105, 501, ACK, b"GET2")); // 101..105 lost
    s.push(seg(false, 501, 109, ACK, b"resp")); // the server read up to 109
    let (ev, _) = run(&s);
    assert_eq!(ev[1..], ["ToServer gap 4", "ToServer GET2", "ToClient resp", "close Shutdown"]);
}

#[test]
fn tick_expires_idle_flows_without_packets() {
    let cfg = FlowConfig { idle_timeout_ns: 5_000, ..FlowConfig::default() };
    let mut t = FlowTable::new(cfg);
    let mut h = Rec::default();
    t.process(&seg(true, 1, 0, ACK, b"GET x"), 0, 0, &mut h);
    t.tick(1_000, &mut h);
    assert_eq!(t.stats().flows_active, 1);
    t.tick(2_000_000_000, &mut h);
    assert_eq!(t.stats().flows_active, 0);
    assert!(h.events.contains(&"close Timeout".to_string()));
}
