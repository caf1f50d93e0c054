//! The inventory stage of the agent: feeds observations to the inventory in record order,
//! writes its events as `inventory` records, and keeps it in an embedded store (redb) under
//! the state directory.
//!
//! Why redb: the inventory is a set of per-host documents (templater trie + endpoint facts)
//! that change together and must survive crashes. redb gives crash-safe transactions over
//! one file in pure Rust (no C library, no server), copy-on-write so a crash mid-save keeps
//! the last committed state, and incremental writes (only hosts that changed). The store is
//! bounded because what it holds is: hosts, trie nodes and endpoints are capped.

use crate::output::NdjsonOutput;
use anyhow::{bail, Context, Result};
use apiwatch_inventory::inventory::Host;
use apiwatch_inventory::{Inventory, InventoryConfig, InventoryEvent, Observation, ObserveConfig};
use apiwatch_model::format_rfc3339_micros;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Bump when the stored form changes incompatibly.
const STORE_VERSION: &str = "1";
pub const STORE_FILE: &str = "inventory.redb";

/// The inventory store in a state directory. Opened only while loading or saving, so that
/// `apiwatch inventory show` can read it while the daemon runs.
pub struct Store {
    path: PathBuf,
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("inventory store {}: {e}", path.display())
}

impl Store {
    pub fn new(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
        Ok(Store { path: dir.join(STORE_FILE) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load every stored host into `inv`. A missing store is an empty one.
    pub fn load(&self, inv: &mut Inventory) -> Result<usize> {
        if !self.path.exists() {
            return Ok(0);
        }
        let db = open_read(&self.path)?;
        let p = &self.path;
        let rt = db.begin_read().map_err(|e| db_err(p, e))?;
        if let Ok(meta) = rt.open_table(META) {
            let v = meta.get("version").map_err(|e| db_err(p, e))?;
            let version = v.as_ref().map(|v| String::from_utf8_lossy(v.value()).to_string());
            if version.as_deref().is_some_and(|v| v != STORE_VERSION) {
                bail!("inventory store {} has version {:?}; this apiwatch reads {STORE_VERSION}", p.display(), version);
            }
            if let Some(c) = meta.get("counters").map_err(|e| db_err(p, e))? {
                if let Ok(c) = serde_json::from_slice(c.value()) {
                    inv.counters = c;
                }
            }
        }
        let Ok(table) = rt.open_table(HOSTS) else { return Ok(0) };
        let mut n = 0;
        for row in table.iter().map_err(|e| db_err(p, e))? {
            let (k, v) = row.map_err(|e| db_err(p, e))?;
            if inv.hosts.len() >= inv.cfg.max_hosts {
                inv.counters.hosts_dropped_cap += 1;
                continue;
            }
            let host: Host = serde_json::from_slice(v.value())
                .with_context(|| format!("inventory store {}: host {} is unreadable", p.display(), k.value()))?;
            inv.restore(k.value(), host);
            n += 1;
        }
        Ok(n)
    }

    /// Write the hosts that changed since the last save, in one transaction.
    pub fn save(&self, inv: &mut Inventory) -> Result<usize> {
        let p = &self.path;
        let counters = serde_json::to_vec(&inv.counters)?;
        let dirty = inv.take_dirty();
        let db = redb::Database::create(p).map_err(|e| db_err(p, e))?;
        let wt = db.begin_write().map_err(|e| db_err(p, e))?;
        {
            let mut meta = wt.open_table(META).map_err(|e| db_err(p, e))?;
            meta.insert("version", STORE_VERSION.as_bytes()).map_err(|e| db_err(p, e))?;
            meta.insert("counters", counters.as_slice()).map_err(|e| db_err(p, e))?;
            let mut hosts = wt.open_table(HOSTS).map_err(|e| db_err(p, e))?;
            for (name, h) in &dirty {
                let bytes = serde_json::to_vec(h)?;
                hosts.insert(*name, bytes.as_slice()).map_err(|e| db_err(p, e))?;
            }
        }
        wt.commit().map_err(|e| db_err(p, e))?;
        Ok(dirty.len())
    }
}

/// Open for reading, waiting a little if a writer holds the file.
fn open_read(path: &Path) -> Result<redb::ReadOnlyDatabase> {
    let mut last = None;
    for _ in 0..50 {
        match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                last = Some("in use by another process");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(db_err(path, e)),
        }
    }
    Err(db_err(path, last.unwrap_or("cannot open")))
}

/// The keyed-hash key kept in the state directory: read, or made (32 random bytes, mode
/// 0600) the first time, so that hashes stay comparable across restarts.
pub fn hash_key(dir: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("hash.key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 16 {
            return Ok(k);
        }
        bail!("{}: a hash key must have at least 16 bytes", path.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).context("reading /dev/urandom")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// Read a stored inventory (for `apiwatch inventory show|export`).
pub fn read_state(dir: &Path, cfg: InventoryConfig) -> Result<Inventory> {
    let store = Store { path: dir.join(STORE_FILE) };
    if !store.path.exists() {
        bail!("no inventory in {} (expected {})", dir.display(), store.path.display());
    }
    let mut inv = Inventory::new(cfg);
    store.load(&mut inv)?;
    Ok(inv)
}

/// The inventory as a pipeline stage: after the transaction records it observed, writes
/// the events they caused.
pub struct InventoryStage {
    pub inv: Inventory,
    pub observe: ObserveConfig,
    store: Option<Store>,
    events: Vec<InventoryEvent>,
    line: Vec<u8>,
}

impl InventoryStage {
    pub fn new(
        cfg: InventoryConfig,
        mut observe: ObserveConfig,
        sensitive: Option<apiwatch_inventory::SensitiveConfig>,
        state: Option<&Path>,
    ) -> Result<InventoryStage> {
        let mut inv = Inventory::new(cfg);
        observe.classify = sensitive
            .as_ref()
            .map(|s| std::cell::RefCell::new(apiwatch_inventory::sensitive::MaterialGate::new(s.first, s.every)));
        inv.sensitive = sensitive.map(apiwatch_inventory::Sensitive::new);
        let store = match state {
            Some(dir) => {
                let s = Store::new(dir)?;
                s.load(&mut inv)?;
                Some(s)
            }
            None => None,
        };
        Ok(InventoryStage { inv, observe, store, events: Vec::new(), line: Vec::new() })
    }

    pub fn observe(&mut self, o: &Observation, out: &mut NdjsonOutput) -> Result<()> {
        self.inv.observe(o, &mut self.events);
        self.write_events(out)
    }

    pub fn tick(&mut self, now: i64, out: &mut NdjsonOutput) -> Result<()> {
        self.inv.tick(now, &mut self.events);
        self.write_events(out)
    }

    /// End of input: report what is left, and save.
    pub fn finish(&mut self, out: &mut NdjsonOutput) -> Result<()> {
        self.inv.finish(&mut self.events);
        self.write_events(out)?;
        self.save()
    }

    pub fn save(&mut self) -> Result<()> {
        if let Some(s) = &self.store {
            s.save(&mut self.inv)?;
        }
        Ok(())
    }

    fn write_events(&mut self, out: &mut NdjsonOutput) -> Result<()> {
        for e in self.events.drain(..) {
            self.line.clear();
            render_event(&e, &mut self.line);
            out.raw(&self.line, 1)?;
        }
        Ok(())
    }
}

/// `{"kind":"inventory","schema_version":1,"ts":...,"event":"new_endpoint",...}`: fields in
/// this order, like transaction records (kind first).
pub fn render_event(e: &InventoryEvent, out: &mut Vec<u8>) {
    if let Some(x) = &e.exposure {
        return render_exposure(e, x, out);
    }
    #[derive(serde::Serialize)]
    struct Record<'a> {
        kind: &'static str,
        schema_version: u32,
        ts: String,
        event: &'static str,
        host: &'a str,
        method: &'a str,
        template: &'a str,
        confidence: f64,
        first_seen: String,
        calls: u64,
        auth: &'a [String],
        external: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        posture: Option<&'a apiwatch_inventory::inventory::Posture>,
    }
    let r = Record {
        kind: "inventory",
        schema_version: apiwatch_model::SCHEMA_VERSION,
        ts: format_rfc3339_micros(e.ts),
        event: e.event,
        host: &e.host,
        method: &e.method,
        template: &e.template,
        confidence: e.confidence,
        first_seen: format_rfc3339_micros(e.first_seen),
        calls: e.calls,
        auth: &e.auth,
        external: e.external,
        posture: (e.posture.standing != apiwatch_inventory::inventory::Standing::Unknown).then_some(&e.posture),
    };
    let _ = serde_json::to_writer(&mut *out, &r);
    out.push(b'\n');
}

/// `{"kind":"sensitive_data",...}`: an endpoint carried a type at a place for the first
/// time (`new_exposure`), or for the first time with an external client
/// (`external_exposure`). Values appear masked and as keyed hashes only.
fn render_exposure(e: &InventoryEvent, x: &apiwatch_inventory::inventory::ExposureEvent, out: &mut Vec<u8>) {
    #[derive(serde::Serialize)]
    struct Record<'a> {
        kind: &'static str,
        schema_version: u32,
        ts: String,
        event: &'static str,
        host: &'a str,
        method: &'a str,
        template: &'a str,
        #[serde(rename = "type")]
        ty: &'a str,
        location: &'static str,
        field: &'a str,
        status_class: &'static str,
        confidence: u8,
        masked: &'a str,
        hash: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
        external: bool,
    }
    let r = Record {
        kind: "sensitive_data",
        schema_version: apiwatch_model::SCHEMA_VERSION,
        ts: format_rfc3339_micros(e.ts),
        event: e.event,
        host: &e.host,
        method: &e.method,
        template: &e.template,
        ty: &x.ty,
        location: x.location,
        field: &x.field,
        status_class: x.status_class,
        confidence: x.confidence,
        masked: &x.masked,
        hash: &x.hash,
        detail: x.detail.as_deref(),
        external: e.external,
    };
    let _ = serde_json::to_writer(&mut *out, &r);
    out.push(b'\n');
}
