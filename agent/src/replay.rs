//! `apiwatch replay`: capture files through the pipeline to NDJSON.
//!
//! Two ways to run the same stages:
//! - **inline** (`workers <= 1`): one thread reads, decodes, reassembles, parses and writes.
//!   No channels, no copies: the fastest per core.
//! - **sharded** (`workers >= 2`): the calling thread reads and decodes, and sends each TCP
//!   segment (payload borrowed from the mapped file) to the worker that owns its flow
//!   (see `Sharder`), in batches over bounded channels. Workers
//!   reassemble, parse and render. An output thread merges what workers rendered, epoch by
//!   epoch, ordered by the index of the packet that completed each record, so the output
//!   does not depend on thread timing.

use crate::capture::{file, CaptureFile};
use crate::detect::{DetectStage, Detected};
use crate::engine::{Decode, Engine, EngineConfig, Stats, Streams};
use crate::inventory::InventoryStage;
use crate::output::NdjsonOutput;
use anyhow::{anyhow, Result};
use apiwatch_detect::{InspectConfig, Inspector};
use apiwatch_inventory::{InventoryConfig, Observation, ObserveConfig};
use apiwatch_model::{RenderOptions, Transaction};
use apiwatch_wire::{linktype, Checksum, TcpSegment};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    pub engine: EngineConfig,
    pub render: RenderOptions,
    pub workers: usize,
    /// Show a progress line on stderr (only when stderr is a terminal and input is large).
    pub progress: bool,
    /// Feed the inventory (None: transactions only).
    pub inventory: Option<InventoryOptions>,
    /// Runtime threat detections (None: off).
    pub detect: Option<(apiwatch_detect::DetectorConfig, apiwatch_detect::InspectConfig)>,
    /// Remote outputs (`[[outputs]]`), their spools under `remote_state` unless they name
    /// one, and how long to wait at the end for the sinks to take what is spooled.
    pub remotes: Vec<crate::remote::RemoteConfig>,
    pub remote_state: Option<PathBuf>,
    pub drain: Duration,
}

pub struct InventoryOptions {
    pub cfg: InventoryConfig,
    pub observe: ObserveConfig,
    /// The sensitive-data classifier's settings, when it is on.
    pub sensitive: Option<apiwatch_inventory::SensitiveConfig>,
    /// Keep the inventory in this state directory (loaded first, saved at the end).
    pub state: Option<PathBuf>,
}

/// What a replay did.
pub struct ReplayReport {
    pub stats: Stats,
    pub records: u64,
    pub input_bytes: u64,
    pub elapsed: Duration,
    /// Coverage of the sensitive-data classifier, when it ran.
    pub classify: Option<apiwatch_inventory::sensitive::SensitiveCounters>,
    /// What the detections did, when they ran.
    pub detect: Option<apiwatch_detect::DetectorCounters>,
    /// The error that stopped reading, after everything before it was processed and written.
    pub error: Option<anyhow::Error>,
    /// What each remote output delivered, and what it left spooled.
    pub remotes: Vec<crate::remote::RemoteReport>,
    /// CPU seconds spent by each thread of the pipeline ("reader", "worker N", "output"; one
    /// "inline" thread when not sharded), to see where the time goes.
    pub thread_cpu: Vec<(String, f64)>,
}

/// CPU time used so far by the calling thread, in seconds.
pub fn thread_cpu_secs() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

pub fn replay(opts: &ReplayOptions) -> Result<ReplayReport> {
    let mut out = NdjsonOutput::new(opts.output.as_deref(), opts.render.clone())?;
    out.add_outputs(&opts.remotes, opts.remote_state.as_deref())?;
    let start = Instant::now();
    // Open every file up front: the sharded mode borrows payloads from all of them, and a
    // missing file should fail before any work.
    let mut caps = Vec::new();
    let mut error = None;
    for f in &opts.files {
        match CaptureFile::open(f) {
            Ok(c) => caps.push(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let input_bytes: u64 = caps.iter().map(|c| c.bytes().len() as u64).sum();
    let mut progress =
        Progress::new(opts.progress && std::io::stderr().is_terminal() && input_bytes > 64 << 20, input_bytes);
    let mut inv = match &opts.inventory {
        Some(i) => {
            Some(InventoryStage::new(i.cfg.clone(), i.observe.clone(), i.sensitive.clone(), i.state.as_deref())?)
        }
        None => None,
    };
    let mut det = opts.detect.as_ref().map(|(d, _)| DetectStage::new(d.clone()));
    let inspect = opts.detect.as_ref().map(|(_, i)| i.clone());
    let cpu0 = thread_cpu_secs();
    let mut owner = Owner { inv: &mut inv, det: &mut det };
    let (stats, read_error, mut thread_cpu) = if opts.workers <= 1 {
        let (s, e) = run_inline(&caps, &opts.engine, &mut out, &mut owner, inspect, &mut progress)?;
        (s, e, vec![("inline".to_string(), thread_cpu_secs() - cpu0)])
    } else {
        let setup = WorkerSetup { engine: &opts.engine, render: &opts.render, inspect };
        run_sharded(&caps, setup, opts.workers, &mut out, &mut owner, &mut progress)?
    };
    let cpu1 = thread_cpu_secs();
    if let Some(i) = inv.as_mut() {
        i.finish(&mut out)?;
    }
    if let Some(d) = det.as_mut() {
        d.finish(&mut out)?;
    }
    out.flush()?;
    thread_cpu.push(("finish".to_string(), thread_cpu_secs() - cpu1));
    progress.done();
    let remotes = out.finish_remotes(opts.drain)?;
    let classify = inv.as_ref().and_then(|i| i.inv.sensitive.as_ref()).map(|s| s.counters.clone());
    let detect = det.as_ref().map(|d| d.detector.counters.clone());
    Ok(ReplayReport {
        stats,
        records: out.records,
        input_bytes,
        elapsed: start.elapsed(),
        classify,
        detect,
        error: error.or(read_error),
        remotes,
        thread_cpu,
    })
}

/// Iterate the packets of every file in order, stopping at the first format error.
/// Pages of the mapped input are released from memory in steps of this many bytes, once
/// everything before them has been processed (`safe`): memory stays flat whatever the
/// file size. Re-reading a released page is only slower, never wrong.
const RELEASE_STEP: u64 = 8 << 20;

/// Iterate the packets of every file in order, stopping at the first format error. `f`
/// gets each packet, its index in the whole input, and its end offset in the whole input
/// (files laid end to end). `safe()` says up to which offset of the whole input nothing
/// will read the mapping again.
fn for_each_packet<'a>(
    caps: &'a [CaptureFile],
    progress: &mut Progress,
    safe: &dyn Fn() -> u64,
    mut f: impl FnMut(file::Packet<'a>, u64, u64) -> Result<()>,
) -> Result<Option<anyhow::Error>> {
    let mut idx = 0u64;
    let mut base = 0u64;
    let mut warned = BTreeSet::new();
    // Per file: (start in the whole input, bytes released so far).
    let mut released: Vec<(u64, u64)> = Vec::new();
    let release = |released: &mut Vec<(u64, u64)>, limit: u64| {
        for (i, (start, done)) in released.iter_mut().enumerate() {
            let len = caps[i].bytes().len() as u64;
            let upto = limit.saturating_sub(*start).min(len);
            if upto >= *done + RELEASE_STEP || (upto == len && upto > *done) {
                caps[i].release(*done as usize, upto as usize);
                *done = upto;
            }
        }
    };
    for cap in caps {
        released.push((base, 0));
        let mut reader = match file::Reader::new(cap.bytes()) {
            Ok(r) => r,
            Err(e) => return Ok(Some(anyhow!("{}: {e}", cap.path.display()))),
        };
        loop {
            match reader.next() {
                None => break,
                Some(Ok(p)) => {
                    if !linktype::supported(p.linktype) && warned.insert(p.linktype) {
                        eprintln!(
                            "apiwatch: {}: link type {} is not supported; its packets are skipped and counted",
                            cap.path.display(),
                            p.linktype
                        );
                    }
                    let end = base + reader.position();
                    f(p, idx, end)?;
                    idx += 1;
                    if idx & 0x3ff == 0 {
                        release(&mut released, safe().min(end));
                    }
                    if idx & 0xffff == 0 {
                        progress.tick(end);
                    }
                }
                Some(Err(e)) => return Ok(Some(anyhow!("{}: {e}", cap.path.display()))),
            }
        }
        base += cap.bytes().len() as u64;
    }
    Ok(None)
}

/// The stages that see every transaction in output order, in the thread that writes.
pub(crate) struct Owner<'a> {
    pub inv: &'a mut Option<InventoryStage>,
    pub det: &'a mut Option<DetectStage>,
}

/// What the owner's stages get of one transaction.
pub(crate) type Analyzed = (Option<Observation>, Option<Detected>);

impl Owner<'_> {
    /// After a transaction's record: the inventory places it, then detections judge it.
    pub fn analyzed(&mut self, o: Option<&Observation>, d: Option<&Detected>, out: &mut NdjsonOutput) -> Result<()> {
        if let (Some(i), Some(o)) = (self.inv.as_mut(), o) {
            i.observe(o, out)?;
        }
        if let (Some(stage), Some(d)) = (self.det.as_mut(), d) {
            let inv = self.inv.as_ref();
            let facts = inv.and_then(|i| i.inv.last_facts.as_ref());
            stage.observe(d, o, facts, &|| inv.zip(o).and_then(|(i, o)| i.inv.last_template(&o.host)), out)?;
        }
        Ok(())
    }
}

/// What a worker makes of a transaction for the owner: inspection first (it reads the
/// bodies), then the observation (which takes them).
pub(crate) fn analyze(
    tx: &mut Transaction,
    observe: Option<&ObserveConfig>,
    inspector: Option<&mut Inspector>,
) -> Analyzed {
    let mut d = inspector.map(|i| crate::detect::inspect(i, tx));
    let o = observe.and_then(|cfg| Observation::of(tx, cfg));
    if let (Some(d), None) = (d.as_mut(), &o) {
        d.fallback = crate::detect::fallback(tx);
    }
    (o, d)
}

/// Write a transaction, then let the owner's stages see it.
fn emit(
    tx: &mut Transaction,
    out: &mut NdjsonOutput,
    owner: &mut Owner<'_>,
    inspector: Option<&mut Inspector>,
) -> Result<()> {
    out.transaction(tx)?;
    let observe = owner.inv.as_ref().map(|i| &i.observe);
    let (o, d) = analyze(tx, observe, inspector);
    owner.analyzed(o.as_ref(), d.as_ref(), out)
}

fn run_inline(
    caps: &[CaptureFile],
    cfg: &EngineConfig,
    out: &mut NdjsonOutput,
    owner: &mut Owner<'_>,
    inspect: Option<InspectConfig>,
    progress: &mut Progress,
) -> Result<(Stats, Option<anyhow::Error>)> {
    let mut engine = Engine::new(cfg.clone());
    let mut inspector = inspect.map(Inspector::new);
    // One thread: nothing reads a packet again once the next one is read.
    let err = for_each_packet(caps, progress, &|| u64::MAX, |p, idx, _| {
        engine.packet(p.linktype, p.data, p.orig_len, p.ts_ns, idx);
        if engine.has_output() {
            for mut tx in engine.drain() {
                emit(&mut tx, out, owner, inspector.as_mut())?;
            }
        }
        Ok(())
    })?;
    engine.finish();
    for mut tx in engine.drain() {
        emit(&mut tx, out, owner, inspector.as_mut())?;
    }
    Ok((engine.stats(), err))
}

// === sharded ===

/// Packets per epoch: each worker gets one batch per epoch (possibly empty).
const EPOCH: u64 = 4096;
/// Batches in flight per worker.
const CHANNEL_DEPTH: usize = 4;

/// A segment's TCP header and payload, laid end to end.
enum Payload<'a> {
    Borrowed(&'a [u8]),
    /// Reassembled from IP fragments: not in the file.
    Owned(Vec<u8>),
}

/// A decoded segment detached from the decoder, to cross threads.
struct Seg<'a> {
    idx: u64,
    ts: i64,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    seg_len: u32,
    /// The worker verifies the checksum (the reader leaves the payload untouched, so it
    /// is first read by the core that parses it).
    verify: bool,
    tunnel_depth: u8,
    /// Length of the TCP header at the start of `bytes`.
    header_len: u8,
    bytes: Payload<'a>,
}

/// One epoch's segments for a worker, and the end offset of the epoch in the input.
struct Batch<'a> {
    segs: Vec<Seg<'a>>,
    end: u64,
}

struct Rendered {
    /// End offset of the epoch in the input: once merged, the input before it is done.
    end: u64,
    text: Vec<u8>,
    /// (sort key, end offset in `text`) per record.
    marks: Vec<((u64, u64), usize)>,
    /// What each record tells the inventory and the detections (parallel to `marks`).
    obs: Vec<Analyzed>,
}

/// Which worker each flow goes to. Flows hash (both directions alike) into one of
/// [`Sharder::BUCKETS`] buckets; a bucket is given, when first seen, to the worker that has
/// been sent the fewest bytes so far, and keeps it for the rest of the run, so a flow never
/// moves. A hash alone splits a few busy flows unevenly (64 connections came out 40 to 25);
/// this splits them as evenly as their order allows, and still depends only on the input,
/// so runs repeat. The table is fixed (4 KiB).
struct Sharder {
    /// Worker of each bucket, `u8::MAX` while unassigned.
    owner: Box<[u8]>,
    /// Bytes sent to each worker so far.
    load: Vec<u64>,
}

impl Sharder {
    const BUCKETS: usize = 4096;

    fn new(n: usize) -> Self {
        assert!(n < u8::MAX as usize, "at most 254 workers");
        Sharder { owner: vec![u8::MAX; Self::BUCKETS].into_boxed_slice(), load: vec![0; n] }
    }

    fn shard(&mut self, seg: &TcpSegment<'_>, wire_len: usize) -> usize {
        let b = bucket_of(seg) % Self::BUCKETS;
        let mut w = self.owner[b] as usize;
        if w == u8::MAX as usize {
            w = (0..self.load.len()).min_by_key(|&i| self.load[i]).unwrap_or(0);
            self.owner[b] = w as u8;
        }
        self.load[w] += wire_len as u64;
        w
    }
}

fn bucket_of(seg: &TcpSegment<'_>) -> usize {
    // A fixed, cheap hash of the unordered endpoint pair: both directions must land in the
    // same bucket.
    let mix = |ip: IpAddr, port: u16| -> u64 {
        let bits = match ip {
            IpAddr::V4(v) => u32::from(v) as u64,
            IpAddr::V6(v) => {
                let x = u128::from(v);
                (x as u64) ^ ((x >> 64) as u64)
            }
        };
        (bits << 16 | port as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    let h = mix(seg.src, seg.sport) ^ mix(seg.dst, seg.dport);
    ((h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 32) as usize
}

fn render_into(
    r: &mut Rendered,
    opts: &RenderOptions,
    observe: Option<&ObserveConfig>,
    inspector: Option<&mut Inspector>,
    tx: &mut Transaction,
    idx: u64,
) {
    NdjsonOutput::render(opts, tx, &mut r.text);
    // Records of the final flush (idx u64::MAX) are ordered by connection, as inline.
    let tie = if idx == u64::MAX { tx.conn_id } else { 0 };
    r.marks.push(((idx, tie), r.text.len()));
    r.obs.push(analyze(tx, observe, inspector));
}

fn worker(
    rx: Receiver<Option<Batch<'_>>>,
    tx: Sender<Rendered>,
    recycled: Receiver<Rendered>,
    cfg: EngineConfig,
    opts: RenderOptions,
    observe: Option<ObserveConfig>,
    inspect: Option<InspectConfig>,
) -> (Stats, f64) {
    let mut streams = Streams::new(cfg.flow, cfg.http);
    let mut inspector = inspect.map(Inspector::new);
    let observe = observe.as_ref();
    let mut bad_checksums = 0u64;
    while let Ok(msg) = rx.recv() {
        // Buffers the output thread is done with: their memory is warm and already sized.
        // They are emptied here, not there: what the records own was allocated by this
        // thread, and freeing it here is cheaper than from another thread (the allocator's
        // per-thread caches).
        let mut r = match recycled.try_recv() {
            Ok(mut r) => {
                r.text.clear();
                r.marks.clear();
                r.obs.clear();
                r
            }
            Err(_) => Rendered { end: 0, text: Vec::new(), marks: Vec::new(), obs: Vec::new() },
        };
        match msg {
            Some(batch) => {
                r.end = batch.end;
                for s in &batch.segs {
                    let bytes = match &s.bytes {
                        Payload::Borrowed(b) => b,
                        Payload::Owned(v) => v.as_slice(),
                    };
                    let (header, payload) = bytes.split_at(s.header_len as usize);
                    let checksum = if !s.verify {
                        Checksum::Unchecked
                    } else if apiwatch_wire::tcp_checksum_ok_parts(s.src, s.dst, header, payload) {
                        Checksum::Good
                    } else {
                        bad_checksums += 1;
                        Checksum::Bad
                    };
                    let seg = TcpSegment {
                        src: s.src,
                        dst: s.dst,
                        sport: s.sport,
                        dport: s.dport,
                        seq: s.seq,
                        ack: s.ack,
                        flags: s.flags,
                        window: s.window,
                        header,
                        payload,
                        seg_len: s.seg_len,
                        checksum,
                        tunnel_depth: s.tunnel_depth,
                    };
                    streams.segment(&seg, s.ts, s.idx);
                    if streams.has_output() {
                        for mut t in streams.drain() {
                            render_into(&mut r, &opts, observe, inspector.as_mut(), &mut t, s.idx);
                        }
                    }
                }
                if tx.send(r).is_err() {
                    break;
                }
            }
            None => {
                r.end = u64::MAX;
                streams.finish();
                for mut t in streams.drain() {
                    render_into(&mut r, &opts, observe, inspector.as_mut(), &mut t, u64::MAX);
                }
                let _ = tx.send(r);
                break;
            }
        }
    }
    let mut s = Stats::default();
    streams.stats_into(&mut s);
    s.packets.bad_checksums += bad_checksums;
    (s, thread_cpu_secs())
}

/// What the sharded run returns: counters, the error that stopped reading, CPU per thread.
type Sharded = (Stats, Option<anyhow::Error>, Vec<(String, f64)>);

/// What each worker runs with: the engine, how to render, whether to inspect.
struct WorkerSetup<'a> {
    engine: &'a EngineConfig,
    render: &'a RenderOptions,
    inspect: Option<InspectConfig>,
}

fn run_sharded(
    caps: &[CaptureFile],
    setup: WorkerSetup<'_>,
    n: usize,
    out: &mut NdjsonOutput,
    owner: &mut Owner<'_>,
    progress: &mut Progress,
) -> Result<Sharded> {
    let WorkerSetup { engine: cfg, render: opts, inspect } = setup;
    let reader_cpu0 = thread_cpu_secs();
    // Checksums are verified by the workers.
    let verify = cfg.decoder.verify_checksums;
    let mut decode = Decode::new(apiwatch_wire::DecoderConfig { verify_checksums: false, ..cfg.decoder.clone() });
    let ranges: Vec<(usize, usize)> = caps.iter().map(|c| (c.bytes().as_ptr() as usize, c.bytes().len())).collect();
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<Sharded> {
        let mut to_workers = Vec::new();
        let mut from_workers = Vec::new();
        let mut back_to_workers = Vec::new();
        let mut handles = Vec::new();
        for w in 0..n {
            let (stx, srx) = bounded::<Option<Batch<'_>>>(CHANNEL_DEPTH);
            let (rtx, rrx) = bounded::<Rendered>(CHANNEL_DEPTH);
            let (btx, brx) = bounded::<Rendered>(CHANNEL_DEPTH);
            let (c, o, ob) = (cfg.clone(), opts.clone(), owner.inv.as_ref().map(|i| i.observe.clone()));
            let ins = inspect.clone();
            let h = std::thread::Builder::new()
                .name(format!("aw-worker-{w}"))
                .spawn_scoped(scope, move || worker(srx, rtx, brx, c, o, ob, ins))?;
            handles.push(h);
            to_workers.push(stx);
            from_workers.push(rrx);
            back_to_workers.push(btx);
        }
        // Output thread: one Rendered per worker per epoch, merged in packet order.
        let done = &done;
        let writer =
            std::thread::Builder::new().name("aw-output".into()).spawn_scoped(scope, move || -> Result<f64> {
                'epochs: loop {
                    let mut parts = Vec::with_capacity(n);
                    for rx in &from_workers {
                        match rx.recv() {
                            Ok(r) => parts.push(r),
                            Err(_) => break 'epochs,
                        }
                    }
                    // Each worker's records are in packet order: merge them (ties go to the
                    // lower worker, as a stable sort would).
                    let mut pos = vec![(0usize, 0usize); parts.len()]; // (mark index, text start)
                    loop {
                        let mut best: Option<(usize, (u64, u64))> = None;
                        for (w, r) in parts.iter().enumerate() {
                            if let Some(&(key, _)) = r.marks.get(pos[w].0) {
                                if best.is_none_or(|(_, k)| key < k) {
                                    best = Some((w, key));
                                }
                            }
                        }
                        let Some((w, _)) = best else { break };
                        let (i, start) = pos[w];
                        let end = parts[w].marks[i].1;
                        out.raw(&parts[w].text[start..end], 1)?;
                        if let Some((o, d)) = parts[w].obs.get(i) {
                            owner.analyzed(o.as_ref(), d.as_ref(), out)?;
                        }
                        pos[w] = (i + 1, end);
                    }
                    // Every worker is past this epoch: its input can be released.
                    done.store(parts.iter().map(|p| p.end).min().unwrap_or(0), Ordering::Release);
                    // Hand the buffers back for a later epoch (their worker empties them).
                    for (w, r) in parts.into_iter().enumerate() {
                        let _ = back_to_workers[w].try_send(r);
                    }
                }
                Ok(thread_cpu_secs())
            })?;

        let mut batches: Vec<Vec<Seg<'_>>> = (0..n).map(|_| Vec::new()).collect();
        let mut sharder = Sharder::new(n);
        let safe = || done.load(Ordering::Acquire);
        let read_err = for_each_packet(caps, progress, &safe, |p, idx, end| {
            if let Some(seg) = decode.frame(p.linktype, p.data, p.orig_len, p.ts_ns) {
                // Header and payload, borrowed from the mapped file when they lie there end to
                // end (always, except for datagrams reassembled from fragments).
                let (hl, len) = (seg.header.len(), seg.header.len() + seg.payload.len());
                let ptr = seg.header.as_ptr() as usize;
                let adjacent = ptr + hl == seg.payload.as_ptr() as usize;
                let bytes = match ranges.iter().position(|&(s, l)| adjacent && ptr >= s && ptr + len <= s + l) {
                    Some(i) => {
                        let off = ptr - ranges[i].0;
                        Payload::Borrowed(&caps[i].bytes()[off..off + len])
                    }
                    None => Payload::Owned([seg.header, seg.payload].concat()),
                };
                // A segment cut by the snap length cannot be verified.
                let complete = seg.payload.len() as u32 == seg.seg_len && hl >= 20;
                let w = sharder.shard(&seg, p.data.len());
                batches[w].push(Seg {
                    idx,
                    ts: p.ts_ns,
                    src: seg.src,
                    dst: seg.dst,
                    sport: seg.sport,
                    dport: seg.dport,
                    seq: seg.seq,
                    ack: seg.ack,
                    flags: seg.flags,
                    window: seg.window,
                    seg_len: seg.seg_len,
                    verify: verify && complete,
                    tunnel_depth: seg.tunnel_depth,
                    header_len: hl as u8,
                    bytes,
                });
            }
            if (idx + 1) % EPOCH == 0 {
                send_epoch(&mut batches, &to_workers, end)?;
            }
            Ok(())
        });
        // Whatever happened while reading, flush what was read.
        let sent = send_epoch(&mut batches, &to_workers, u64::MAX);
        for tx in &to_workers {
            let _ = tx.send(None);
        }
        drop(to_workers);
        let mut cpu = vec![("reader".to_string(), thread_cpu_secs() - reader_cpu0)];
        let mut stats = Stats::default();
        decode.stats_into(&mut stats);
        for (i, h) in handles.into_iter().enumerate() {
            let (s, secs) = h.join().map_err(|_| anyhow!("a worker thread panicked"))?;
            stats.merge(&s);
            cpu.push((format!("worker {i}"), secs));
        }
        cpu.push(("output".to_string(), writer.join().map_err(|_| anyhow!("the output thread panicked"))??));
        sent?;
        Ok((stats, read_err?, cpu))
    })
}

fn send_epoch<'a>(batches: &mut [Vec<Seg<'a>>], to: &[Sender<Option<Batch<'a>>>], end: u64) -> Result<()> {
    for (w, b) in batches.iter_mut().enumerate() {
        to[w].send(Some(Batch { segs: std::mem::take(b), end })).map_err(|_| anyhow!("worker {w} stopped"))?;
    }
    Ok(())
}

/// A one-line progress display on stderr.
struct Progress {
    on: bool,
    total: u64,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new(on: bool, total: u64) -> Self {
        let now = Instant::now();
        Progress { on, total, start: now, last: now }
    }

    fn tick(&mut self, done: u64) {
        if !self.on || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        let frac = done as f64 / self.total.max(1) as f64;
        let width = 30;
        let filled = ((frac * width as f64) as usize).min(width);
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {:5.1}%  {:.2} Gbit/s  ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            done as f64 * 8.0 / secs / 1e9
        );
    }

    fn done(&mut self) {
        if self.on {
            eprint!("\r{}\r", " ".repeat(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> TcpSegment<'static> {
        TcpSegment {
            src,
            dst,
            sport,
            dport,
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            header: &[],
            payload: &[],
            seg_len: 0,
            checksum: Checksum::Unchecked,
            tunnel_depth: 0,
        }
    }

    #[test]
    fn sharder_splits_a_few_busy_flows_evenly_and_keeps_each_flow_in_place() {
        let (client, server): (IpAddr, IpAddr) = ("10.77.0.1".parse().unwrap(), "10.77.0.2".parse().unwrap());
        // 64 keep-alive connections from consecutive ports, as wrk opens them; a hash alone
        // split these 40 to 25.
        let mut sh = Sharder::new(2);
        let mut of = std::collections::HashMap::new();
        for round in 0..10 {
            for port in 41_436..41_500u16 {
                let up = sh.shard(&seg(client, port, server, 8081), 400);
                let down = sh.shard(&seg(server, 8081, client, port), 1_300);
                assert_eq!(up, down, "both directions of a flow go to one worker");
                let first = *of.entry(port).or_insert(up);
                assert_eq!(first, up, "flow {port} moved in round {round}");
            }
        }
        let on_first = of.values().filter(|&&w| w == 0).count();
        assert_eq!(on_first, 32, "64 equal flows split 32/32");
        assert_eq!(sh.load[0], sh.load[1]);
        // The same input gives the same assignment.
        let mut again = Sharder::new(2);
        for port in 41_436..41_500u16 {
            assert_eq!(again.shard(&seg(client, port, server, 8081), 400), of[&port]);
        }
    }
}
