//! Flow table and bidirectional TCP reassembly.
//!
//! [`FlowTable::process`] takes decoded TCP segments in capture order and turns each
//! connection into two ordered byte streams, handed to a [`Handler`] as `data`, `gap`,
//! `fin` and `close` events. The table owns one `Handler::Conn` per connection (the HTTP
//! layer's state), so the handler itself keeps no per-flow map.
//!
//! # Policies
//! - **Overlaps and retransmissions**: first copy wins. Bytes already delivered are never
//!   delivered again; a buffered out-of-order segment is not overwritten by a later copy.
//!   Retransmitted and overlapping bytes are counted.
//! - **Gaps**: a hole is given up on, and reported as a `gap` of its exact length, when the
//!   receiver acknowledged data past it (it will not be retransmitted, the capture lost
//!   it), when the per-flow or global out-of-order cap is reached, when a FIN sits past it,
//!   or when the flow closes or times out. Snapped segments (captured shorter than sent)
//!   are reported as a gap for the missing tail.
//! - **Midstream pickup**: a flow whose SYN we did not see starts at the first sequence
//!   number seen in each direction. Who is the client is decided by the SYN, else by
//!   [`Handler::sniff`] on the first payload, else by ports.
//! - **Time** is packet time: idle flows expire after [`FlowConfig::idle_timeout_ns`];
//!   closed flows linger for [`FlowConfig::closed_linger_ns`] to absorb late packets.
//! - **Bounds**: at most `max_flows` flows, `max_ooo_per_flow` buffered bytes per
//!   direction and `max_ooo_total` in all. Every refusal is counted in [`FlowStats`].

use ahash::RandomState;
use apiwatch_wire::{tcpflags, TcpSegment};
use std::collections::HashMap;
use std::net::IpAddr;

mod half;
use half::{Half, Push};

#[cfg(test)]
mod tests;

/// Direction of a byte stream within a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server (requests).
    ToServer,
    /// Server to client (responses).
    ToClient,
}

/// What the start of a payload suggests about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and all data was delivered.
    Fin,
    Rst,
    /// No packet for the idle timeout.
    Timeout,
    /// Evicted to make room in a full table.
    Evicted,
    /// End of input (replay) or shutdown.
    Shutdown,
    /// A new SYN reused the 4-tuple.
    Reused,
}

/// Facts about a connection, fixed when it is created (and oriented).
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Stable, unique within one replay: the capture index of the connection's first packet.
    pub id: u64,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub first_ts: i64,
    /// The SYN was not seen: the capture started in the middle of the connection.
    pub midstream: bool,
}

/// Receiver of reassembled streams.
pub trait Handler {
    /// Per-connection state, owned by the flow table.
    type Conn;
    fn open(&mut self, info: &ConnInfo, ts: i64) -> Self::Conn;
    /// Bytes of the stream in `dir`, in order. `peer_acked` is the offset in the opposite
    /// stream that the segment carrying these bytes acknowledged (how much of the other
    /// side the sender had received), when known: it lets the HTTP layer pair responses
    /// with requests after losses.
    fn data(&mut self, conn: &mut Self::Conn, info: &ConnInfo, dir: Dir, data: &[u8], ts: i64, peer_acked: Option<u64>);
    /// `len` bytes of the stream are missing before the next `data`.
    fn gap(&mut self, conn: &mut Self::Conn, info: &ConnInfo, dir: Dir, len: u64, ts: i64);
    /// The stream in `dir` ended (FIN) after everything before it was delivered.
    fn fin(&mut self, conn: &mut Self::Conn, info: &ConnInfo, dir: Dir, ts: i64);
    /// The connection is gone; flush what is pending.
    fn close(&mut self, conn: Self::Conn, info: &ConnInfo, why: CloseReason, ts: i64);
    /// Guess the sender's role from the first bytes it sent, if they are telling.
    fn sniff(&self, payload: &[u8]) -> Option<Role>;
}

#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub max_flows: usize,
    pub max_ooo_per_flow: usize,
    pub max_ooo_total: usize,
    pub idle_timeout_ns: i64,
    pub closed_linger_ns: i64,
    /// How often (packet time) idle flows are swept.
    pub sweep_interval_ns: i64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 200_000,
            max_ooo_per_flow: 512 << 10,
            max_ooo_total: 64 << 20,
            idle_timeout_ns: 300_000_000_000,
            closed_linger_ns: 10_000_000_000,
            sweep_interval_ns: 1_000_000_000,
        }
    }
}

/// Counters of the flow table. Names match the metric names in the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub flows_created: u64,
    pub flows_midstream: u64,
    pub flows_closed_fin: u64,
    pub flows_closed_rst: u64,
    pub flows_timed_out: u64,
    pub flows_evicted: u64,
    pub flows_reused: u64,
    /// New flows refused because the table was full of active flows.
    pub flows_dropped_table_full: u64,
    pub flows_active: u64,
    pub segments: u64,
    /// Segments that belong to a closed, lingering flow.
    pub segments_after_close: u64,
    pub bytes_delivered: u64,
    pub bytes_retransmitted: u64,
    pub segments_out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Out-of-order bytes dropped because a cap was hit (each such hit also forces a gap).
    pub ooo_dropped_flow_cap: u64,
    pub ooo_dropped_global_cap: u64,
    pub ooo_bytes_now: u64,
    pub ooo_bytes_peak: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl Key {
    /// Canonical key and the side (0 = `lo`) the segment was sent from.
    fn of(seg: &TcpSegment<'_>) -> (Key, usize) {
        let a = (seg.src, seg.sport);
        let b = (seg.dst, seg.dport);
        if a <= b {
            (Key { lo: a, hi: b }, 0)
        } else {
            (Key { lo: b, hi: a }, 1)
        }
    }

    fn end(&self, side: usize) -> (IpAddr, u16) {
        if side == 0 {
            self.lo
        } else {
            self.hi
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Done; kept until `linger_until` so late packets do not open a ghost flow.
    Closed,
}

struct Flow<C> {
    key: Key,
    id: u64,
    first_ts: i64,
    last_ts: i64,
    state: State,
    halves: [Half; 2],
    /// Which side is the client, once known.
    client_side: Option<usize>,
    midstream: bool,
    syn_seen: bool,
    conn: Option<C>,
    info: Option<ConnInfo>,
}

/// The flow table. One per worker; flows are sharded by key upstream.
pub struct FlowTable<H: Handler> {
    cfg: FlowConfig,
    map: HashMap<Key, usize, RandomState>,
    /// Boxed: a flow is taken out of its slot for each packet, and moving a pointer is
    /// cheaper than moving the flow (hundreds of bytes).
    slots: Vec<Option<Box<Flow<H::Conn>>>>,
    free: Vec<usize>,
    stats: FlowStats,
    ooo_total: usize,
    next_sweep: i64,
    last_ts: i64,
    /// Reused event buffer: the in-order path allocates nothing per segment.
    scratch: Vec<half::Ev>,
}

impl<H: Handler> FlowTable<H> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            map: HashMap::with_hasher(RandomState::new()),
            slots: Vec::new(),
            free: Vec::new(),
            stats: FlowStats::default(),
            ooo_total: 0,
            next_sweep: i64::MIN,
            last_ts: i64::MIN,
            scratch: Vec::new(),
        }
    }

    pub fn stats(&self) -> FlowStats {
        FlowStats { flows_active: self.map.len() as u64, ooo_bytes_now: self.ooo_total as u64, ..self.stats }
    }

    /// Feed one segment captured at `ts` (ns); `pkt` is its capture index (used as the
    /// id of a connection it opens).
    pub fn process(&mut self, seg: &TcpSegment<'_>, ts: i64, pkt: u64, h: &mut H) {
        self.stats.segments += 1;
        self.last_ts = self.last_ts.max(ts);
        if self.last_ts >= self.next_sweep {
            self.next_sweep = self.last_ts.saturating_add(self.cfg.sweep_interval_ns);
            self.sweep(self.last_ts, h, false);
        }
        let (key, side) = Key::of(seg);
        let idx = match self.map.get(&key) {
            Some(&i) => i,
            None => match self.create(key, side, seg, ts, pkt, h) {
                Some(i) => i,
                None => return,
            },
        };
        let mut flow = self.slots[idx].take().expect("mapped slot is occupied");
        let keep = self.on_segment(&mut flow, side, seg, ts, h);
        match keep {
            Keep::Yes => self.slots[idx] = Some(flow),
            Keep::Replace => {
                // Port reuse: close the old connection, then treat this SYN as new.
                self.finish(&mut flow, CloseReason::Reused, ts, h);
                self.stats.flows_reused += 1;
                self.release(idx, &flow.key);
                if let Some(i) = self.create(key, side, seg, ts, pkt, h) {
                    let mut nf = self.slots[i].take().expect("created");
                    let _ = self.on_segment(&mut nf, side, seg, ts, h);
                    self.slots[i] = Some(nf);
                }
            }
        }
    }

    /// Let time pass without a packet (live capture on an idle link): idle flows expire as
    /// they would if a packet had arrived at `ts`.
    pub fn tick(&mut self, ts: i64, h: &mut H) {
        if ts > self.last_ts && ts >= self.next_sweep {
            self.last_ts = ts;
            self.next_sweep = ts.saturating_add(self.cfg.sweep_interval_ns);
            self.sweep(ts, h, false);
        }
    }

    /// Close every flow (end of input). Connections are closed in order of their id.
    pub fn flush(&mut self, ts: i64, h: &mut H) {
        let mut idxs: Vec<usize> = self.map.values().copied().collect();
        idxs.sort_by_key(|&i| self.slots[i].as_ref().map(|f| f.id));
        for i in idxs {
            if let Some(mut f) = self.slots[i].take() {
                self.finish(&mut f, CloseReason::Shutdown, ts, h);
                self.release(i, &f.key);
            }
        }
    }

    fn create(&mut self, key: Key, side: usize, seg: &TcpSegment<'_>, ts: i64, pkt: u64, h: &mut H) -> Option<usize> {
        if self.map.len() >= self.cfg.max_flows {
            // Try to make room: closed flows and flows idle for a tenth of the timeout.
            self.sweep(ts, h, true);
            if self.map.len() >= self.cfg.max_flows {
                self.stats.flows_dropped_table_full += 1;
                return None;
            }
        }
        // A flow that starts with a bare RST or FIN carries nothing worth a flow entry.
        if seg.payload.is_empty() && seg.has(tcpflags::RST) {
            return None;
        }
        let syn = seg.has(tcpflags::SYN);
        let client_side = if syn { Some(if seg.has(tcpflags::ACK) { 1 - side } else { side }) } else { None };
        let flow = Box::new(Flow {
            key,
            id: pkt,
            first_ts: ts,
            last_ts: ts,
            state: State::Open,
            halves: [Half::default(), Half::default()],
            client_side,
            midstream: !syn,
            syn_seen: false,
            conn: None,
            info: None,
        });
        self.stats.flows_created += 1;
        if !syn {
            self.stats.flows_midstream += 1;
        }
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(flow);
                i
            }
            None => {
                self.slots.push(Some(flow));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, idx);
        Some(idx)
    }

    fn release(&mut self, idx: usize, key: &Key) {
        self.map.remove(key);
        self.slots[idx] = None;
        self.free.push(idx);
    }

    /// Orient the flow (if not yet) and open the handler's connection state.
    fn ensure_open(&mut self, f: &mut Flow<H::Conn>, side: usize, payload: &[u8], h: &mut H) {
        if f.conn.is_some() {
            return;
        }
        let client_side = match f.client_side {
            Some(s) => s,
            None => {
                let s = match h.sniff(payload) {
                    Some(Role::Client) => side,
                    Some(Role::Server) => 1 - side,
                    None => port_guess(f.key.lo.1, f.key.hi.1),
                };
                f.client_side = Some(s);
                s
            }
        };
        let info = ConnInfo {
            id: f.id,
            client: f.key.end(client_side),
            server: f.key.end(1 - client_side),
            first_ts: f.first_ts,
            midstream: f.midstream,
        };
        f.conn = Some(h.open(&info, f.first_ts));
        f.info = Some(info);
    }

    fn on_segment(&mut self, f: &mut Flow<H::Conn>, side: usize, seg: &TcpSegment<'_>, ts: i64, h: &mut H) -> Keep {
        f.last_ts = ts;
        let syn = seg.has(tcpflags::SYN);
        if f.state == State::Closed {
            // A fresh SYN after the connection closed starts a new connection.
            if syn && !seg.has(tcpflags::ACK) {
                return Keep::Replace;
            }
            self.stats.segments_after_close += 1;
            return Keep::Yes;
        }
        if syn {
            let hf = &f.halves[side];
            let isn_next = seg.seq.wrapping_add(1);
            if hf.synced && hf.next_seq != isn_next && !seg.has(tcpflags::ACK) && hf.delivered > 0 {
                // A SYN with a new ISN on a live 4-tuple: the old connection is gone.
                return Keep::Replace;
            }
            if !f.syn_seen && !seg.has(tcpflags::ACK) {
                f.syn_seen = true;
                f.midstream = f.midstream && f.halves.iter().any(|h| h.delivered > 0);
            }
            if f.client_side.is_none() {
                f.client_side = Some(if seg.has(tcpflags::ACK) { 1 - side } else { side });
            }
        }
        if !seg.payload.is_empty() || seg.seg_len > 0 {
            self.ensure_open(f, side, seg.payload, h);
        }

        if seg.has(tcpflags::ACK) {
            let other = 1 - side;
            f.halves[other].note_peer_ack(seg.ack);
            // Data that acknowledges bytes of the other direction was sent after them: if
            // those bytes sit behind a hole, the hole is lost for good, and they must reach
            // the handler before this data (a response after its request).
            if !seg.payload.is_empty() {
                let mut guard = 0;
                while f.halves[other].hole_acked() && guard < 64 {
                    guard += 1;
                    self.push_events(f, other, ts, h, |half, t| half.give_up_first_hole(t));
                }
            }
        }

        let mut ooo_total = self.ooo_total;
        let cfg = (self.cfg.max_ooo_per_flow, self.cfg.max_ooo_total);
        let mut out = std::mem::take(&mut self.scratch);
        let push = f.halves[side].push(seg, &mut ooo_total, cfg, &mut out);
        self.ooo_total = ooo_total;
        self.stats.ooo_bytes_peak = self.stats.ooo_bytes_peak.max(ooo_total as u64);
        match push {
            Push::Retransmit(n) => self.stats.bytes_retransmitted += n as u64,
            Push::OutOfOrder => self.stats.segments_out_of_order += 1,
            Push::DroppedFlowCap(n) => self.stats.ooo_dropped_flow_cap += n as u64,
            Push::DroppedGlobalCap(n) => self.stats.ooo_dropped_global_cap += n as u64,
            Push::InOrder | Push::Nothing => {}
        }
        let other = &f.halves[1 - side];
        let peer_acked = (seg.has(tcpflags::ACK) && other.synced)
            .then(|| (other.delivered as i64 + other.rel(seg.ack)).max(0) as u64);
        self.deliver(f, side, seg.payload, &mut out, ts, h, peer_acked);
        self.scratch = out;

        // A hole the receiver acknowledged will not be filled: the capture lost those
        // bytes. Wait a few packets before giving it up, as captures merged from several
        // queues (`-i any`, SPAN of both directions) can show an ACK a little before the
        // data it acknowledges.
        for s in 0..2 {
            if f.halves[s].hole_acked() {
                f.halves[s].hole_strikes += 1;
                if f.halves[s].hole_strikes >= HOLE_STRIKES {
                    f.halves[s].hole_strikes = 0;
                    self.push_events(f, s, ts, h, |half, t| half.give_up_first_hole(t));
                }
            } else {
                f.halves[s].hole_strikes = 0;
            }
        }
        if seg.has(tcpflags::RST) {
            self.finish(f, CloseReason::Rst, ts, h);
            return Keep::Yes;
        }
        if f.halves[0].fin_delivered && f.halves[1].fin_delivered {
            self.finish(f, CloseReason::Fin, ts, h);
        }
        Keep::Yes
    }

    /// Hand the events a half produced to the handler. `Ev::Data` without bytes refers to
    /// the current segment's payload slice (the zero-copy in-order path).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        f: &mut Flow<H::Conn>,
        side: usize,
        cur: &[u8],
        evs: &mut Vec<half::Ev>,
        ts: i64,
        h: &mut H,
        peer_acked: Option<u64>,
    ) {
        if evs.is_empty() {
            return;
        }
        let (Some(conn), Some(info)) = (f.conn.as_mut(), f.info.as_ref()) else {
            // Nothing to deliver to: a FIN without data before the flow was oriented.
            for ev in evs.drain(..) {
                if let half::Ev::Fin = ev {
                    f.halves[side].fin_delivered = true;
                }
            }
            return;
        };
        let dir = if Some(side) == f.client_side { Dir::ToServer } else { Dir::ToClient };
        for ev in evs.drain(..) {
            match ev {
                half::Ev::Cur(start) => {
                    let d = &cur[start..];
                    self.stats.bytes_delivered += d.len() as u64;
                    h.data(conn, info, dir, d, ts, peer_acked);
                }
                half::Ev::Owned(buf, start) => {
                    let d = &buf[start..];
                    self.stats.bytes_delivered += d.len() as u64;
                    h.data(conn, info, dir, d, ts, None);
                }
                half::Ev::Gap(n) => {
                    self.stats.gaps += 1;
                    self.stats.gap_bytes += n;
                    h.gap(conn, info, dir, n, ts);
                }
                half::Ev::Fin => {
                    f.halves[side].fin_delivered = true;
                    h.fin(conn, info, dir, ts);
                }
            }
        }
    }

    fn push_events(
        &mut self,
        f: &mut Flow<H::Conn>,
        side: usize,
        ts: i64,
        h: &mut H,
        op: impl FnOnce(&mut Half, &mut usize) -> Vec<half::Ev>,
    ) {
        let mut total = self.ooo_total;
        let mut evs = op(&mut f.halves[side], &mut total);
        self.ooo_total = total;
        self.deliver(f, side, &[], &mut evs, ts, h, None);
    }

    /// Flush both directions (declaring gaps for holes) and close the handler's state.
    fn finish(&mut self, f: &mut Flow<H::Conn>, why: CloseReason, ts: i64, h: &mut H) {
        if f.state == State::Closed {
            return;
        }
        for side in 0..2 {
            self.push_events(f, side, ts, h, |half, t| half.drain_all(t));
        }
        f.state = State::Closed;
        match why {
            CloseReason::Fin => self.stats.flows_closed_fin += 1,
            CloseReason::Rst => self.stats.flows_closed_rst += 1,
            CloseReason::Timeout => self.stats.flows_timed_out += 1,
            CloseReason::Evicted => self.stats.flows_evicted += 1,
            CloseReason::Shutdown | CloseReason::Reused => {}
        }
        if let (Some(conn), Some(info)) = (f.conn.take(), f.info.as_ref()) {
            h.close(conn, info, why, ts);
        }
    }

    /// Expire idle flows and remove closed ones whose linger ended. `pressure` also evicts
    /// flows idle for a tenth of the timeout (table full).
    fn sweep(&mut self, now: i64, h: &mut H, pressure: bool) {
        let idle = if pressure { self.cfg.idle_timeout_ns / 10 } else { self.cfg.idle_timeout_ns };
        for i in 0..self.slots.len() {
            let Some(f) = self.slots[i].as_ref() else { continue };
            let age = now.saturating_sub(f.last_ts);
            let expired = match f.state {
                State::Closed => age >= self.cfg.closed_linger_ns || pressure,
                State::Open => age >= idle,
            };
            if !expired {
                continue;
            }
            let mut f = self.slots[i].take().expect("checked");
            let why =
                if pressure && age < self.cfg.idle_timeout_ns { CloseReason::Evicted } else { CloseReason::Timeout };
            self.finish(&mut f, why, now, h);
            self.release(i, &f.key);
        }
    }
}

/// Packets of a flow for which an acknowledged hole must persist before it is a gap.
const HOLE_STRIKES: u8 = 3;

enum Keep {
    Yes,
    Replace,
}

/// Which side (0 = lower endpoint) is the server, judged by ports alone.
fn port_guess(lo_port: u16, hi_port: u16) -> usize {
    const HTTP_PORTS: [u16; 10] = [80, 8080, 8000, 3000, 5000, 8008, 8081, 8888, 443, 8443];
    let lo_http = HTTP_PORTS.contains(&lo_port);
    let hi_http = HTTP_PORTS.contains(&hi_port);
    // Return the client side.
    match (lo_http, hi_http) {
        (true, false) => 1,
        (false, true) => 0,
        _ => {
            if lo_port <= hi_port {
                1
            } else {
                0
            }
        }
    }
}
