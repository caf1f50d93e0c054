//! `apiwatch run`: live capture into the same pipeline `apiwatch replay` uses.
//!
//! Threads:
//! - one capture thread per interface: libpcap in non-blocking mode with `poll` (a blocking
//!   read with a timeout can hang with TPACKET_V3 once traffic stops), feeding its own
//!   [`Engine`]; completed transactions are rendered there and sent in batches;
//! - the output thread: writes batches (NDJSON), reopens the file on reload;
//! - the metrics thread: a small tokio server for `/metrics` (Prometheus text) and
//!   `/health`, on a loopback address;
//! - the main thread: signals. SIGTERM and SIGINT stop capture, flush every connection and
//!   exit; SIGHUP reloads the configuration (filter, ports, output) without losing flows.
//!
//! Every queue is bounded: a full output queue drops the batch and counts it
//! (`apiwatch_output_dropped_records_total`): a slow output never stalls capture.

use crate::config::{Backend, Config, LogFormat};
use crate::detect::DetectStage;
use crate::engine::{Engine, Stats};
use crate::inventory::InventoryStage;
use crate::output::NdjsonOutput;
use crate::replay::Analyzed;
use anyhow::{anyhow, bail, Context, Result};
use apiwatch_detect::{InspectConfig, Inspector};
use apiwatch_inventory::ObserveConfig;
use apiwatch_model::RenderOptions;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Command-line settings that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub backend: Option<Backend>,
    pub ports: Option<Vec<u16>>,
    pub output: Option<String>,
    pub log_json: bool,
}

fn effective_config(path: Option<&Path>, o: &Overrides) -> Result<Config, Vec<crate::config::Problem>> {
    let mut c = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !o.interfaces.is_empty() {
        c.capture.interfaces = o.interfaces.clone();
    }
    if let Some(b) = o.backend {
        c.capture.backend = b;
    }
    if let Some(p) = &o.ports {
        c.capture.ports = p.clone();
    }
    if let Some(out) = &o.output {
        c.output.path = out.clone();
    }
    if o.log_json {
        c.log.format = LogFormat::Json;
    }
    let problems = c.validate(true);
    if problems.is_empty() {
        Ok(c)
    } else {
        Err(problems)
    }
}

/// What capture threads publish for the metrics endpoint.
#[derive(Default)]
struct IfaceState {
    backend: &'static str,
    stats: Stats,
    kernel_received: u64,
    kernel_dropped: u64,
    interface_dropped: u64,
    heartbeat: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    ifaces: Mutex<BTreeMap<String, IfaceState>>,
    output_records: AtomicU64,
    /// How long the last batch written waited from its first record's completion (µs).
    output_lag_us: AtomicU64,
    output_dropped: AtomicU64,
    output_queued: AtomicU64,
    reloads: AtomicU64,
    inventory: Mutex<Option<apiwatch_inventory::inventory::Counters>>,
    classify: Mutex<Option<apiwatch_inventory::sensitive::SensitiveCounters>>,
    detect: Mutex<Option<apiwatch_detect::DetectorCounters>>,
    inventory_endpoints: AtomicU64,
    inventory_hosts: AtomicU64,
    inventory_saves_failed: AtomicU64,
    /// Remote outputs: name and counters, as the output thread last published them.
    #[allow(clippy::type_complexity)]
    remotes: Mutex<Vec<(String, Vec<(&'static str, &'static str, u64)>)>>,
}

enum OutMsg {
    /// Rendered records, their count, what they tell the inventory, the capture time of
    /// the batch, and when its first record was completed (for the output lag).
    Records(Vec<u8>, u64, Vec<Analyzed>, i64, Instant),
    /// A configuration reload: reopen the output, and apply new settings to the analyzers
    /// the output thread owns.
    Reopen(Box<Reload>),
}

/// What the output thread takes from a reload. The analyzers keep what they learned.
struct Reload {
    output: Option<PathBuf>,
    /// The detector's thresholds, allowlists and threat lists.
    detect: Option<apiwatch_detect::DetectorConfig>,
    /// The inventory's templates, specs and caps, and the classifier's types and sampling.
    inventory: Option<(apiwatch_inventory::InventoryConfig, Option<apiwatch_inventory::SensitiveConfig>)>,
}

/// Settings a capture thread picks up on reload (when `generation` moves).
struct Live {
    filter: Mutex<String>,
    ports: Mutex<Vec<u16>>,
    /// What workers observe for the inventory (networks, proxies, schemas, sampling gate).
    observe: Mutex<Option<ObserveConfig>>,
    /// What workers inspect for the detections.
    inspect: Mutex<Option<InspectConfig>>,
    generation: AtomicU64,
}

pub fn run(config_path: Option<&Path>, o: Overrides) -> Result<()> {
    let cfg = match effective_config(config_path, &o) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("apiwatch: config: {p}");
            }
            bail!("{} problem(s) in the configuration", problems.len());
        }
    };
    init_logging(&cfg);

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;

    // Open every capture before dropping privileges.
    let mut caps = Vec::new();
    let mut ebpf = None;
    match cfg.capture.backend {
        Backend::Pcap => {
            for name in &cfg.capture.interfaces {
                caps.push((name.clone(), open_pcap(name, &cfg)?));
                tracing::info!(interface = %name, filter = %cfg.capture.bpf_filter(), "capturing");
            }
        }
        Backend::Ebpf => {
            ebpf = Some(crate::ebpf::EbpfCapture::open(&cfg.capture.interfaces, &cfg.capture.ports)?);
            tracing::info!(interfaces = ?cfg.capture.interfaces, ports = ?cfg.capture.ports, backend = "ebpf", "capturing");
        }
    }
    let shared = Arc::new(Shared::default());
    let metrics = if cfg.metrics.enabled {
        Some(start_metrics(&cfg.metrics.listen, shared.clone(), stop.clone())?)
    } else {
        None
    };
    // The inventory is loaded (and its state directory created) while still privileged.
    // The hash key it read is kept for reloads (the key file may be root's alone).
    let mut running_key = Vec::new();
    let inventory = if cfg.inventory.enabled {
        let (icfg, observe) = cfg.inventory.build()?;
        let sensitive = cfg.classify.build(Some(&cfg.inventory.state_dir), true)?;
        if let Some(s) = &sensitive {
            running_key.clone_from(&s.classifier.hash_key);
        }
        let stage = InventoryStage::new(icfg, observe, sensitive, Some(&cfg.inventory.state_dir))?;
        tracing::info!(endpoints = stage.inv.endpoints, state = %cfg.inventory.state_dir.display(), "inventory loaded");
        Some(stage)
    } else {
        None
    };
    let observe = inventory.as_ref().map(|s| s.observe.clone());
    let (detect, inspect) = match cfg.detect.build() {
        Some((d, i)) => (Some(DetectStage::new(d)), Some(i)),
        None => (None, None),
    };
    let save_every = Duration::from_secs(cfg.inventory.save_interval_secs.max(1));
    // The output is opened while still privileged (it may live where only root writes).
    let mut first_output = NdjsonOutput::new(cfg.output_path().as_deref(), RenderOptions::default())?;
    // Remote outputs: spools under the state directory unless they name one.
    first_output.add_outputs(&cfg.outputs, Some(&cfg.inventory.state_dir))?;
    for r in &cfg.outputs {
        tracing::info!(output = %r.display_name(), kind = %r.kind, "output");
    }
    if let Some(user) = &cfg.privileges.user {
        use crate::privileges::{CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW};
        let keep: &[u32] = match cfg.capture.backend {
            Backend::Pcap => &[CAP_NET_RAW],
            Backend::Ebpf => &[CAP_BPF, CAP_NET_ADMIN],
        };
        crate::privileges::drop_to(user, keep)?;
        tracing::info!(user = %user, "dropped privileges");
    }

    let (out_tx, out_rx) = bounded::<OutMsg>(256);
    let render = RenderOptions { redact: cfg.output.redact };
    let writer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("output".into())
            .spawn(move || output_thread(first_output, out_rx, shared, inventory, detect, save_every))?
    };
    let live = Arc::new(Live {
        filter: Mutex::new(cfg.capture.bpf_filter()),
        ports: Mutex::new(cfg.capture.ports.clone()),
        observe: Mutex::new(observe.clone()),
        inspect: Mutex::new(inspect.clone()),
        generation: AtomicU64::new(0),
    });
    let mut threads = Vec::new();
    let settings = PcapSettings {
        snaplen: cfg.capture.snaplen,
        promiscuous: cfg.capture.promiscuous,
        buffer_bytes: cfg.capture.buffer_bytes,
    };
    let ctx = ThreadCtx {
        engine: cfg.engine(),
        render,
        observe,
        inspect,
        out: out_tx.clone(),
        stop: stop.clone(),
        live: live.clone(),
        shared: shared.clone(),
    };
    for (name, cap) in caps {
        let (ctx, settings) = (ctx.clone(), settings.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("capture-{name}"))
                .spawn(move || capture_thread(name, cap, ctx, settings))?,
        );
    }
    if let Some(cap) = ebpf {
        let (ctx, name) = (ctx.clone(), cfg.capture.interfaces.join(","));
        threads
            .push(std::thread::Builder::new().name("capture-ebpf".into()).spawn(move || ebpf_thread(name, cap, ctx))?);
    }
    // The threads have their copies: the output channel must close when they end.
    drop(ctx);
    // The main thread keeps a sender to ask for reopening the output (SIGHUP).
    let control = out_tx;

    let mut current = cfg;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            match effective_config(config_path, &o).and_then(|new| {
                let analyzers = reloaded_analyzers(&current, &new, &running_key)?;
                Ok((new, analyzers))
            }) {
                Ok((new, (observe, inspect, reload))) => {
                    if new.capture.interfaces != current.capture.interfaces
                        || new.capture.backend != current.capture.backend
                    {
                        tracing::warn!("capture.interfaces and capture.backend change only on restart");
                    }
                    *live.filter.lock().unwrap_or_else(|e| e.into_inner()) = new.capture.bpf_filter();
                    *live.ports.lock().unwrap_or_else(|e| e.into_inner()) = new.capture.ports.clone();
                    if let Some(obs) = observe {
                        *live.observe.lock().unwrap_or_else(|e| e.into_inner()) = Some(obs);
                    }
                    if let Some(i) = inspect {
                        *live.inspect.lock().unwrap_or_else(|e| e.into_inner()) = Some(i);
                    }
                    live.generation.fetch_add(1, Ordering::Relaxed);
                    shared.reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(filter = %new.capture.bpf_filter(), "configuration reloaded");
                    // The output file is reopened (log rotation) whether or not its path changed.
                    let reload = Box::new(Reload { output: new.output_path(), ..reload });
                    if control.send_timeout(OutMsg::Reopen(reload), Duration::from_secs(1)).is_err() {
                        tracing::error!("output thread busy: output not reopened");
                    }
                    current = new;
                }
                Err(problems) => {
                    for p in &problems {
                        tracing::error!(problem = %p, "reload refused, keeping the running configuration");
                    }
                }
            }
        }
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    tracing::info!("stopping: flushing connections");
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(anyhow!("a capture thread panicked")),
        }
    }
    drop(control);
    writer.join().map_err(|_| anyhow!("the output thread panicked"))??;
    if let Some(m) = metrics {
        let _ = m.join();
    }
    tracing::info!(records = shared.output_records.load(Ordering::Relaxed), "stopped");
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The analyzers' share of a reload: what workers observe and inspect, and what the output
/// thread applies to the inventory, the classifier and the detector. Switching an analyzer
/// on or off, or moving the state directory, waits for a restart (said in the log); a spec
/// file that no longer loads refuses the whole reload.
#[allow(clippy::type_complexity)]
fn reloaded_analyzers(
    current: &Config,
    new: &Config,
    running_key: &[u8],
) -> Result<(Option<ObserveConfig>, Option<InspectConfig>, Reload), Vec<crate::config::Problem>> {
    for (what, before, after) in [
        ("inventory.enabled", current.inventory.enabled, new.inventory.enabled),
        ("classify.enabled", current.classify.enabled, new.classify.enabled),
        ("detect.enabled", current.detect.enabled, new.detect.enabled),
        ("inventory.state_dir", true, current.inventory.state_dir == new.inventory.state_dir),
    ] {
        if before != after {
            tracing::warn!("{what} changes only on restart");
        }
    }
    let refused = |key: &str, e: anyhow::Error| vec![crate::config::problem(key, format!("{e:#}"))];
    let (mut observe, mut inventory) = (None, None);
    if current.inventory.enabled {
        let (icfg, mut obs) = new.inventory.build().map_err(|e| refused("inventory", e))?;
        let same = current.classify.enabled == new.classify.enabled;
        let classify = if same { &new.classify } else { &current.classify };
        let sensitive = classify.rebuild(running_key, true).map_err(|e| refused("classify", e))?;
        obs.classify = sensitive
            .as_ref()
            .map(|s| std::cell::RefCell::new(apiwatch_inventory::sensitive::MaterialGate::new(s.first, s.every)));
        observe = Some(obs);
        inventory = Some((icfg, sensitive));
    }
    let (detect, inspect) = match (current.detect.enabled, new.detect.build()) {
        (true, Some((d, i))) => (Some(d), Some(i)),
        _ => (None, None),
    };
    Ok((observe, inspect, Reload { output: None, detect, inventory }))
}

fn output_thread(
    mut out: NdjsonOutput,
    rx: Receiver<OutMsg>,
    shared: Arc<Shared>,
    mut inventory: Option<InventoryStage>,
    mut detect: Option<DetectStage>,
    save_every: Duration,
) -> Result<()> {
    let mut last_flush = Instant::now();
    let mut last_save = Instant::now();
    let save = |stage: &mut InventoryStage, shared: &Shared| {
        if let Err(e) = stage.save() {
            shared.inventory_saves_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %format!("{e:#}"), "inventory not saved");
        }
        *shared.inventory.lock().unwrap_or_else(|e| e.into_inner()) = Some(stage.inv.counters.clone());
        *shared.classify.lock().unwrap_or_else(|e| e.into_inner()) =
            stage.inv.sensitive.as_ref().map(|s| s.counters.clone());
        shared.inventory_endpoints.store(stage.inv.endpoints as u64, Ordering::Relaxed);
        shared.inventory_hosts.store(stage.inv.hosts.len() as u64, Ordering::Relaxed);
    };
    loop {
        crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(OutMsg::Records(bytes, n, obs, ts, born)) => {
                    shared.output_queued.fetch_sub(1, Ordering::Relaxed);
                    out.raw(&bytes, n)?;
                    shared.output_records.fetch_add(n, Ordering::Relaxed);
                    shared.output_lag_us.store(born.elapsed().as_micros() as u64, Ordering::Relaxed);
                    let mut owner = crate::replay::Owner { inv: &mut inventory, det: &mut detect };
                    for (o, d) in &obs {
                        owner.analyzed(o.as_ref(), d.as_ref(), &mut out)?;
                    }
                    if let Some(stage) = inventory.as_mut() {
                        stage.tick(ts, &mut out)?;
                    }
                    if let Some(stage) = detect.as_mut() {
                        stage.tick(ts, &mut out)?;
                        *shared.detect.lock().unwrap_or_else(|e| e.into_inner()) = Some(stage.detector.counters.clone());
                    }
                }
                Ok(OutMsg::Reopen(reload)) => {
                    let Reload { output: p, detect: detect_cfg, inventory: inventory_cfg } = *reload;
                    if let (Some(stage), Some(cfg)) = (detect.as_mut(), detect_cfg) {
                        stage.detector.cfg = cfg;
                        tracing::info!("detection settings reloaded");
                    }
                    if let (Some(stage), Some((icfg, sensitive))) = (inventory.as_mut(), inventory_cfg) {
                        stage.inv.reconfigure(icfg);
                        if let (Some(s), Some(cfg)) = (stage.inv.sensitive.as_mut(), sensitive) {
                            s.reconfigure(cfg);
                        }
                        tracing::info!("inventory and classifier settings reloaded");
                    }
                    out.flush()?;
                    let remotes = std::mem::take(&mut out.remotes);
                    let files = std::mem::take(&mut out.files);
                    out = NdjsonOutput::new(p.as_deref(), RenderOptions::default())?;
                    out.remotes = remotes;
                    out.files = files;
                    tracing::info!(path = ?p, "output reopened");
                }
                Err(_) => break,
            },
            default(Duration::from_millis(200)) => {}
        }
        // Live output is read as it comes: flush at least every 200 ms.
        if last_flush.elapsed() >= Duration::from_millis(200) {
            out.flush()?;
            out.tick()?;
            *shared.remotes.lock().unwrap_or_else(|e| e.into_inner()) =
                out.remotes.iter().map(|r| r.snapshot()).collect();
            last_flush = Instant::now();
        }
        if let Some(stage) = inventory.as_mut() {
            if last_save.elapsed() >= save_every {
                save(stage, &shared);
                last_save = Instant::now();
            }
        }
    }
    if let Some(stage) = inventory.as_mut() {
        stage.tick(now_ns(), &mut out)?;
        out.flush()?;
        save(stage, &shared);
    }
    if let Some(stage) = detect.as_mut() {
        stage.finish(&mut out)?;
        out.flush()?;
    }
    // The sinks get a few seconds to take what is spooled; the rest waits for the next start.
    for r in out.finish_remotes(Duration::from_secs(5))? {
        tracing::info!(output = %r.name, delivered = r.sent, spooled = r.pending, dropped = r.dropped, "remote output stopped");
    }
    out.flush()
}

/// What reopening a libpcap capture needs.
#[derive(Clone)]
struct PcapSettings {
    snaplen: u32,
    promiscuous: bool,
    buffer_bytes: u64,
}

fn reopen_pcap(name: &str, s: &PcapSettings, filter: &str) -> Result<pcap::Capture<pcap::Active>> {
    let cap = pcap::Capture::from_device(name)?
        .snaplen(s.snaplen as i32)
        .promisc(s.promiscuous)
        .buffer_size(s.buffer_bytes.min(i32::MAX as u64) as i32)
        .immediate_mode(true)
        .open()?;
    let mut cap = cap.setnonblock()?;
    cap.filter(filter, true)?;
    Ok(cap)
}

fn open_pcap(name: &str, cfg: &Config) -> Result<pcap::Capture<pcap::Active>> {
    let c = &cfg.capture;
    let cap = pcap::Capture::from_device(name)
        .with_context(|| format!("capture.interfaces: cannot use interface {name}"))?
        .snaplen(c.snaplen as i32)
        .promisc(c.promiscuous)
        .buffer_size(c.buffer_bytes.min(i32::MAX as u64) as i32)
        .immediate_mode(true)
        .open()
        .with_context(|| format!("capture.interfaces: cannot open {name} (needs CAP_NET_RAW)"))?;
    let mut cap = cap.setnonblock().with_context(|| format!("{name}: non-blocking mode"))?;
    cap.filter(&c.bpf_filter(), true)
        .with_context(|| format!("capture.filter: {:?} does not compile", c.bpf_filter()))?;
    Ok(cap)
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Records are sent when this many bytes are rendered, or every 100 ms.
const BATCH_BYTES: usize = 256 << 10;

/// Renders a capture thread's transactions and hands them to the output thread in
/// batches. A full queue drops the batch and counts it: output never stalls capture.
struct Batcher {
    render: RenderOptions,
    observe: Option<ObserveConfig>,
    inspector: Option<Inspector>,
    obs: Vec<Analyzed>,
    out: Sender<OutMsg>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    records: u64,
    /// When the first record of the batch was completed.
    born: Instant,
    last_send: Instant,
}

impl Batcher {
    fn new(
        render: RenderOptions,
        observe: Option<ObserveConfig>,
        inspect: Option<InspectConfig>,
        out: Sender<OutMsg>,
        shared: Arc<Shared>,
    ) -> Self {
        Batcher {
            render,
            observe,
            inspector: inspect.map(Inspector::new),
            obs: Vec::new(),
            out,
            shared,
            buf: Vec::with_capacity(BATCH_BYTES + (64 << 10)),
            records: 0,
            born: Instant::now(),
            last_send: Instant::now(),
        }
    }

    /// Take the analyzers' settings of a reload. The sampling gate keeps its counts, so
    /// that the calls it lets through stay a superset of those the inventory picks.
    fn reconfigure(&mut self, live: &Live) {
        if let (Some(cur), Some(mut new)) =
            (self.observe.as_mut(), live.observe.lock().unwrap_or_else(|e| e.into_inner()).clone())
        {
            if let (Some(old), Some(gate)) = (cur.classify.as_ref(), new.classify.as_ref()) {
                gate.borrow_mut().keep_counts(&mut old.borrow_mut());
            }
            if cur.classify.is_none() {
                new.classify = None;
            }
            *cur = new;
        }
        let inspect = live.inspect.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(i), Some(cfg)) = (self.inspector.as_mut(), inspect) {
            if i.cfg != cfg {
                *i = Inspector::new(cfg);
            }
        }
    }

    /// Render what the engine completed.
    fn take(&mut self, engine: &mut Engine) {
        if engine.has_output() {
            for mut tx in engine.drain() {
                if self.records == 0 {
                    self.born = Instant::now();
                }
                NdjsonOutput::render(&self.render, &tx, &mut self.buf);
                self.records += 1;
                let a = crate::replay::analyze(&mut tx, self.observe.as_ref(), self.inspector.as_mut());
                if a.0.is_some() || a.1.is_some() {
                    self.obs.push(a);
                }
            }
        }
    }

    /// Send when the batch is big enough or old enough.
    fn maybe_send(&mut self) {
        if self.buf.len() < BATCH_BYTES && self.last_send.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_send = Instant::now();
        if self.records == 0 {
            return;
        }
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH_BYTES + (64 << 10)));
        let n = std::mem::take(&mut self.records);
        let obs = std::mem::take(&mut self.obs);
        self.shared.output_queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.out.try_send(OutMsg::Records(bytes, n, obs, now_ns(), self.born))
        {
            self.shared.output_queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.output_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The last batch (at shutdown) waits for room, up to 2 s.
    fn finish(self) {
        if self.records == 0 {
            return;
        }
        self.shared.output_queued.fetch_add(1, Ordering::Relaxed);
        let msg = OutMsg::Records(self.buf, self.records, self.obs, now_ns(), self.born);
        if self.out.send_timeout(msg, Duration::from_secs(2)).is_err() {
            self.shared.output_queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.output_dropped.fetch_add(self.records, Ordering::Relaxed);
        }
    }
}

/// What every capture thread shares with the rest of the daemon.
#[derive(Clone)]
struct ThreadCtx {
    engine: crate::engine::EngineConfig,
    render: RenderOptions,
    observe: Option<ObserveConfig>,
    inspect: Option<InspectConfig>,
    out: Sender<OutMsg>,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    shared: Arc<Shared>,
}

fn capture_thread(
    name: String,
    cap: pcap::Capture<pcap::Active>,
    ctx: ThreadCtx,
    pcap_settings: PcapSettings,
) -> Result<()> {
    let ThreadCtx { engine: engine_cfg, render, observe, inspect, out, stop, live, shared } = ctx;
    let mut linktype = cap.get_datalink().0 as u32;
    let mut cap = Some(cap);
    let mut last_retry = Instant::now();
    let mut engine = Engine::new(engine_cfg);
    let mut batcher = Batcher::new(render, observe, inspect, out, shared.clone());
    let mut idx = 0u64;
    let mut generation = 0;
    let mut last_publish = Instant::now() - Duration::from_secs(10);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // The interface went away: try again every second, keeping every flow's state.
        if cap.is_none() {
            if last_retry.elapsed() >= Duration::from_secs(1) {
                last_retry = Instant::now();
                let filter = live.filter.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Ok(c) = reopen_pcap(&name, &pcap_settings, &filter) {
                    linktype = c.get_datalink().0 as u32;
                    cap = Some(c);
                    generation = live.generation.load(Ordering::Relaxed);
                    tracing::info!(interface = %name, "interface is back: capturing again");
                }
            }
            if cap.is_none() {
                std::thread::sleep(Duration::from_millis(100));
                engine.tick(now_ns());
                continue;
            }
        }
        let Some(c) = cap.as_mut() else { continue };
        let g = live.generation.load(Ordering::Relaxed);
        if g != generation {
            generation = g;
            batcher.reconfigure(&live);
            let filter = live.filter.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Err(e) = c.filter(&filter, true) {
                tracing::error!(interface = %name, error = %e, "new filter refused, keeping the old one");
            }
        }
        // Drain what is there, then wait on the descriptor.
        let mut got = 0;
        let mut lost = None;
        while got < 4096 {
            match c.next_packet() {
                Ok(p) => {
                    let ts = p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec * 1_000;
                    engine.packet(linktype, p.data, p.header.len, ts, idx);
                    idx += 1;
                    got += 1;
                    batcher.take(&mut engine);
                }
                Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => break,
                Err(e) => {
                    lost = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = lost {
            tracing::warn!(interface = %name, error = %e, "capture failed (interface gone?): retrying every second");
            if let Some(c) = cap.as_mut() {
                publish(&name, &engine, c, &shared);
            }
            cap = None;
            continue;
        }
        if got == 0 {
            let fd = c.as_raw_fd();
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            // An idle link: let time pass so idle connections expire and flush.
            engine.tick(now_ns());
            batcher.take(&mut engine);
        }
        batcher.maybe_send();
        if last_publish.elapsed() >= Duration::from_secs(1) {
            if let Some(c) = cap.as_mut() {
                publish(&name, &engine, c, &shared);
            }
            last_publish = Instant::now();
        }
    }
    engine.finish();
    batcher.take(&mut engine);
    batcher.finish();
    if let Some(c) = cap.as_mut() {
        publish(&name, &engine, c, &shared);
    }
    Ok(())
}

fn ebpf_thread(name: String, mut cap: crate::ebpf::EbpfCapture, ctx: ThreadCtx) -> Result<()> {
    let ThreadCtx { engine: engine_cfg, render, observe, inspect, out, stop, live, shared } = ctx;
    let mut engine = Engine::new(engine_cfg);
    let mut batcher = Batcher::new(render, observe, inspect, out, shared.clone());
    let mut idx = 0u64;
    let mut generation = 0;
    let mut last_publish = Instant::now() - Duration::from_secs(10);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let g = live.generation.load(Ordering::Relaxed);
        if g != generation {
            generation = g;
            batcher.reconfigure(&live);
            let ports = live.ports.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Err(e) = cap.set_ports(&ports) {
                tracing::error!(error = %e, "new port list refused, keeping the old one");
            }
        }
        if !stopping {
            let mut pfd = libc::pollfd { fd: cap.fd(), events: libc::POLLIN, revents: 0 };
            // The kernel side wakes us in batches; drain at least every 5 ms.
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 5) };
        }
        let n = cap.drain(|seg, ts, wire| {
            engine.segment(seg, wire, ts, idx);
            idx += 1;
            batcher.take(&mut engine);
        });
        if n == 0 {
            engine.tick(now_ns());
            batcher.take(&mut engine);
        }
        if stopping {
            break;
        }
        batcher.maybe_send();
        if last_publish.elapsed() >= Duration::from_secs(1) {
            for iface in cap.check_interfaces() {
                tracing::info!(interface = %iface, "interface is back: capturing again");
            }
            publish_ebpf(&name, &engine, &cap, &shared);
            last_publish = Instant::now();
        }
    }
    engine.finish();
    batcher.take(&mut engine);
    batcher.finish();
    publish_ebpf(&name, &engine, &cap, &shared);
    // Dropping `cap` detaches the programs (TCX links belong to this process).
    Ok(())
}

fn publish_ebpf(name: &str, engine: &Engine, cap: &crate::ebpf::EbpfCapture, shared: &Shared) {
    let stats = engine.stats();
    let k = cap.counters();
    let mut g = shared.ifaces.lock().unwrap_or_else(|e| e.into_inner());
    let s = g.entry(name.to_string()).or_default();
    s.backend = "ebpf";
    s.stats = stats;
    s.kernel_received = k.kept;
    s.kernel_dropped = k.reserve_failed;
    s.interface_dropped = k.cut;
    s.heartbeat = Some(Instant::now());
}

fn publish(name: &str, engine: &Engine, cap: &mut pcap::Capture<pcap::Active>, shared: &Shared) {
    let stats = engine.stats();
    let ks = cap.stats().ok();
    let mut g = shared.ifaces.lock().unwrap_or_else(|e| e.into_inner());
    let s = g.entry(name.to_string()).or_default();
    s.backend = "pcap";
    s.stats = stats;
    if let Some(k) = ks {
        s.kernel_received = k.received as u64;
        s.kernel_dropped = k.dropped as u64;
        s.interface_dropped = k.if_dropped as u64;
    }
    s.heartbeat = Some(Instant::now());
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().try_init(),
        // journald adds its own timestamps; keep lines short.
        LogFormat::Human => builder.without_time().try_init(),
    };
}

/// Prometheus exposition of everything the capture threads published.
fn metrics_text(shared: &Shared) -> String {
    let mut o = String::new();
    use std::fmt::Write;
    let g = shared.ifaces.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "# HELP apiwatch_up 1 while the daemon runs.\n# TYPE apiwatch_up gauge\napiwatch_up 1");
    let mut families: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for (iface, s) in g.iter() {
        let lbl = format!("interface=\"{iface}\",backend=\"{}\"", s.backend);
        let v = serde_json::to_value(&s.stats).unwrap_or_default();
        if let Some(obj) = v.as_object() {
            for (section, fields) in obj {
                if section == "skipped" {
                    for (reason, n) in fields.as_object().into_iter().flatten() {
                        families
                            .entry("apiwatch_packets_skipped_total".into())
                            .or_default()
                            .push((format!("{lbl},reason=\"{reason}\""), n.as_f64().unwrap_or(0.0)));
                    }
                    continue;
                }
                for (field, n) in fields.as_object().into_iter().flatten() {
                    let gauge = field.ends_with("_now") || field.ends_with("_peak") || field.ends_with("_active");
                    let name = format!("apiwatch_{section}_{field}{}", if gauge { "" } else { "_total" });
                    families.entry(name).or_default().push((lbl.clone(), n.as_f64().unwrap_or(0.0)));
                }
            }
        }
        let reasons = if s.backend == "ebpf" {
            [("ringbuf_full", s.kernel_dropped), ("segment_cut", s.interface_dropped)]
        } else {
            [("kernel", s.kernel_dropped), ("interface", s.interface_dropped)]
        };
        for (reason, n) in reasons {
            families
                .entry("apiwatch_capture_drops_total".into())
                .or_default()
                .push((format!("{lbl},reason=\"{reason}\""), n as f64));
        }
        families
            .entry("apiwatch_capture_received_total".into())
            .or_default()
            .push((lbl.clone(), s.kernel_received as f64));
    }
    for (name, samples) in families {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (l, v) in samples {
            let _ = writeln!(o, "{name}{{{l}}} {v}");
        }
    }
    for (name, kind, v) in [
        ("apiwatch_output_records_total", "counter", shared.output_records.load(Ordering::Relaxed)),
        ("apiwatch_output_dropped_records_total", "counter", shared.output_dropped.load(Ordering::Relaxed)),
        ("apiwatch_output_queued_batches", "gauge", shared.output_queued.load(Ordering::Relaxed)),
        ("apiwatch_output_lag_microseconds", "gauge", shared.output_lag_us.load(Ordering::Relaxed)),
        ("apiwatch_config_reloads_total", "counter", shared.reloads.load(Ordering::Relaxed)),
        ("apiwatch_inventory_endpoints", "gauge", shared.inventory_endpoints.load(Ordering::Relaxed)),
        ("apiwatch_inventory_hosts", "gauge", shared.inventory_hosts.load(Ordering::Relaxed)),
        ("apiwatch_inventory_saves_failed_total", "counter", shared.inventory_saves_failed.load(Ordering::Relaxed)),
    ] {
        let _ = writeln!(o, "# TYPE {name} {kind}\n{name} {v}");
    }
    if let Some(c) = shared.inventory.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if let Some(obj) = serde_json::to_value(c).ok().as_ref().and_then(|v| v.as_object()) {
            for (k, v) in obj {
                let _ = writeln!(o, "# TYPE apiwatch_inventory_{k}_total counter\napiwatch_inventory_{k}_total {v}");
            }
        }
    }
    for (name, fields) in shared.remotes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for (field, kind, v) in fields {
            let _ =
                writeln!(o, "# TYPE apiwatch_remote_{field} {kind}\napiwatch_remote_{field}{{output=\"{name}\"}} {v}");
        }
    }
    if let Some(c) = shared.detect.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if let Some(obj) = serde_json::to_value(c).ok().as_ref().and_then(|v| v.as_object()) {
            for (k, v) in obj {
                let _ = writeln!(o, "# TYPE apiwatch_detect_{k}_total counter\napiwatch_detect_{k}_total {v}");
            }
        }
    }
    if let Some(c) = shared.classify.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if let Some(obj) = serde_json::to_value(c).ok().as_ref().and_then(|v| v.as_object()) {
            for (k, v) in obj {
                let _ = writeln!(o, "# TYPE apiwatch_classify_{k}_total counter\napiwatch_classify_{k}_total {v}");
            }
        }
    }
    o
}

fn healthy(shared: &Shared) -> bool {
    let g = shared.ifaces.lock().unwrap_or_else(|e| e.into_inner());
    !g.is_empty() && g.values().all(|s| s.heartbeat.is_some_and(|h| h.elapsed() < Duration::from_secs(5)))
}

fn start_metrics(listen: &str, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>> {
    let addr: std::net::SocketAddr = listen.parse().with_context(|| format!("metrics.listen: {listen:?}"))?;
    let std_listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
    std_listener.set_nonblocking(true)?;
    Ok(std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "metrics runtime");
                return;
            }
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
                let Ok(Ok((mut sock, _))) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    // Read the request head (bounded), with a deadline.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while n < buf.len() {
                            match sock.read(&mut buf[n..]).await {
                                Ok(0) | Err(_) => break,
                                Ok(k) => n += k,
                            }
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    })
                    .await;
                    let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string();
                    let path = line.split_whitespace().nth(1).unwrap_or("");
                    let (status, ctype, body) = match path {
                        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics_text(&shared)),
                        "/health" if healthy(&shared) => ("200 OK", "text/plain", "ok\n".to_string()),
                        "/health" => ("503 Service Unavailable", "text/plain", "capture stalled\n".to_string()),
                        _ => ("404 Not Found", "text/plain", "try /metrics or /health\n".to_string()),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
    })?)
}

/// `apiwatch check-config FILE`: every problem, each with its key. Returns the count.
pub fn check_config(path: &Path) -> usize {
    let problems = match Config::load(path) {
        Ok(c) => c.validate(true),
        Err(p) => p,
    };
    for p in &problems {
        println!("{}: {p}", path.display());
    }
    if problems.is_empty() {
        println!("{}: ok", path.display());
    }
    problems.len()
}
