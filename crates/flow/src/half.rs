//! One direction of a TCP connection: sequence tracking and the bounded out-of-order buffer.

use apiwatch_wire::{tcpflags, TcpSegment};

/// A stream event, produced in order.
#[derive(Debug)]
pub(crate) enum Ev {
    /// The current segment's payload from this offset on (zero-copy, in order).
    Cur(usize),
    /// A buffered segment's bytes from this offset on.
    Owned(Vec<u8>, usize),
    /// Bytes missing from the stream.
    Gap(u64),
    Fin,
}

/// What happened to a pushed segment, for the counters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    Nothing,
    InOrder,
    /// This many bytes had been delivered already.
    Retransmit(usize),
    OutOfOrder,
    /// The out-of-order buffer was full: this many buffered bytes were flushed past a
    /// forced gap.
    DroppedFlowCap(usize),
    DroppedGlobalCap(usize),
}

#[derive(Debug)]
struct Seg {
    seq: u32,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Half {
    pub synced: bool,
    /// Next sequence number expected in order.
    pub next_seq: u32,
    pub delivered: u64,
    peer_ack: Option<u32>,
    /// Sorted by sequence number (relative to `next_seq`).
    ooo: Vec<Seg>,
    ooo_bytes: usize,
    fin_seq: Option<u32>,
    fin_queued: bool,
    pub fin_delivered: bool,
    /// Packets in a row for which [`Half::hole_acked`] held.
    pub hole_strikes: u8,
}

impl Half {
    pub fn rel(&self, seq: u32) -> i64 {
        seq.wrapping_sub(self.next_seq) as i32 as i64
    }

    pub fn note_peer_ack(&mut self, ack: u32) {
        if !self.synced {
            return;
        }
        match self.peer_ack {
            Some(a) if (ack.wrapping_sub(a) as i32) <= 0 => {}
            _ => self.peer_ack = Some(ack),
        }
    }

    /// The receiver acknowledged bytes we never saw, and something is waiting behind the
    /// hole (buffered data, or a FIN): the hole will not be filled.
    pub fn hole_acked(&self) -> bool {
        let Some(ack) = self.peer_ack else { return false };
        let acked = self.rel(ack);
        if acked <= 0 {
            return false;
        }
        if let Some(first) = self.ooo.first() {
            return acked >= self.rel(first.seq);
        }
        match self.fin_seq {
            Some(f) => !self.fin_queued && acked > self.rel(f) && self.rel(f) > 0,
            None => false,
        }
    }

    /// Apply one segment. Events go to `out`; `ooo_total` is the global buffered count.
    pub fn push(
        &mut self,
        seg: &TcpSegment<'_>,
        ooo_total: &mut usize,
        caps: (usize, usize),
        out: &mut Vec<Ev>,
    ) -> Push {
        let mut seq = seg.seq;
        if seg.has(tcpflags::SYN) {
            seq = seq.wrapping_add(1);
            if !self.synced || self.delivered == 0 && self.ooo.is_empty() {
                self.synced = true;
                self.next_seq = seq;
            }
        } else if !self.synced {
            self.synced = true;
            self.next_seq = seq;
        }
        let claimed = (seg.seg_len as usize).max(seg.payload.len());
        if seg.has(tcpflags::FIN) && self.fin_seq.is_none() {
            self.fin_seq = Some(seq.wrapping_add(claimed as u32));
        }
        if claimed == 0 {
            self.check_fin(out);
            return Push::Nothing;
        }
        let rel = self.rel(seq);
        let result = if rel <= 0 {
            let skip = (-rel) as usize;
            if skip >= claimed {
                self.check_fin(out);
                return Push::Retransmit(claimed);
            }
            let cap = seg.payload.len();
            if skip < cap {
                out.push(Ev::Cur(skip));
                self.advance((cap - skip) as u64);
            }
            let missing = claimed - skip.max(cap);
            if missing > 0 {
                // Captured shorter than sent (snap length): the tail is a gap.
                out.push(Ev::Gap(missing as u64));
                self.advance(missing as u64);
            }
            if skip > 0 {
                Push::Retransmit(skip)
            } else {
                Push::InOrder
            }
        } else {
            let data = seg.payload;
            if data.is_empty() {
                return Push::Nothing;
            }
            if self.ooo.iter().any(|s| s.seq == seq && s.data.len() >= data.len()) {
                return Push::Retransmit(data.len());
            }
            let (flow_cap, global_cap) = caps;
            let result = Push::OutOfOrder;
            if self.ooo_bytes + data.len() > flow_cap || *ooo_total + data.len() > global_cap {
                // No room: give up on holes until this segment is in order, then take it.
                let flushed = self.ooo_bytes;
                let result = if self.ooo_bytes + data.len() > flow_cap {
                    Push::DroppedFlowCap(flushed)
                } else {
                    Push::DroppedGlobalCap(flushed)
                };
                while self.rel(seq) > 0 {
                    if !self.give_up_hole_until(Some(seq), ooo_total, out) {
                        break;
                    }
                }
                let r = self.rel(seq);
                if r <= 0 {
                    let skip = (-r) as usize;
                    if skip < data.len() {
                        out.push(Ev::Cur(skip));
                        self.advance((data.len() - skip) as u64);
                    }
                    self.drain_ready(ooo_total, out);
                }
                self.check_fin(out);
                return result;
            }
            let pos = self.ooo.partition_point(|s| self.rel(s.seq) <= rel);
            self.ooo.insert(pos, Seg { seq, data: data.to_vec() });
            self.ooo_bytes += data.len();
            *ooo_total += data.len();
            self.check_fin(out);
            return result;
        };
        self.drain_ready(ooo_total, out);
        self.check_fin(out);
        result
    }

    fn advance(&mut self, n: u64) {
        self.next_seq = self.next_seq.wrapping_add(n as u32);
        self.delivered += n;
    }

    fn check_fin(&mut self, out: &mut Vec<Ev>) {
        if !self.fin_queued && self.fin_seq == Some(self.next_seq) && self.ooo.is_empty() {
            self.fin_queued = true;
            out.push(Ev::Fin);
        }
    }

    /// Deliver buffered segments that are now in order.
    fn drain_ready(&mut self, ooo_total: &mut usize, out: &mut Vec<Ev>) {
        while let Some(first) = self.ooo.first() {
            let r = self.rel(first.seq);
            if r > 0 {
                break;
            }
            let s = self.ooo.remove(0);
            self.ooo_bytes -= s.data.len();
            *ooo_total -= s.data.len();
            let skip = (-r) as usize;
            if skip < s.data.len() {
                let n = s.data.len() - skip;
                out.push(Ev::Owned(s.data, skip));
                self.advance(n as u64);
            }
        }
    }

    /// Declare the first hole a gap (up to the first buffered segment, or `limit`, or the
    /// FIN) and deliver what follows it. Returns false when there is no hole to give up.
    fn give_up_hole_until(&mut self, limit: Option<u32>, ooo_total: &mut usize, out: &mut Vec<Ev>) -> bool {
        let target = match (self.ooo.first(), limit) {
            (Some(s), Some(l)) => {
                if self.rel(s.seq) <= self.rel(l) {
                    s.seq
                } else {
                    l
                }
            }
            (Some(s), None) => s.seq,
            (None, Some(l)) => l,
            (None, None) => match self.fin_seq {
                Some(f) if !self.fin_queued => f,
                _ => return false,
            },
        };
        let len = self.rel(target);
        if len <= 0 {
            return false;
        }
        out.push(Ev::Gap(len as u64));
        self.advance(len as u64);
        self.drain_ready(ooo_total, out);
        self.check_fin(out);
        true
    }

    pub fn give_up_first_hole(&mut self, ooo_total: &mut usize) -> Vec<Ev> {
        let mut out = Vec::new();
        self.give_up_hole_until(None, ooo_total, &mut out);
        out
    }

    /// Flush everything: every hole becomes a gap, every buffered byte is delivered, and a
    /// FIN already seen is delivered after them.
    pub fn drain_all(&mut self, ooo_total: &mut usize) -> Vec<Ev> {
        let mut out = Vec::new();
        self.drain_ready(ooo_total, &mut out);
        while !self.ooo.is_empty() {
            if !self.give_up_hole_until(None, ooo_total, &mut out) {
                break;
            }
        }
        if self.fin_seq.is_some() && !self.fin_queued {
            self.give_up_hole_until(None, ooo_total, &mut out);
            self.check_fin(&mut out);
        }
        out
    }
}
