//! Bounded IP fragment reassembly (IPv4 and IPv6).
//!
//! Policy: a datagram is held until every byte from 0 to the end announced by the last
//! fragment has arrived; overlapping fragments overwrite (the later copy wins, as Linux
//! does). Held datagrams expire after `timeout_ns` of packet time. The table holds at most
//! `max_datagrams` datagrams and `max_bytes` bytes; fragments beyond are dropped and counted.

use std::collections::HashMap;
use std::net::IpAddr;

/// Largest reassembled datagram payload we accept (IPv4's limit; IPv6 jumbo fragments
/// do not exist).
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug, Clone)]
pub struct DefragLimits {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    pub timeout_ns: i64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits { max_datagrams: 4096, max_bytes: 32 << 20, timeout_ns: 30_000_000_000 }
    }
}

/// Counters of the fragment table.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefragStats {
    pub reassembled: u64,
    pub dropped_table_full: u64,
    pub dropped_oversize: u64,
    pub expired: u64,
    pub held_now: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

#[derive(Debug)]
struct Pending {
    buf: Vec<u8>,
    /// Received byte ranges, unsorted.
    have: Vec<(u32, u32)>,
    total: Option<u32>,
    first_ts: i64,
}

pub(crate) enum Insert {
    Held,
    Dropped,
    Complete,
}

#[derive(Debug)]
pub(crate) struct Defrag {
    lim: DefragLimits,
    table: HashMap<Key, Pending>,
    bytes: usize,
    done: Vec<u8>,
    last_sweep: i64,
    stats: DefragStats,
}

impl Defrag {
    pub fn new(lim: DefragLimits) -> Self {
        Defrag {
            lim,
            table: HashMap::new(),
            bytes: 0,
            done: Vec::new(),
            last_sweep: i64::MIN,
            stats: DefragStats::default(),
        }
    }

    pub fn stats(&self) -> DefragStats {
        DefragStats { held_now: self.table.len() as u64, ..self.stats }
    }

    /// The datagram completed by the last [`Insert::Complete`].
    pub fn completed(&self) -> &[u8] {
        &self.done
    }

    pub fn insert(&mut self, key: Key, offset: u32, more: bool, data: &[u8], ts: i64) -> Insert {
        self.expire(ts);
        let end = offset as usize + data.len();
        if end > MAX_DATAGRAM {
            self.stats.dropped_oversize += 1;
            return Insert::Dropped;
        }
        if !self.table.contains_key(&key) {
            if self.table.len() >= self.lim.max_datagrams {
                self.stats.dropped_table_full += 1;
                return Insert::Dropped;
            }
            self.table.insert(key, Pending { buf: Vec::new(), have: Vec::new(), total: None, first_ts: ts });
        }
        let p = self.table.get_mut(&key).expect("inserted above");
        if end > p.buf.len() {
            let grow = end - p.buf.len();
            if self.bytes + grow > self.lim.max_bytes || p.have.len() >= 256 {
                self.stats.dropped_table_full += 1;
                let old = p.buf.len();
                self.table.remove(&key);
                self.bytes -= old;
                return Insert::Dropped;
            }
            p.buf.resize(end, 0);
            self.bytes += grow;
        }
        p.buf[offset as usize..end].copy_from_slice(data);
        p.have.push((offset, end as u32));
        if !more {
            p.total = Some(end as u32);
        }
        let Some(total) = p.total else { return Insert::Held };
        p.have.sort_unstable();
        let mut covered = 0u32;
        for &(s, e) in &p.have {
            if s > covered {
                return Insert::Held;
            }
            covered = covered.max(e);
        }
        if covered < total {
            return Insert::Held;
        }
        let mut p = self.table.remove(&key).expect("present");
        self.bytes -= p.buf.len();
        p.buf.truncate(total as usize);
        self.done = p.buf;
        self.stats.reassembled += 1;
        Insert::Complete
    }

    fn expire(&mut self, ts: i64) {
        // Sweep at most once per second of packet time.
        if ts < self.last_sweep.saturating_add(1_000_000_000) || self.table.is_empty() {
            return;
        }
        self.last_sweep = ts;
        let timeout = self.lim.timeout_ns;
        let before = self.table.len();
        let mut freed = 0;
        self.table.retain(|_, p| {
            let keep = ts.saturating_sub(p.first_ts) < timeout;
            if !keep {
                freed += p.buf.len();
            }
            keep
        });
        self.bytes -= freed;
        self.stats.expired += (before - self.table.len()) as u64;
    }
}
