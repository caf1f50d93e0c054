//! The sink's store: SQLite (WAL) by default, or PostgreSQL for fleets whose receivers run
//! side by side behind a load balancer. One row per record, unique by (agent, stream, seq)
//! so that a batch delivered twice, to one receiver or to two, is stored once. (A rowid table with a unique index: records
//! are around a kilobyte, too large for a WITHOUT ROWID table to pay.) Schema versions are applied in order at
//! opening (`PRAGMA user_version`).

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Schema migrations, in order; `user_version` says how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: agents and records.
    "CREATE TABLE agents (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         fingerprint TEXT NOT NULL,
         first_seen INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         records INTEGER NOT NULL DEFAULT 0,
         duplicates INTEGER NOT NULL DEFAULT 0,
         last_addr TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE records (
         id INTEGER PRIMARY KEY,
         agent INTEGER NOT NULL REFERENCES agents (id),
         stream INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         kind TEXT NOT NULL,
         ts TEXT,
         received INTEGER NOT NULL,
         body TEXT NOT NULL,
         UNIQUE (agent, stream, seq)
     );
     CREATE INDEX records_kind ON records (kind);",
];

/// The store a sink writes to.
pub enum Store {
    Sqlite(Sqlite),
    Postgres(Pg),
}

pub struct Sqlite {
    db: Connection,
}

impl Store {
    /// SQLite in `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::Sqlite(Sqlite::open(path)?))
    }

    /// PostgreSQL at `url` (a libpq connection string or URL).
    pub fn open_postgres(url: &str) -> Result<Store> {
        Ok(Store::Postgres(Pg::open(url)?))
    }

    pub fn ingest(
        &mut self,
        from: &Sender,
        stream: u64,
        first_seq: u64,
        records: &[Record],
        now: i64,
    ) -> Result<(u64, u64)> {
        match self {
            Store::Sqlite(s) => s.ingest(from, stream, first_seq, records, now),
            Store::Postgres(p) => p.ingest(from, stream, first_seq, records, now),
        }
    }

    pub fn expire(&mut self, before: i64) -> Result<u64> {
        match self {
            Store::Sqlite(s) => s.expire(before),
            Store::Postgres(p) => p.expire(before),
        }
    }

    pub fn agents(&mut self) -> Result<Vec<serde_json::Value>> {
        match self {
            Store::Sqlite(s) => s.agents(),
            Store::Postgres(p) => p.agents(),
        }
    }

    pub fn records(
        &mut self,
        kinds: &[&str],
        agent: Option<&str>,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        match self {
            Store::Sqlite(s) => s.records(kinds, agent, since, limit),
            Store::Postgres(p) => p.records(kinds, agent, since, limit),
        }
    }

    pub fn count(&mut self, agent: Option<&str>) -> Result<u64> {
        match self {
            Store::Sqlite(s) => s.count(agent),
            Store::Postgres(p) => p.count(agent),
        }
    }
}

/// One record of a batch: its kind, its time (if it has one) and its JSON text.
pub struct Record<'a> {
    pub kind: &'a str,
    pub ts: Option<&'a str>,
    pub body: &'a str,
}

/// Who sent a batch.
pub struct Sender<'a> {
    pub agent: &'a str,
    pub fingerprint: &'a str,
    pub addr: &'a str,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let db = Connection::open(path).with_context(|| format!("cannot open the database {}", path.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "cache_size", -65536)?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "{}: schema version {version} is newer than this apiwatch knows ({}): upgrade apiwatch",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = db.unchecked_transaction()?;
            tx.execute_batch(m).with_context(|| format!("{}: migration {}", path.display(), i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Sqlite { db })
    }

    /// Store a batch; returns (stored, duplicates). One transaction: all or nothing.
    pub fn ingest(
        &mut self,
        from: &Sender,
        stream: u64,
        first_seq: u64,
        records: &[Record],
        now: i64,
    ) -> Result<(u64, u64)> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO agents (name, fingerprint, first_seen, last_seen, last_addr) VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET fingerprint = ?2, last_seen = ?3, last_addr = ?4",
            params![from.agent, from.fingerprint, now, from.addr],
        )?;
        let agent: i64 = tx.query_row("SELECT id FROM agents WHERE name = ?1", params![from.agent], |r| r.get(0))?;
        let mut stored = 0;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO records (agent, stream, seq, kind, ts, received, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (i, r) in records.iter().enumerate() {
                stored += ins.execute(params![
                    agent,
                    stream as i64,
                    (first_seq + i as u64) as i64,
                    r.kind,
                    r.ts,
                    now,
                    r.body
                ])? as u64;
            }
        }
        let dups = records.len() as u64 - stored;
        tx.execute(
            "UPDATE agents SET records = records + ?2, duplicates = duplicates + ?3 WHERE id = ?1",
            params![agent, stored as i64, dups as i64],
        )?;
        tx.commit()?;
        Ok((stored, dups))
    }

    /// Records received before `before` (unix seconds) are deleted; returns how many.
    pub fn expire(&mut self, before: i64) -> Result<u64> {
        // Rows are stored in the order received: the first one young enough bounds the
        // deletion, found from the oldest end without an index on `received`.
        let keep: Option<i64> = self
            .db
            .query_row("SELECT id FROM records WHERE received >= ?1 ORDER BY id LIMIT 1", params![before], |r| r.get(0))
            .optional()?;
        Ok(match keep {
            Some(id) => self.db.execute("DELETE FROM records WHERE id < ?1", params![id])?,
            None => self.db.execute("DELETE FROM records", [])?,
        } as u64)
    }

    pub fn agents(&self) -> Result<Vec<serde_json::Value>> {
        let mut q = self.db.prepare(
            "SELECT name, fingerprint, first_seen, last_seen, records, duplicates, last_addr FROM agents ORDER BY name",
        )?;
        let rows = q.query_map([], |r| {
            Ok(serde_json::json!({
                "agent": r.get::<_, String>(0)?,
                "fingerprint": r.get::<_, String>(1)?,
                "first_seen": r.get::<_, i64>(2)?,
                "last_seen": r.get::<_, i64>(3)?,
                "records": r.get::<_, i64>(4)?,
                "duplicates": r.get::<_, i64>(5)?,
                "last_addr": r.get::<_, String>(6)?,
            }))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records of the given kinds (all if empty), of one agent (if given), newest last.
    pub fn records(
        &self,
        kinds: &[&str],
        agent: Option<&str>,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let mut sql = String::from("SELECT a.name, r.body FROM records r JOIN agents a ON a.id = r.agent WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if !kinds.is_empty() {
            sql.push_str(&format!(" AND r.kind IN ({})", vec!["?"; kinds.len()].join(", ")));
            args.extend(kinds.iter().map(|k| rusqlite::types::Value::Text(k.to_string())));
        }
        if let Some(a) = agent {
            sql.push_str(" AND a.name = ?");
            args.push(rusqlite::types::Value::Text(a.to_string()));
        }
        if let Some(s) = since {
            sql.push_str(" AND r.received >= ?");
            args.push(rusqlite::types::Value::Integer(s));
        }
        sql.push_str(" ORDER BY r.id LIMIT ?");
        args.push(rusqlite::types::Value::Integer(limit.min(i64::MAX as usize) as i64));
        let mut q = self.db.prepare(&sql)?;
        let rows = q.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (records, distinct (agent, stream, seq)) per agent: equal unless something is wrong.
    pub fn count(&self, agent: Option<&str>) -> Result<u64> {
        let n: i64 = match agent {
            Some(a) => self.db.query_row(
                "SELECT COUNT(*) FROM records r JOIN agents a ON a.id = r.agent WHERE a.name = ?1",
                params![a],
                |r| r.get(0),
            )?,
            None => self.db.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?,
        };
        Ok(n as u64)
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.db.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// The PostgreSQL schema, in order (`apiwatch_schema` says how many are applied; receivers
/// starting together take an advisory lock to apply them once).
const PG_MIGRATIONS: &[&str] = &["CREATE TABLE agents (
         id BIGSERIAL PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         fingerprint TEXT NOT NULL,
         first_seen BIGINT NOT NULL,
         last_seen BIGINT NOT NULL,
         records BIGINT NOT NULL DEFAULT 0,
         duplicates BIGINT NOT NULL DEFAULT 0,
         last_addr TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE records (
         id BIGSERIAL PRIMARY KEY,
         agent BIGINT NOT NULL REFERENCES agents (id),
         stream BIGINT NOT NULL,
         seq BIGINT NOT NULL,
         kind TEXT NOT NULL,
         ts TEXT,
         received BIGINT NOT NULL,
         body TEXT NOT NULL,
         UNIQUE (agent, stream, seq)
     );
     CREATE INDEX records_kind ON records (kind);"];

pub struct Pg {
    db: postgres::Client,
}

impl Pg {
    pub fn open(url: &str) -> Result<Pg> {
        let mut db = postgres::Client::connect(url, postgres::NoTls)
            .with_context(|| format!("cannot connect to PostgreSQL ({url})"))?;
        let mut tx = db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(7314159265)", &[])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS apiwatch_schema (version INTEGER NOT NULL)")?;
        let version: i32 = match tx.query_opt("SELECT version FROM apiwatch_schema", &[])? {
            Some(r) => r.get(0),
            None => {
                tx.execute("INSERT INTO apiwatch_schema VALUES (0)", &[])?;
                0
            }
        };
        if version as usize > PG_MIGRATIONS.len() {
            anyhow::bail!(
                "PostgreSQL schema version {version} is newer than this apiwatch knows ({}): upgrade apiwatch",
                PG_MIGRATIONS.len()
            );
        }
        for (i, m) in PG_MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(m).with_context(|| format!("PostgreSQL migration {}", i + 1))?;
            tx.execute("UPDATE apiwatch_schema SET version = $1", &[&((i + 1) as i32)])?;
        }
        tx.commit()?;
        Ok(Pg { db })
    }

    fn ingest(
        &mut self,
        from: &Sender,
        stream: u64,
        first_seq: u64,
        records: &[Record],
        now: i64,
    ) -> Result<(u64, u64)> {
        let mut tx = self.db.transaction()?;
        let agent: i64 = tx
            .query_one(
                "INSERT INTO agents (name, fingerprint, first_seen, last_seen, last_addr) VALUES ($1, $2, $3, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET fingerprint = $2, last_seen = $3, last_addr = $4 RETURNING id",
                &[&from.agent, &from.fingerprint, &now, &from.addr],
            )?
            .get(0);
        let seqs: Vec<i64> = (0..records.len()).map(|i| (first_seq + i as u64) as i64).collect();
        let kinds: Vec<&str> = records.iter().map(|r| r.kind).collect();
        let ts: Vec<Option<&str>> = records.iter().map(|r| r.ts).collect();
        let bodies: Vec<&str> = records.iter().map(|r| r.body).collect();
        // One statement for the batch; a conflict (a record already stored, by this receiver
        // or another) stores nothing and counts as a duplicate.
        let stored = tx.execute(
            "INSERT INTO records (agent, stream, seq, kind, ts, received, body)
             SELECT $1, $2, u.seq, u.kind, u.ts, $3, u.body
             FROM UNNEST($4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[]) AS u (seq, kind, ts, body)
             ON CONFLICT (agent, stream, seq) DO NOTHING",
            &[&agent, &(stream as i64), &now, &seqs, &kinds, &ts, &bodies],
        )?;
        let dups = records.len() as u64 - stored;
        tx.execute(
            "UPDATE agents SET records = records + $2, duplicates = duplicates + $3 WHERE id = $1",
            &[&agent, &(stored as i64), &(dups as i64)],
        )?;
        tx.commit()?;
        Ok((stored, dups))
    }

    fn expire(&mut self, before: i64) -> Result<u64> {
        Ok(self.db.execute("DELETE FROM records WHERE received < $1", &[&before])?)
    }

    fn agents(&mut self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .db
            .query("SELECT name, fingerprint, first_seen, last_seen, records, duplicates, last_addr FROM agents ORDER BY name", &[])?
            .iter()
            .map(|r| {
                serde_json::json!({
                    "agent": r.get::<_, String>(0),
                    "fingerprint": r.get::<_, String>(1),
                    "first_seen": r.get::<_, i64>(2),
                    "last_seen": r.get::<_, i64>(3),
                    "records": r.get::<_, i64>(4),
                    "duplicates": r.get::<_, i64>(5),
                    "last_addr": r.get::<_, String>(6),
                })
            })
            .collect())
    }

    fn records(
        &mut self,
        kinds: &[&str],
        agent: Option<&str>,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let rows = self.db.query(
            "SELECT a.name, r.body FROM records r JOIN agents a ON a.id = r.agent
             WHERE (cardinality($1::TEXT[]) = 0 OR r.kind = ANY ($1)) AND ($2::TEXT IS NULL OR a.name = $2)
               AND ($3::BIGINT IS NULL OR r.received >= $3)
             ORDER BY r.id LIMIT $4",
            &[&kinds, &agent, &since, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn count(&mut self, agent: Option<&str>) -> Result<u64> {
        let n: i64 = self
            .db
            .query_one(
                "SELECT COUNT(*) FROM records r JOIN agents a ON a.id = r.agent WHERE $1::TEXT IS NULL OR a.name = $1",
                &[&agent],
            )?
            .get(0);
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_stored_once_and_migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut s = Store::open(&path).unwrap();
        let from = Sender { agent: "a1", fingerprint: "ff", addr: "127.0.0.1:1" };
        let recs: Vec<Record> =
            (0..5).map(|_| Record { kind: "inventory", ts: Some("t"), body: "{\"kind\":\"inventory\"}" }).collect();
        assert_eq!(s.ingest(&from, 7, 0, &recs, 100).unwrap(), (5, 0));
        // The same batch again, and one overlapping it.
        assert_eq!(s.ingest(&from, 7, 0, &recs, 101).unwrap(), (0, 5));
        assert_eq!(s.ingest(&from, 7, 3, &recs, 102).unwrap(), (3, 2));
        // Another stream of the same agent is other records.
        assert_eq!(s.ingest(&from, 8, 0, &recs[..1], 103).unwrap(), (1, 0));
        assert_eq!(s.count(Some("a1")).unwrap(), 9);
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let Store::Sqlite(ref q) = s else { unreachable!() };
        assert_eq!(q.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let a = s.agents().unwrap();
        assert_eq!((a[0]["records"].as_i64(), a[0]["duplicates"].as_i64()), (Some(9), Some(7)));
        assert_eq!(s.records(&["inventory"], Some("a1"), None, 100).unwrap().len(), 9);
        assert!(s.records(&["detection"], None, None, 100).unwrap().is_empty());
    }

    #[test]
    fn retention_deletes_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let from = Sender { agent: "a", fingerprint: "f", addr: "x" };
        let r = [Record { kind: "inventory", ts: None, body: "{}" }];
        s.ingest(&from, 1, 0, &r, 100).unwrap();
        s.ingest(&from, 1, 1, &r, 200).unwrap();
        assert_eq!(s.expire(150).unwrap(), 1);
        assert_eq!(s.count(None).unwrap(), 1);
    }
}
