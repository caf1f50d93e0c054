//! The replay engine: one capture stream through decode → flows → HTTP, no I/O.
//!
//! [`Engine::packet`] takes one frame; completed transactions collect in the HTTP stage's
//! output and are taken with [`Engine::drain`]. Nothing here reads the clock or does I/O:
//! time is the packets' time, so the same input gives the same output.

use apiwatch_flow::{FlowConfig, FlowStats, FlowTable};
use apiwatch_http1::{HttpConfig, HttpHandler, HttpStats};
use apiwatch_model::Transaction;
use apiwatch_wire::{Checksum, Decoder, DecoderConfig, DefragStats, Outcome, SkipReason, TcpSegment};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub decoder: DecoderConfig,
    pub flow: FlowConfig,
    pub http: HttpConfig,
}

/// Counters of the capture and decode stages.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PacketStats {
    pub packets: u64,
    /// Captured bytes (what was read), and bytes on the wire (original lengths).
    pub bytes: u64,
    pub wire_bytes: u64,
    /// Frames captured shorter than they were (snap length).
    pub snapped: u64,
    pub tcp_segments: u64,
    pub bad_checksums: u64,
    pub tunneled: u64,
}

/// Every counter, as written to `--stats` and summarized on stderr.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub packets: PacketStats,
    pub skipped: BTreeMap<&'static str, u64>,
    pub defrag: DefragCounters,
    pub flows: FlowCounters,
    pub http: HttpCounters,
}

macro_rules! mirror {
    ($name:ident from $src:ty { $($f:ident),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
        pub struct $name { $(pub $f: u64),* }
        impl From<$src> for $name {
            fn from(s: $src) -> Self { $name { $($f: s.$f),* } }
        }
        impl $name {
            /// Field-wise sum (for merging shards; `*_now`/`*_peak` gauges add too, which
            /// is right for memory held at once by independent shards).
            pub fn add(&mut self, o: &Self) { $(self.$f += o.$f;)* }
        }
    };
}

mirror!(DefragCounters from DefragStats { reassembled, dropped_table_full, dropped_oversize, expired, held_now });
mirror!(FlowCounters from FlowStats {
    flows_created, flows_midstream, flows_closed_fin, flows_closed_rst, flows_timed_out, flows_evicted,
    flows_reused, flows_dropped_table_full, flows_active, segments, segments_after_close, bytes_delivered,
    bytes_retransmitted, segments_out_of_order, gaps, gap_bytes, ooo_dropped_flow_cap, ooo_dropped_global_cap,
    ooo_bytes_now, ooo_bytes_peak,
});
mirror!(HttpCounters from HttpStats {
    conns_http, conns_not_http, requests, responses, interim_responses, transactions, no_response, no_request,
    parse_errors, http09, resyncs, resync_bytes_skipped, resync_given_up, gaps_in_body, gaps_outside_body,
    upgrades, h2_prior_knowledge, tunnel_bytes, oversized_heads, pending_overflow, body_bytes, sample_bytes_now, sample_bytes_peak,
    samples_skipped_memcap, decode_errors,
});

impl PacketStats {
    pub fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.wire_bytes += o.wire_bytes;
        self.snapped += o.snapped;
        self.tcp_segments += o.tcp_segments;
        self.bad_checksums += o.bad_checksums;
        self.tunneled += o.tunneled;
    }
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.packets.add(&o.packets);
        for (k, v) in &o.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        self.defrag.add(&o.defrag);
        self.flows.add(&o.flows);
        self.http.add(&o.http);
    }
}

/// Decode stage alone: frames in, TCP segments out, with its counters. The sharded
/// pipeline runs this in the reader thread and the rest in workers.
pub struct Decode {
    decoder: Decoder,
    pub packets: PacketStats,
    skipped: [u64; SkipReason::ALL.len()],
}

impl Decode {
    pub fn new(cfg: DecoderConfig) -> Self {
        Decode { decoder: Decoder::new(cfg), packets: PacketStats::default(), skipped: [0; SkipReason::ALL.len()] }
    }

    /// Decode one frame; counts it.
    pub fn frame<'a>(&'a mut self, linktype: u32, data: &'a [u8], orig_len: u32, ts: i64) -> Option<TcpSegment<'a>> {
        self.packets.packets += 1;
        self.packets.bytes += data.len() as u64;
        self.packets.wire_bytes += orig_len.max(data.len() as u32) as u64;
        if (orig_len as usize) > data.len() {
            self.packets.snapped += 1;
        }
        match self.decoder.decode(linktype, data, ts) {
            Outcome::Tcp(seg) => {
                self.packets.tcp_segments += 1;
                if seg.checksum == Checksum::Bad {
                    self.packets.bad_checksums += 1;
                }
                if seg.tunnel_depth > 0 {
                    self.packets.tunneled += 1;
                }
                Some(seg)
            }
            Outcome::Skip(r) => {
                self.skipped[r.index()] += 1;
                None
            }
        }
    }

    pub fn stats_into(&self, s: &mut Stats) {
        s.packets.add(&self.packets);
        for r in SkipReason::ALL {
            let n = self.skipped[r.index()];
            if n > 0 {
                *s.skipped.entry(r.name()).or_default() += n;
            }
        }
        s.defrag.add(&self.decoder.defrag_stats().into());
    }
}

/// Flows and HTTP: TCP segments in, transactions out.
pub struct Streams {
    flows: FlowTable<HttpHandler>,
    http: HttpHandler,
    last_ts: i64,
}

impl Streams {
    pub fn new(flow: FlowConfig, http: HttpConfig) -> Self {
        Streams { flows: FlowTable::new(flow), http: HttpHandler::new(http), last_ts: i64::MIN }
    }

    pub fn segment(&mut self, seg: &TcpSegment<'_>, ts: i64, idx: u64) {
        self.last_ts = self.last_ts.max(ts);
        self.flows.process(seg, ts, idx, &mut self.http);
    }

    /// Time passes with no packet (see `FlowTable::tick`).
    pub fn tick(&mut self, ts: i64) {
        self.flows.tick(ts, &mut self.http);
    }

    /// End of input: close every connection.
    pub fn finish(&mut self) {
        let ts = if self.last_ts == i64::MIN { 0 } else { self.last_ts };
        self.flows.flush(ts, &mut self.http);
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, Transaction> {
        self.http.out.drain(..)
    }

    pub fn has_output(&self) -> bool {
        !self.http.out.is_empty()
    }

    pub fn stats_into(&self, s: &mut Stats) {
        s.flows.add(&self.flows.stats().into());
        s.http.add(&self.http.stats().into());
    }
}

/// The whole pure pipeline in one thread.
pub struct Engine {
    decode: Decode,
    streams: Streams,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine { decode: Decode::new(cfg.decoder), streams: Streams::new(cfg.flow, cfg.http) }
    }

    /// Feed one frame; `idx` is its index in the whole input (all files).
    pub fn packet(&mut self, linktype: u32, data: &[u8], orig_len: u32, ts: i64, idx: u64) {
        if let Some(seg) = self.decode.frame(linktype, data, orig_len, ts) {
            self.streams.segment(&seg, ts, idx);
        }
    }

    pub fn finish(&mut self) {
        self.streams.finish();
    }

    /// Feed a segment that was decoded elsewhere (the eBPF backend does it in the kernel).
    pub fn segment(&mut self, seg: &TcpSegment<'_>, wire_bytes: u64, ts: i64, idx: u64) {
        let p = &mut self.decode.packets;
        p.packets += 1;
        p.tcp_segments += 1;
        p.bytes += wire_bytes;
        p.wire_bytes += wire_bytes;
        self.streams.segment(seg, ts, idx);
    }

    /// Time passes with no packet: idle connections expire (live capture).
    pub fn tick(&mut self, ts: i64) {
        self.streams.tick(ts);
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, Transaction> {
        self.streams.drain()
    }

    pub fn has_output(&self) -> bool {
        self.streams.has_output()
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.decode.stats_into(&mut s);
        self.streams.stats_into(&mut s);
        s
    }
}
