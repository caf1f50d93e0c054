//! The daemon's configuration: TOML, closed (unknown keys are errors), validated up front.
//!
//! `Config::load` reports a syntax or type problem with the key and line; `validate` then
//! collects every semantic problem at once, each naming its key and the bad value, so that
//! `apiwatch check-config` can print them all. Every key is documented in
//! `packaging/apiwatch.toml`, and a test checks that file parses and validates.

use crate::engine::EngineConfig;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub capture: CaptureConfig,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub flows: FlowSection,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub privileges: PrivilegesConfig,
    #[serde(default)]
    pub inventory: InventorySection,
    #[serde(default)]
    pub classify: ClassifySection,
    #[serde(default)]
    pub detect: DetectSection,
    /// Remote outputs (`[[outputs]]`), besides the NDJSON of `[output]`.
    #[serde(default)]
    pub outputs: Vec<crate::remote::RemoteConfig>,
}

/// `[classify]`: the sensitive-data classifier (see packaging/apiwatch.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifySection {
    pub enabled: bool,
    /// Mask values in findings. `false` shows them in clear: for local debugging only.
    pub redact: bool,
    /// Key of the keyed hashes. Empty: a random key kept in `<state_dir>/hash.key`.
    pub hash_key: String,
    pub first: u64,
    pub every: u64,
    pub max_body_bytes: usize,
    pub bytes_per_sec: u64,
    pub max_findings_per_message: usize,
    pub custom: Vec<CustomEntry>,
}

/// `[detect]`: runtime threat detections (see packaging/apiwatch.toml and docs/detections.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    pub enabled: bool,
    /// Detections turned off, by name.
    pub disabled: Vec<String>,
    pub window_secs: u64,
    pub max_open: usize,
    pub max_clients: usize,
    pub max_body_bytes: usize,
    pub brute_force_failures: u32,
    pub stuffing_users: u32,
    pub login_window_secs: u64,
    pub spray_paths: u32,
    pub spray_missing_ratio: f64,
    pub spray_window_secs: u64,
    pub learning_secs: u64,
    pub min_samples: u32,
    pub max_endpoints: usize,
    pub max_principals: usize,
    pub spike_ratio: f64,
    pub endpoint_spike_min: u32,
    pub client_spike_min: u32,
    pub size_ratio: f64,
    pub size_min_bytes: u64,
    pub latency_ratio: f64,
    pub latency_min_ms: u64,
    pub bola_walk: u32,
    pub bola_unknown_ids: u32,
    pub enum_values: u32,
    pub enum_failure_ratio: f64,
    pub distributed_enum_values: u32,
    pub distributed_clients: u32,
    pub exfil_window_secs: u64,
    pub exfil_ratio: f64,
    pub exfil_min_bytes: u64,
    pub exfil_min_records: u64,
    pub error_requests: u32,
    pub error_ratio: f64,
    pub pipeline_depth: u32,
    pub unseen_after_calls: u64,
    /// Files of addresses and CIDR ranges (one per line, `#` comments), e.g. Tor exits.
    pub threat_lists: Vec<PathBuf>,
    pub allow: Vec<AllowEntry>,
}

/// `[[detect.allow]]`: findings left out when every given part matches.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    #[serde(default)]
    pub detection: Option<String>,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
}

impl Default for DetectSection {
    fn default() -> Self {
        let d = apiwatch_detect::DetectorConfig::default();
        DetectSection {
            enabled: true,
            disabled: Vec::new(),
            window_secs: d.window_secs,
            max_open: d.max_open,
            max_clients: d.max_clients,
            max_body_bytes: apiwatch_detect::InspectConfig::default().max_body_bytes,
            brute_force_failures: d.brute_force_failures,
            stuffing_users: d.stuffing_users,
            login_window_secs: d.login_window_secs,
            spray_paths: d.spray_paths,
            spray_missing_ratio: d.spray_missing_ratio,
            spray_window_secs: d.spray_window_secs,
            learning_secs: d.learning_secs,
            min_samples: d.min_samples,
            max_endpoints: d.max_endpoints,
            max_principals: d.max_principals,
            spike_ratio: d.spike_ratio,
            endpoint_spike_min: d.endpoint_spike_min,
            client_spike_min: d.client_spike_min,
            size_ratio: d.size_ratio,
            size_min_bytes: d.size_min_bytes,
            latency_ratio: d.latency_ratio,
            latency_min_ms: d.latency_min_ms,
            bola_walk: d.bola_walk,
            bola_unknown_ids: d.bola_unknown_ids,
            enum_values: d.enum_values,
            enum_failure_ratio: d.enum_failure_ratio,
            distributed_enum_values: d.distributed_enum_values,
            distributed_clients: d.distributed_clients,
            exfil_window_secs: d.exfil_window_secs,
            exfil_ratio: d.exfil_ratio,
            exfil_min_bytes: d.exfil_min_bytes,
            exfil_min_records: d.exfil_min_records,
            error_requests: d.error_requests,
            error_ratio: d.error_ratio,
            pipeline_depth: d.pipeline_depth,
            unseen_after_calls: d.unseen_after_calls,
            threat_lists: Vec::new(),
            allow: Vec::new(),
        }
    }
}

impl DetectSection {
    pub fn problems(&self) -> Vec<Problem> {
        let mut v = Vec::new();
        let known = || apiwatch_detect::RULES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ");
        for (i, d) in self.disabled.iter().enumerate() {
            if apiwatch_detect::RuleId::by_name(d).is_none() {
                v.push(problem(
                    &format!("detect.disabled[{i}]"),
                    format!("{d:?} is not a detection (known: {})", known()),
                ));
            }
        }
        for (key, n) in [
            ("detect.max_open", self.max_open),
            ("detect.max_clients", self.max_clients),
            ("detect.brute_force_failures", self.brute_force_failures as usize),
            ("detect.stuffing_users", self.stuffing_users as usize),
            ("detect.login_window_secs", self.login_window_secs as usize),
            ("detect.spray_paths", self.spray_paths as usize),
            ("detect.spray_window_secs", self.spray_window_secs as usize),
            ("detect.min_samples", self.min_samples as usize),
            ("detect.max_endpoints", self.max_endpoints),
            ("detect.max_principals", self.max_principals),
            ("detect.endpoint_spike_min", self.endpoint_spike_min as usize),
            ("detect.client_spike_min", self.client_spike_min as usize),
            ("detect.bola_walk", self.bola_walk as usize),
            ("detect.bola_unknown_ids", self.bola_unknown_ids as usize),
            ("detect.enum_values", self.enum_values as usize),
            ("detect.distributed_enum_values", self.distributed_enum_values as usize),
            ("detect.distributed_clients", self.distributed_clients as usize),
            ("detect.exfil_window_secs", self.exfil_window_secs as usize),
            ("detect.error_requests", self.error_requests as usize),
            ("detect.pipeline_depth", self.pipeline_depth as usize),
        ] {
            if n == 0 {
                v.push(problem(key, "must be at least 1".into()));
            }
        }
        for (key, r) in [
            ("detect.spray_missing_ratio", self.spray_missing_ratio),
            ("detect.enum_failure_ratio", self.enum_failure_ratio),
            ("detect.error_ratio", self.error_ratio),
        ] {
            if !(r > 0.0 && r <= 1.0) {
                v.push(problem(key, "must be above 0 and at most 1".into()));
            }
        }
        for (key, r) in [
            ("detect.spike_ratio", self.spike_ratio),
            ("detect.size_ratio", self.size_ratio),
            ("detect.latency_ratio", self.latency_ratio),
            ("detect.exfil_ratio", self.exfil_ratio),
        ] {
            if !(r > 1.0 && r.is_finite()) {
                v.push(problem(key, "must be a number above 1".into()));
            }
        }
        for (i, path) in self.threat_lists.iter().enumerate() {
            if let Err(e) = read_threats(&mut apiwatch_detect::ThreatList::default(), path) {
                v.push(problem(&format!("detect.threat_lists[{i}]"), e));
            }
        }
        for (i, a) in self.allow.iter().enumerate() {
            if let Some(d) = &a.detection {
                if apiwatch_detect::RuleId::by_name(d).is_none() {
                    v.push(problem(&format!("detect.allow[{i}].detection"), format!("{d:?} is not a detection")));
                }
            }
            if let Some(Err(e)) = a.client.as_deref().map(str::parse::<apiwatch_detect::detector::Net>) {
                v.push(problem(&format!("detect.allow[{i}].client"), e));
            }
            if a.detection.is_none() && a.client.is_none() && a.path_prefix.is_none() {
                v.push(problem(&format!("detect.allow[{i}]"), "names nothing: it would allow every finding".into()));
            }
        }
        v
    }

    /// The detector's and inspector's settings, when detections are on (after `problems`).
    pub fn build(&self) -> Option<(apiwatch_detect::DetectorConfig, apiwatch_detect::InspectConfig)> {
        if !self.enabled {
            return None;
        }
        let d = apiwatch_detect::DetectorConfig {
            window_secs: self.window_secs,
            max_open: self.max_open,
            max_clients: self.max_clients,
            disabled: self.disabled.iter().filter_map(|d| apiwatch_detect::RuleId::by_name(d)).collect(),
            allow: self
                .allow
                .iter()
                .map(|a| apiwatch_detect::detector::Allow {
                    rule: a.detection.as_deref().and_then(apiwatch_detect::RuleId::by_name),
                    client: a.client.as_deref().and_then(|c| c.parse().ok()),
                    path_prefix: a.path_prefix.clone(),
                })
                .collect(),
            brute_force_failures: self.brute_force_failures,
            stuffing_users: self.stuffing_users,
            login_window_secs: self.login_window_secs,
            spray_paths: self.spray_paths,
            spray_missing_ratio: self.spray_missing_ratio,
            spray_window_secs: self.spray_window_secs,
            learning_secs: self.learning_secs,
            min_samples: self.min_samples,
            max_endpoints: self.max_endpoints,
            max_principals: self.max_principals,
            spike_ratio: self.spike_ratio,
            endpoint_spike_min: self.endpoint_spike_min,
            client_spike_min: self.client_spike_min,
            size_ratio: self.size_ratio,
            size_min_bytes: self.size_min_bytes,
            latency_ratio: self.latency_ratio,
            latency_min_ms: self.latency_min_ms,
            bola_walk: self.bola_walk,
            bola_unknown_ids: self.bola_unknown_ids,
            enum_values: self.enum_values,
            enum_failure_ratio: self.enum_failure_ratio,
            distributed_enum_values: self.distributed_enum_values,
            distributed_clients: self.distributed_clients,
            exfil_window_secs: self.exfil_window_secs,
            exfil_ratio: self.exfil_ratio,
            exfil_min_bytes: self.exfil_min_bytes,
            exfil_min_records: self.exfil_min_records,
            error_requests: self.error_requests,
            error_ratio: self.error_ratio,
            pipeline_depth: self.pipeline_depth,
            unseen_after_calls: self.unseen_after_calls,
            threats: std::sync::Arc::new({
                let mut all = apiwatch_detect::ThreatList::default();
                for p in &self.threat_lists {
                    let _ = read_threats(&mut all, p); // `problems` reported what fails
                }
                all
            }),
        };
        let i = apiwatch_detect::InspectConfig { max_body_bytes: self.max_body_bytes, ..Default::default() };
        Some((d, i))
    }
}

/// Add one threat-list file's ranges to `list`.
fn read_threats(list: &mut apiwatch_detect::ThreatList, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    list.parse(&path.display().to_string(), &text)
}

/// A custom type: a regular expression, an optional validator, keywords for the field name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomEntry {
    pub name: String,
    pub regex: String,
    #[serde(default)]
    pub validator: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

impl Default for ClassifySection {
    fn default() -> Self {
        let d = apiwatch_inventory::SensitiveConfig::default();
        ClassifySection {
            enabled: true,
            redact: true,
            hash_key: String::new(),
            first: d.first,
            every: d.every,
            max_body_bytes: d.max_body_bytes,
            bytes_per_sec: d.bytes_per_sec,
            max_findings_per_message: d.classifier.max_findings,
            custom: Vec::new(),
        }
    }
}

impl ClassifySection {
    pub fn problems(&self) -> Vec<Problem> {
        let mut v = Vec::new();
        for (key, n) in [
            ("classify.every", self.every as usize),
            ("classify.max_body_bytes", self.max_body_bytes),
            ("classify.bytes_per_sec", self.bytes_per_sec as usize),
            ("classify.max_findings_per_message", self.max_findings_per_message),
        ] {
            if n == 0 {
                v.push(problem(key, "must be at least 1".into()));
            }
        }
        for (i, c) in self.custom.iter().enumerate() {
            if c.name.is_empty() {
                v.push(problem(&format!("classify.custom[{i}].name"), "must not be empty".into()));
            }
            if let Err(e) = regex::Regex::new(&c.regex) {
                v.push(problem(
                    &format!("classify.custom[{i}].regex"),
                    format!("{:?} is not a regular expression: {e}", c.regex),
                ));
            }
            if let Some(Err(e)) = c.validator.as_deref().map(str::parse::<apiwatch_classify::Validator>) {
                v.push(problem(&format!("classify.custom[{i}].validator"), e));
            }
        }
        v
    }

    /// The classifier settings; the hash key from the configuration, else from (or new in)
    /// `state_dir`, else the built-in one (with a warning: such hashes are not secret).
    pub fn build(
        &self,
        state_dir: Option<&Path>,
        redact: bool,
    ) -> anyhow::Result<Option<apiwatch_inventory::SensitiveConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let hash_key = if !self.hash_key.is_empty() {
            self.hash_key.as_bytes().to_vec()
        } else if let Some(dir) = state_dir {
            crate::inventory::hash_key(dir)?
        } else {
            tracing::warn!("no classify.hash_key and no state directory: keyed hashes use the built-in key, anyone can test guesses against them");
            apiwatch_classify::Config::default().hash_key
        };
        self.build_keyed(hash_key, redact).map(Some)
    }

    /// The classifier's settings on a reload: the configured key, or else the key the
    /// running classifier has (read from the state directory at start, perhaps while
    /// privileged). `None` when the classifier is off.
    pub fn rebuild(
        &self,
        running_key: &[u8],
        redact: bool,
    ) -> anyhow::Result<Option<apiwatch_inventory::SensitiveConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let key = if self.hash_key.is_empty() { running_key.to_vec() } else { self.hash_key.as_bytes().to_vec() };
        self.build_keyed(key, redact).map(Some)
    }

    fn build_keyed(&self, hash_key: Vec<u8>, redact: bool) -> anyhow::Result<apiwatch_inventory::SensitiveConfig> {
        let mut custom = Vec::new();
        for c in &self.custom {
            custom.push(apiwatch_classify::CustomType {
                name: c.name.clone(),
                regex: regex::Regex::new(&c.regex).map_err(|e| anyhow::anyhow!("classify.custom {}: {e}", c.name))?,
                validator: c.validator.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
                keywords: c.keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
            });
        }
        Ok(apiwatch_inventory::SensitiveConfig {
            custom_names: self.custom.iter().map(|c| c.name.clone()).collect(),
            classifier: apiwatch_classify::Config {
                hash_key,
                redact: self.redact && redact,
                custom,
                max_findings: self.max_findings_per_message,
            },
            first: self.first,
            every: self.every,
            max_body_bytes: self.max_body_bytes,
            bytes_per_sec: self.bytes_per_sec,
        })
    }
}

/// `[inventory]`: the API inventory (see packaging/apiwatch.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySection {
    pub enabled: bool,
    /// Where the inventory is kept across restarts.
    pub state_dir: PathBuf,
    /// Seconds between saves of the inventory (packet time is not used: this is I/O).
    pub save_interval_secs: u64,
    /// Client networks counted as internal.
    pub internal_networks: Vec<String>,
    /// Proxies whose X-Forwarded-For / Forwarded headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Infer JSON schemas of request and response bodies.
    pub schemas: bool,
    /// Templates fixed by hand: "/users/{id}" for every host, or "host /path" for one.
    pub templates: Vec<String>,
    pub specs: Vec<SpecEntry>,
    /// Declared paths shape the templates of the hosts their spec applies to.
    pub templates_from_specs: bool,
    pub settle_secs: u64,
    pub inactive_days: u64,
    pub max_hosts: usize,
    pub max_endpoints: usize,
    pub max_endpoints_per_host: usize,
    pub max_nodes_per_host: usize,
    pub max_nodes_total: usize,
}

/// One declared API: an OpenAPI 3.x or Swagger 2.0 file and the hosts it describes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecEntry {
    pub file: PathBuf,
    /// Hosts (as in the Host header) it applies to; default: those of its `servers`/`host`.
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl Default for InventorySection {
    fn default() -> Self {
        let d = apiwatch_inventory::InventoryConfig::default();
        InventorySection {
            enabled: true,
            state_dir: PathBuf::from("/var/lib/apiwatch"),
            save_interval_secs: 60,
            internal_networks: apiwatch_inventory::observe::DEFAULT_INTERNAL.iter().map(|s| s.to_string()).collect(),
            trusted_proxies: Vec::new(),
            schemas: true,
            templates: Vec::new(),
            specs: Vec::new(),
            templates_from_specs: true,
            settle_secs: (d.settle_ns / 1_000_000_000) as u64,
            inactive_days: 30,
            max_hosts: d.max_hosts,
            max_endpoints: d.max_endpoints,
            max_endpoints_per_host: d.max_endpoints_per_host,
            max_nodes_per_host: d.max_nodes_per_host,
            max_nodes_total: d.max_nodes_total,
        }
    }
}

impl InventorySection {
    pub fn problems(&self) -> Vec<Problem> {
        let mut v = Vec::new();
        for (key, list) in [
            ("inventory.internal_networks", &self.internal_networks),
            ("inventory.trusted_proxies", &self.trusted_proxies),
        ] {
            for (i, c) in list.iter().enumerate() {
                if let Err(e) = c.parse::<apiwatch_inventory::Cidr>() {
                    v.push(problem(&format!("{key}[{i}]"), e));
                }
            }
        }
        for (i, t) in self.templates.iter().enumerate() {
            let path = t.rsplit(' ').next().unwrap_or("");
            if !path.starts_with('/') {
                v.push(problem(
                    &format!("inventory.templates[{i}]"),
                    format!("{t:?} is not \"/path\" or \"host /path\""),
                ));
            }
        }
        for (i, s) in self.specs.iter().enumerate() {
            if !s.file.is_file() {
                v.push(problem(&format!("inventory.specs[{i}].file"), format!("{} is not a file", s.file.display())));
            }
        }
        for (key, n) in [
            ("inventory.max_hosts", self.max_hosts),
            ("inventory.max_endpoints", self.max_endpoints),
            ("inventory.max_endpoints_per_host", self.max_endpoints_per_host),
            ("inventory.max_nodes_per_host", self.max_nodes_per_host),
            ("inventory.max_nodes_total", self.max_nodes_total),
            ("inventory.save_interval_secs", self.save_interval_secs as usize),
        ] {
            if n == 0 {
                v.push(problem(key, "must be at least 1".into()));
            }
        }
        v
    }

    /// The inventory settings, with the declared specs loaded from disk.
    pub fn build(&self) -> anyhow::Result<(apiwatch_inventory::InventoryConfig, apiwatch_inventory::ObserveConfig)> {
        let cidrs = |l: &[String]| -> anyhow::Result<Vec<apiwatch_inventory::Cidr>> {
            l.iter().map(|c| c.parse().map_err(anyhow::Error::msg)).collect()
        };
        let observe = apiwatch_inventory::ObserveConfig {
            internal: cidrs(&self.internal_networks)?,
            trusted_proxies: cidrs(&self.trusted_proxies)?,
            schemas: self.schemas,
            classify: None,
        };
        let pins = self
            .templates
            .iter()
            .map(|t| match t.trim().split_once(' ') {
                Some((h, p)) => (Some(h.trim().to_ascii_lowercase()), p.trim().to_string()),
                None => (None, t.trim().to_string()),
            })
            .collect();
        let mut specs = Vec::new();
        for s in &self.specs {
            let mut api = load_spec(&s.file)?;
            if !s.hosts.is_empty() {
                api.hosts = s.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
            }
            specs.push(api);
        }
        let cfg = apiwatch_inventory::InventoryConfig {
            max_hosts: self.max_hosts,
            max_endpoints: self.max_endpoints,
            max_endpoints_per_host: self.max_endpoints_per_host,
            max_nodes_per_host: self.max_nodes_per_host,
            max_nodes_total: self.max_nodes_total,
            settle_ns: (self.settle_secs as i64).saturating_mul(1_000_000_000),
            inactive_ns: (self.inactive_days as i64).saturating_mul(86_400_000_000_000),
            pins,
            specs,
            templates_from_specs: self.templates_from_specs,
        };
        Ok((cfg, observe))
    }
}

/// Read an OpenAPI/Swagger document and the files its `$ref`s point to (at most 64 MiB each).
pub fn load_spec(file: &Path) -> anyhow::Result<apiwatch_inventory::spec::DeclaredApi> {
    let mut read = |p: &str| -> Result<String, String> {
        let meta = std::fs::metadata(p).map_err(|e| format!("cannot read {p}: {e}"))?;
        if meta.len() > 64 << 20 {
            return Err(format!("{p} is larger than 64 MiB"));
        }
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))
    };
    let name = file.to_string_lossy();
    apiwatch_inventory::spec::load(&name, &mut read).map_err(|e| anyhow::anyhow!("spec {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Pcap,
    Ebpf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    pub backend: Backend,
    pub interfaces: Vec<String>,
    /// Server ports to watch (TCP). Empty with no `filter`: every TCP port.
    pub ports: Vec<u16>,
    /// A raw BPF filter expression, used instead of the one built from `ports`.
    pub filter: Option<String>,
    pub snaplen: u32,
    pub promiscuous: bool,
    /// Kernel capture buffer per interface, bytes.
    pub buffer_bytes: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            backend: Backend::Pcap,
            interfaces: Vec::new(),
            ports: vec![80, 8080],
            filter: None,
            snaplen: 262_144,
            promiscuous: false,
            buffer_bytes: 64 << 20,
        }
    }
}

impl CaptureConfig {
    /// The BPF filter expression for libpcap.
    pub fn bpf_filter(&self) -> String {
        if let Some(f) = &self.filter {
            return f.clone();
        }
        if self.ports.is_empty() {
            return "tcp".into();
        }
        let ports: Vec<String> = self.ports.iter().map(|p| format!("port {p}")).collect();
        // Fragments carry no ports: keep them so that reassembly can see whole datagrams.
        format!("(tcp and ({})) or (ip[6:2] & 0x3fff != 0)", ports.join(" or "))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub body_sample_bytes: usize,
    pub max_header_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { body_sample_bytes: 64 << 10, max_header_bytes: 64 << 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    pub max_flows: usize,
    pub idle_timeout_secs: u64,
    pub reassembly_flow_bytes: usize,
    pub reassembly_total_bytes: usize,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            max_flows: 200_000,
            idle_timeout_secs: 300,
            reassembly_flow_bytes: 512 << 10,
            reassembly_total_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// NDJSON destination: a file path, or "-" for stdout.
    pub path: String,
    pub redact: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { path: "-".into(), redact: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Where Prometheus metrics and the health endpoint are served: a loopback address.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesConfig {
    /// Run as this user once capture is open (capabilities are dropped with root).
    pub user: Option<String>,
}

/// One problem in a configuration: the key, and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

pub(crate) fn problem(key: &str, message: String) -> Problem {
    Problem { key: key.into(), message }
}

impl Config {
    /// Read and parse `path`. A syntax or type error is one problem naming the key (as far
    /// as TOML says) and the line.
    pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![problem("(file)", format!("cannot read {}: {e}", path.display()))])?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        toml::from_str::<Config>(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let key = key_at(text, e.span().map(|s| s.start));
            let msg = e.message().to_string();
            vec![problem(
                &key,
                match line {
                    Some(l) => format!("{msg} (line {l})"),
                    None => msg,
                },
            )]
        })
    }

    /// Every semantic problem, each with its key and the bad value. `live`: the daemon is
    /// about to capture (interfaces are required).
    pub fn validate(&self, live: bool) -> Vec<Problem> {
        let mut v = Vec::new();
        let c = &self.capture;
        if live && c.interfaces.is_empty() {
            v.push(problem("capture.interfaces", "no interface given: name at least one (e.g. [\"eth0\"])".into()));
        }
        for (i, name) in c.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
                v.push(problem(&format!("capture.interfaces[{i}]"), format!("{name:?} is not a valid interface name")));
            }
        }
        for (i, p) in c.ports.iter().enumerate() {
            if *p == 0 {
                v.push(problem(&format!("capture.ports[{i}]"), "0 is not a port".into()));
            }
        }
        if let (Some(_), Backend::Ebpf) = (&c.filter, c.backend) {
            v.push(problem(
                "capture.filter",
                "a raw BPF filter only applies to the pcap backend; use capture.ports".into(),
            ));
        }
        if let Some(f) = &c.filter {
            if f.trim().is_empty() {
                v.push(problem(
                    "capture.filter",
                    "empty filter expression (leave the key out to filter by ports)".into(),
                ));
            }
        }
        if c.snaplen < 256 {
            v.push(problem(
                "capture.snaplen",
                format!("{} is too small to hold HTTP headers (at least 256)", c.snaplen),
            ));
        }
        if c.buffer_bytes < 1 << 20 {
            v.push(problem("capture.buffer_bytes", format!("{} is below 1 MiB", c.buffer_bytes)));
        }
        if self.http.max_header_bytes < 256 {
            v.push(problem("http.max_header_bytes", format!("{} is below 256", self.http.max_header_bytes)));
        }
        if self.flows.max_flows == 0 {
            v.push(problem("flows.max_flows", "0 flows cannot hold any connection".into()));
        }
        if self.flows.idle_timeout_secs == 0 {
            v.push(problem("flows.idle_timeout_secs", "0 would close every connection at once".into()));
        }
        if self.output.path.is_empty() {
            v.push(problem("output.path", "empty path (use \"-\" for stdout)".into()));
        } else if self.output.path != "-" {
            let parent = Path::new(&self.output.path).parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent {
                if !dir.is_dir() {
                    v.push(problem("output.path", format!("directory {} does not exist", dir.display())));
                }
            }
        }
        if self.metrics.enabled {
            match self.metrics.listen.parse::<SocketAddr>() {
                Err(_) => {
                    v.push(problem("metrics.listen", format!("{:?} is not an address:port", self.metrics.listen)))
                }
                Ok(a) if !a.ip().is_loopback() => v.push(problem(
                    "metrics.listen",
                    format!("{a} is not a loopback address: metrics are served on loopback only"),
                )),
                Ok(_) => {}
            }
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            v.push(problem("log.level", format!("{:?} is not one of error, warn, info, debug, trace", self.log.level)));
        }
        v.extend(self.inventory.problems());
        v.extend(self.classify.problems());
        v.extend(self.detect.problems());
        let mut names = std::collections::BTreeSet::new();
        for (i, o) in self.outputs.iter().enumerate() {
            v.extend(o.problems(i));
            if !names.insert(o.display_name()) {
                v.push(problem(
                    &format!("outputs[{i}].name"),
                    format!("{:?} names another output too: give each a name (it names its spool)", o.display_name()),
                ));
            }
        }
        if let Some(u) = &self.privileges.user {
            if crate::privileges::lookup_user(u).is_none() {
                v.push(problem("privileges.user", format!("no user named {u:?} on this system")));
            }
        }
        v
    }

    /// The pipeline settings this configuration asks for.
    pub fn engine(&self) -> EngineConfig {
        let mut e = EngineConfig::default();
        e.http.body_sample_bytes = self.http.body_sample_bytes;
        e.http.max_header_bytes = self.http.max_header_bytes;
        e.flow.max_flows = self.flows.max_flows;
        e.flow.idle_timeout_ns = (self.flows.idle_timeout_secs as i64).saturating_mul(1_000_000_000);
        e.flow.max_ooo_per_flow = self.flows.reassembly_flow_bytes;
        e.flow.max_ooo_total = self.flows.reassembly_total_bytes;
        e
    }

    pub fn output_path(&self) -> Option<PathBuf> {
        (self.output.path != "-").then(|| PathBuf::from(&self.output.path))
    }
}

/// The dotted key whose value starts at byte `at` of `text` (best effort: the nearest
/// `[table]` header and `key =` before the position).
fn key_at(text: &str, at: Option<usize>) -> String {
    let Some(at) = at else { return "(config)".into() };
    let before = &text[..at.min(text.len())];
    let mut table = String::new();
    let mut key = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            key.clear();
        } else if let Some((k, _)) = t.split_once('=') {
            key = k.trim().to_string();
        }
    }
    // The error may sit on a key itself (an unknown field): take the key of its line.
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if let Some((k, _)) = line.split_once('=') {
        if !line.trim_start().starts_with('[') {
            key = k.trim().to_string();
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, true) => "(config)".into(),
        (true, false) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/apiwatch.toml");
        let c = Config::load(&path).expect("example parses");
        let problems: Vec<_> = c.validate(true).into_iter().filter(|p| p.key != "privileges.user").collect();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.capture.backend, Backend::Pcap);
    }

    #[test]
    fn example_lists_every_detect_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/apiwatch.toml");
        let c = Config::load(&path).expect("example parses");
        let d = DetectSection::default();
        assert_eq!(
            format!("{:?}", c.detect),
            format!("{d:?}"),
            "packaging/apiwatch.toml [detect] differs from the defaults"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let section = &text[text.find("\n[detect]\n").unwrap()..];
        let dbg = format!("{d:?}");
        let fields = dbg
            .trim_start_matches("DetectSection {")
            .split(", ")
            .filter_map(|f| f.split_once(':'))
            .map(|(k, _)| k.trim());
        for key in fields {
            assert!(
                section.contains(&format!("\n{key} = ")) || key == "allow",
                "[detect] {key} is not in packaging/apiwatch.toml"
            );
        }
    }

    #[test]
    fn threat_lists_are_read_and_bad_lines_named() {
        let t = tempfile::tempdir().unwrap();
        let good = t.path().join("tor.txt");
        std::fs::write(&good, "# exits\n185.220.101.1\n185.220.102.0/24\n").unwrap();
        let bad = t.path().join("bad.txt");
        std::fs::write(&bad, "10.0.0.1\n10.0.0.0/33\n").unwrap();
        let cfg = |files: &[&Path]| {
            let list: Vec<String> = files.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
            Config::parse(&format!("[detect]\nthreat_lists = [{}]\n", list.join(", "))).unwrap()
        };
        let c = cfg(&[&good]);
        assert!(c.detect.problems().is_empty());
        let (d, _) = c.detect.build().unwrap();
        assert!(d.threats.contains("185.220.102.77".parse().unwrap()));
        assert!(!d.threats.contains("185.220.103.1".parse().unwrap()));
        let p = cfg(&[&good, &bad, &t.path().join("missing.txt")]).detect.problems();
        let said: Vec<String> = p.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
        assert_eq!(p.len(), 2, "{said:?}");
        assert!(said[0].starts_with("detect.threat_lists[1]") && said[0].contains("line 2"), "{said:?}");
        assert!(said[1].starts_with("detect.threat_lists[2]") && said[1].contains("missing.txt"), "{said:?}");
    }

    #[test]
    fn example_outputs_parse_and_are_checked() {
        // The commented [[outputs]] example, uncommented: every key is real, and the
        // problems found are only the files that do not exist here.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/apiwatch.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("# [[outputs]]").expect("the example is there");
        let block: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&block).unwrap_or_else(|e| panic!("{e:?}\n{block}"));
        assert_eq!(c.outputs.len(), 1);
        let keys: Vec<String> = c.validate(false).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["outputs[0].ca_file", "outputs[0].client_cert", "outputs[0].client_key"]);
        // And what a bad one says.
        let bad = Config::parse(
            "[[outputs]]\ntype = \"kafka\"\nurl = \"http://x\"\nkinds = [\"flows\"]\nbatch_records = 0\n",
        )
        .unwrap();
        let keys: Vec<String> = bad.validate(false).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["outputs[0].type", "outputs[0].url", "outputs[0].kinds", "outputs[0].batch_records"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[capture]\ninterfaces = [\"eth0\"]\nprots = [80]\n").unwrap_err();
        assert_eq!(e[0].key, "capture.prots");
        assert!(e[0].message.contains("unknown field") && e[0].message.contains("line 3"), "{}", e[0]);
    }

    #[test]
    fn wrong_types_are_named() {
        let e = Config::parse("[capture]\nports = [\"http\"]\n").unwrap_err();
        assert_eq!(e[0].key, "capture.ports");
        let e = Config::parse("[capture]\nbackend = \"afpacket\"\n").unwrap_err();
        assert_eq!(e[0].key, "capture.backend");
        assert!(e[0].message.contains("pcap") && e[0].message.contains("ebpf"), "{}", e[0]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = Config::parse(
            "[capture]\ninterfaces = [\"bad name\"]\nports = [0]\nsnaplen = 10\n[metrics]\nlisten = \"0.0.0.0:9464\"\n[log]\nlevel = \"loud\"\n",
        )
        .unwrap();
        let keys: Vec<String> = c.validate(true).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["capture.interfaces[0]", "capture.ports[0]", "capture.snaplen", "metrics.listen", "log.level"]
        );
    }

    #[test]
    fn classifier_problems_are_named() {
        let c = Config::parse(
            "[capture]\ninterfaces = [\"eth0\"]\n[classify]\nevery = 0\n[[classify.custom]]\nname = \"emp\"\nregex = \"(\"\nvalidator = \"crc\"\n",
        )
        .unwrap();
        let keys: Vec<String> = c.validate(false).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["classify.every", "classify.custom[0].regex", "classify.custom[0].validator"]);
        let ok = Config::parse("[[classify.custom]]\nname = \"emp\"\nregex = '\\bEMP-\\d{6}\\b'\nvalidator = \"luhn\"\nkeywords = [\"Employee\"]\n").unwrap();
        let s = ok.classify.build(None, true).unwrap().unwrap();
        assert_eq!(s.custom_names, ["emp"]);
        assert_eq!(s.classifier.custom[0].keywords, ["employee"]);
    }

    #[test]
    fn filter_from_ports() {
        let c = CaptureConfig { ports: vec![80, 8080], ..CaptureConfig::default() };
        assert_eq!(c.bpf_filter(), "(tcp and (port 80 or port 8080)) or (ip[6:2] & 0x3fff != 0)");
        let c = CaptureConfig { ports: vec![], ..CaptureConfig::default() };
        assert_eq!(c.bpf_filter(), "tcp");
    }
}
