//! The `apiwatch` command line.

use anyhow::{Context, Result};
use apiwatch::engine::EngineConfig;
use apiwatch::replay::{replay, ReplayOptions};
use apiwatch_model::RenderOptions;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "apiwatch", version, about = "Passive API inventory and risk monitoring from HTTP traffic")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read pcap/pcapng files (optionally gzipped) and write HTTP transactions as NDJSON.
    Replay(ReplayArgs),
    /// Capture live traffic (the daemon): the same records as replay, until SIGTERM/SIGINT.
    /// SIGHUP reloads the configuration.
    Run(RunArgs),
    /// Check a configuration file: print every problem with the key that causes it.
    CheckConfig { file: PathBuf },
    /// The central receiver of what agents ship (`--config sink.toml`), and its helpers.
    Sink(SinkArgs),
    /// Read the API inventory kept in a state directory.
    Inventory {
        #[command(subcommand)]
        cmd: InventoryCmd,
    },
    /// Benchmark helper: read every packet of a file and count bytes, with our reader or
    /// libpcap, doing nothing else.
    #[command(hide = true)]
    ReadOnly {
        #[arg(long, value_parser = ["mmap", "libpcap"], default_value = "mmap")]
        reader: String,
        file: PathBuf,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SinkArgs {
    /// Serve: the sink's configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<SinkCmd>,
}

#[derive(Subcommand)]
enum SinkCmd {
    /// List what the sink stored: agents, findings (sensitive data, detections), inventory
    /// changes, or records of given kinds.
    Query {
        #[arg(value_parser = ["agents", "findings", "inventory", "records"])]
        what: String,
        /// The sink's configuration (for its database) ...
        #[arg(long)]
        config: Option<PathBuf>,
        /// ... or the database file itself.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Record kinds, with `records` (transaction, inventory, sensitive_data, detection).
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        /// Only what this agent sent (the name in its certificate).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a CA and certificates for a sink and its agents (a test or pilot deployment).
    Certs {
        /// Directory of the files (an existing CA there is reused).
        #[arg(long)]
        out: PathBuf,
        /// Names (DNS or IP) of the sink's certificate; the first is its common name.
        #[arg(long = "sink-name", value_delimiter = ',')]
        sink_names: Vec<String>,
        /// Agents to issue certificates for (each agent's name is its identity).
        #[arg(long = "agent", value_delimiter = ',')]
        agents: Vec<String>,
        /// Validity of the certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Agents whose certificate has already expired (to test refusals).
        #[arg(long = "expired-agent", value_delimiter = ',', hide = true)]
        expired_agents: Vec<String>,
        /// Make the sink's certificate an expired one (to test refusals).
        #[arg(long, hide = true)]
        expired_sink: bool,
    },
}

#[derive(Subcommand)]
enum InventoryCmd {
    /// Print the inventory (a table by default).
    Show(ShowArgs),
    /// Export the inventory (JSON by default; `--format openapi` for OpenAPI 3.1 per host).
    Export(ShowArgs),
}

#[derive(clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    inv: InventoryArgs,
    /// table, json or openapi.
    #[arg(long, value_parser = ["table", "json", "openapi"])]
    format: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Write here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Inventory settings shared by `replay` and `inventory`: the `[inventory]` section of a
/// configuration file, then these flags over it.
#[derive(clap::Args)]
struct InventoryArgs {
    /// Take the [inventory], [classify], [detect] and [[outputs]] sections from this configuration file.
    #[arg(long = "config")]
    inventory_config: Option<PathBuf>,
    /// State directory of the inventory (loaded, then saved). Replay keeps none by default.
    #[arg(long)]
    state: Option<PathBuf>,
    /// A declared API: OpenAPI 3.x or Swagger 2.0 file, JSON or YAML; `FILE=HOST,HOST` to
    /// say which hosts it describes (default: its servers/host). Repeat for several.
    #[arg(long = "spec")]
    specs: Vec<String>,
    /// A template fixed by hand (`/users/{id}`, or `HOST /path`). Repeat for several.
    #[arg(long = "template")]
    templates: Vec<String>,
    /// Internal client networks (replaces the default RFC 1918, ULA, loopback, link-local).
    #[arg(long = "internal", value_delimiter = ',')]
    internal: Vec<String>,
    /// Proxies whose X-Forwarded-For / Forwarded headers are believed.
    #[arg(long = "trusted-proxy", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
}

impl InventoryArgs {
    /// A section of the configuration file (the defaults without one), checked.
    fn checked<T: Default>(
        &self,
        pick: impl FnOnce(apiwatch::config::Config) -> T,
        problems: impl FnOnce(&T) -> Vec<apiwatch::config::Problem>,
    ) -> Result<T> {
        let s = match &self.inventory_config {
            Some(f) => pick(apiwatch::config::Config::load(f).map_err(|p| {
                anyhow::anyhow!("{}: {}", f.display(), p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
            })?),
            None => T::default(),
        };
        let problems = problems(&s);
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "));
        }
        Ok(s)
    }

    /// The `[classify]` section of the configuration file, or the defaults.
    fn classify_section(&self) -> Result<apiwatch::config::ClassifySection> {
        self.checked(|c| c.classify, |s| s.problems())
    }

    /// The `[detect]` section of the configuration file, or the defaults.
    fn detect_section(&self) -> Result<apiwatch::config::DetectSection> {
        self.checked(|c| c.detect, |s| s.problems())
    }

    fn section(&self) -> Result<apiwatch::config::InventorySection> {
        let mut s = match &self.inventory_config {
            Some(f) => match apiwatch::config::Config::load(f) {
                Ok(c) => c.inventory,
                Err(p) => {
                    anyhow::bail!("{}: {}", f.display(), p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
                }
            },
            None => apiwatch::config::InventorySection::default(),
        };
        if let Some(d) = &self.state {
            s.state_dir = d.clone();
        }
        for spec in &self.specs {
            let (file, hosts) = match spec.split_once('=') {
                Some((f, h)) => (f, h.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect()),
                None => (spec.as_str(), Vec::new()),
            };
            s.specs.push(apiwatch::config::SpecEntry { file: PathBuf::from(file), hosts });
        }
        s.templates.extend(self.templates.iter().cloned());
        if !self.internal.is_empty() {
            s.internal_networks = self.internal.clone();
        }
        s.trusted_proxies.extend(self.trusted_proxies.iter().cloned());
        let problems = s.problems();
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "));
        }
        Ok(s)
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML; see packaging/apiwatch.toml). Flags below override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Interface to capture on (repeat for several).
    #[arg(short, long = "interface")]
    interfaces: Vec<String>,
    /// Capture backend.
    #[arg(long, value_parser = ["pcap", "ebpf"])]
    capture: Option<String>,
    /// Server ports to watch, comma-separated (e.g. 80,8080).
    #[arg(long, value_delimiter = ',')]
    ports: Option<Vec<u16>>,
    /// Write records here ("-" for stdout).
    #[arg(short, long)]
    output: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Capture files, read in order as one capture (pcap or pcapng, optionally .gz).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write records here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write every counter as JSON to this file when done.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Threads for flows and HTTP. 1 runs everything in one thread; 2 or more shard flows
    /// across workers (the output is the same for a given count). At most 64.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Bytes of each body kept (content-decoded) for analyzers; 0 keeps none.
    #[arg(long, default_value_t = 64 * 1024)]
    body_sample_bytes: usize,
    /// Largest start line plus headers accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Most connections tracked at once.
    #[arg(long, default_value_t = 200_000)]
    max_flows: usize,
    /// Out-of-order bytes buffered per direction of a connection.
    #[arg(long, default_value_t = 512 * 1024)]
    reassembly_flow_bytes: usize,
    /// Out-of-order bytes buffered in all.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    reassembly_total_bytes: usize,
    /// Seconds without packets (packet time) after which a connection is closed.
    #[arg(long, default_value_t = 300)]
    flow_timeout: u64,
    /// Skip TCP checksum verification (bad checksums are never dropped, only counted).
    #[arg(long)]
    no_checksum: bool,
    /// Show credential header values in clear. For local debugging only.
    #[arg(long)]
    no_redact: bool,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Transactions only: no inventory and no inventory records.
    #[arg(long)]
    no_inventory: bool,
    /// Do not look for sensitive data (the classifier reads sampled transactions of each
    /// endpoint; it needs the inventory).
    #[arg(long)]
    no_classify: bool,
    /// No runtime threat detections (no `detection` records).
    #[arg(long)]
    no_detect: bool,
    /// Seconds (packet time) a new endpoint must exist before it is reported.
    #[arg(long)]
    settle_secs: Option<u64>,
    /// Seconds to wait at the end for remote outputs ([[outputs]] of --config) to deliver
    /// what they spooled; the rest stays in the spool for the next run.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    #[command(flatten)]
    inv: InventoryArgs,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("apiwatch: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay(a) => {
            let mut engine = EngineConfig::default();
            engine.decoder.verify_checksums = !a.no_checksum;
            engine.http.body_sample_bytes = a.body_sample_bytes;
            engine.http.max_header_bytes = a.max_header_bytes.max(256);
            engine.flow.max_flows = a.max_flows.max(1);
            engine.flow.max_ooo_per_flow = a.reassembly_flow_bytes;
            engine.flow.max_ooo_total = a.reassembly_total_bytes;
            engine.flow.idle_timeout_ns = (a.flow_timeout.max(1) as i64).saturating_mul(1_000_000_000);
            let inventory = if a.no_inventory {
                None
            } else {
                let mut section = a.inv.section()?;
                if let Some(s) = a.settle_secs {
                    section.settle_secs = s;
                }
                let (cfg, observe) = section.build()?;
                // Replay keeps state only when asked (a state dir given by flag or config).
                let state = a.inv.state.clone().or(a.inv.inventory_config.as_ref().map(|_| section.state_dir.clone()));
                let sensitive = if a.no_classify {
                    None
                } else {
                    let c = a.inv.classify_section()?;
                    if c.enabled && c.hash_key.is_empty() && state.is_none() && !a.quiet {
                        eprintln!("apiwatch: note: keyed hashes of sensitive values use the built-in key (no classify.hash_key, no --state): they are for correlating within this output, not secret");
                    }
                    c.build(state.as_deref(), !a.no_redact)?
                };
                Some(apiwatch::replay::InventoryOptions { cfg, observe, sensitive, state })
            };
            let detect = if a.no_detect { None } else { a.inv.detect_section()?.build() };
            let (remotes, remote_state) = match &a.inv.inventory_config {
                Some(f) => {
                    let c = apiwatch::config::Config::load(f).map_err(|p| {
                        anyhow::anyhow!(
                            "{}: {}",
                            f.display(),
                            p.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
                        )
                    })?;
                    let problems: Vec<String> =
                        c.outputs.iter().enumerate().flat_map(|(i, o)| o.problems(i)).map(|p| p.to_string()).collect();
                    if !problems.is_empty() {
                        anyhow::bail!("{}: {}", f.display(), problems.join("; "));
                    }
                    (c.outputs, Some(a.inv.state.clone().unwrap_or(c.inventory.state_dir)))
                }
                None => (Vec::new(), None),
            };
            let opts = ReplayOptions {
                files: a.files,
                output: a.output,
                engine,
                render: RenderOptions { redact: !a.no_redact },
                workers: a.workers as usize,
                progress: !a.quiet,
                inventory,
                detect,
                remotes,
                remote_state,
                drain: std::time::Duration::from_secs(a.drain_timeout),
            };
            let report = replay(&opts)?;
            if let Some(p) = &a.stats {
                // The counters, plus what this run measured (not deterministic).
                let mut v = serde_json::to_value(&report.stats)?;
                v["classify"] = serde_json::to_value(&report.classify)?;
                v["detect"] = serde_json::to_value(&report.detect)?;
                v["run"] = serde_json::json!({
                    "elapsed_s": report.elapsed.as_secs_f64(),
                    "input_bytes": report.input_bytes,
                    "records": report.records,
                    "peak_rss_bytes": apiwatch::summary::peak_rss_bytes(),
                    "workers": a.workers,
                    "thread_cpu_s": report.thread_cpu.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<String, serde_json::Value>>(),
                });
                let json = serde_json::to_string_pretty(&v)?;
                std::fs::write(p, json + "\n").with_context(|| format!("cannot write {}", p.display()))?;
            }
            if !a.quiet {
                eprint!("{}", apiwatch::summary::render(&report));
            }
            match report.error {
                Some(e) => {
                    eprintln!("apiwatch: error: {e:#}");
                    eprintln!("apiwatch: everything before the damage was processed and written");
                    Ok(ExitCode::from(1))
                }
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Cmd::Run(a) => {
            let o = apiwatch::live::Overrides {
                interfaces: a.interfaces,
                backend: a.capture.map(|c| {
                    if c == "ebpf" {
                        apiwatch::config::Backend::Ebpf
                    } else {
                        apiwatch::config::Backend::Pcap
                    }
                }),
                ports: a.ports,
                output: a.output,
                log_json: a.log_json,
            };
            apiwatch::live::run(a.config.as_deref(), o)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inventory { cmd } => {
            let (a, default_format) = match cmd {
                InventoryCmd::Show(a) => (a, "table"),
                InventoryCmd::Export(a) => (a, "json"),
            };
            let section = a.inv.section()?;
            let (cfg, _) = section.build()?;
            let inv = apiwatch::inventory::read_state(&section.state_dir, cfg)?;
            let text =
                apiwatch::report::render(&inv, a.format.as_deref().unwrap_or(default_format), a.host.as_deref())?;
            match &a.output {
                Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().lock().write_all(text.as_bytes())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sink(a) => match a.cmd {
            None => {
                let Some(path) = a.config else {
                    anyhow::bail!("apiwatch sink --config sink.toml (or: apiwatch sink query|certs)");
                };
                let cfg = apiwatch::sink::SinkConfig::load(&path)?;
                tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
                signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
                apiwatch::sink::serve(&cfg, stop, |addr| {
                    use std::io::Write;
                    println!("apiwatch sink: listening on {addr}");
                    let _ = std::io::stdout().flush();
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Some(SinkCmd::Query { what, config, db, kind, agent, limit, json }) => {
                let store = match (db, config) {
                    (Some(d), _) if d.exists() => apiwatch::sink::store::Store::open(&d)?,
                    (Some(d), _) => anyhow::bail!("{}: no such database", d.display()),
                    (None, Some(c)) => apiwatch::sink::SinkConfig::load(&c)?.open_store()?,
                    (None, None) => anyhow::bail!("give --db FILE or --config sink.toml"),
                };
                print!("{}", apiwatch::sink::query(store, &what, &kind, agent.as_deref(), limit, json)?);
                Ok(ExitCode::SUCCESS)
            }
            Some(SinkCmd::Certs { out, sink_names, agents, days, expired_agents, expired_sink }) => {
                let files = apiwatch::sink::certs::make(&apiwatch::sink::certs::CertsOptions {
                    dir: &out,
                    sink_names: &sink_names,
                    agents: &agents,
                    days,
                    expired_agents: &expired_agents,
                    expired_sink,
                })?;
                for f in files {
                    println!("{f}");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Cmd::CheckConfig { file } => {
            let n = apiwatch::live::check_config(&file);
            Ok(if n == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::ReadOnly { reader, file } => {
            let start = std::time::Instant::now();
            let (n, bytes) = if reader == "libpcap" {
                apiwatch::capture::libpcap_read_all(&file)?
            } else {
                let cap = apiwatch::capture::CaptureFile::open(&file)?;
                let mut n = 0u64;
                let mut bytes = 0u64;
                for p in apiwatch::capture::file::Reader::new(cap.bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
                {
                    let p = p.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                    n += 1;
                    bytes += p.data.len() as u64;
                }
                (n, bytes)
            };
            let secs = start.elapsed().as_secs_f64();
            println!("{{\"reader\":\"{reader}\",\"packets\":{n},\"bytes\":{bytes},\"seconds\":{secs:.6}}}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
