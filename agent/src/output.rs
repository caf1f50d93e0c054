//! Outputs: NDJSON to stdout or a file, and the remote outputs (`remote.rs`), which are
//! offered every record written here and keep the kinds they take.

use anyhow::{Context, Result};
use apiwatch_model::{RenderOptions, Transaction};
use std::io::Write;
use std::path::Path;

/// Newline-delimited JSON records. Records are rendered straight into one buffer that is
/// written out when it passes 1 MiB: no per-record copy.
pub struct NdjsonOutput {
    w: Box<dyn Write + Send>,
    buf: Vec<u8>,
    opts: RenderOptions,
    pub records: u64,
    /// The reader went away (broken pipe): stop writing, quietly.
    pub closed: bool,
    pub remotes: Vec<crate::remote::Remote>,
    pub files: Vec<RotatingFile>,
}

const FLUSH_AT: usize = 1 << 20;

impl NdjsonOutput {
    pub fn new(path: Option<&Path>, opts: RenderOptions) -> Result<Self> {
        let w: Box<dyn Write + Send> = match path {
            None => Box::new(std::io::stdout()),
            Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("cannot create output file {}", p.display()))?,
            ),
        };
        Ok(NdjsonOutput {
            w,
            buf: Vec::with_capacity(FLUSH_AT + (64 << 10)),
            opts,
            records: 0,
            closed: false,
            remotes: Vec::new(),
            files: Vec::new(),
        })
    }

    /// Render a transaction as one line (appended to `line`).
    pub fn render(opts: &RenderOptions, tx: &Transaction, line: &mut Vec<u8>) {
        tx.render(opts, line);
        line.push(b'\n');
    }

    pub fn transaction(&mut self, tx: &Transaction) -> Result<()> {
        if self.closed && self.remotes.is_empty() {
            return Ok(());
        }
        let start = self.buf.len();
        Self::render(&self.opts, tx, &mut self.buf);
        for r in &mut self.remotes {
            r.offer(&self.buf[start..])?;
        }
        for f in &mut self.files {
            f.offer(&self.buf[start..])?;
        }
        if self.closed {
            self.buf.truncate(start);
            return Ok(());
        }
        self.records += 1;
        self.maybe_write()
    }

    /// Write `records` pre-rendered lines.
    pub fn raw(&mut self, bytes: &[u8], records: u64) -> Result<()> {
        for r in &mut self.remotes {
            r.offer(bytes)?;
        }
        for f in &mut self.files {
            f.offer(bytes)?;
        }
        if self.closed {
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        self.records += records;
        self.maybe_write()
    }

    /// Let the remote outputs seal batches that are old enough.
    pub fn tick(&mut self) -> Result<()> {
        for r in &mut self.remotes {
            r.tick()?;
        }
        Ok(())
    }

    /// Seal and deliver what the remote outputs hold, waiting up to `drain` for the sinks;
    /// what is not delivered by then stays spooled for the next start.
    pub fn finish_remotes(&mut self, drain: std::time::Duration) -> Result<Vec<crate::remote::RemoteReport>> {
        let deadline = std::time::Instant::now() + drain;
        let mut reports = Vec::new();
        for r in self.remotes.drain(..) {
            reports.push(r.finish(deadline.saturating_duration_since(std::time::Instant::now()))?);
        }
        Ok(reports)
    }

    fn maybe_write(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.write_buf()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> Result<()> {
        let r = self.w.write_all(&self.buf);
        self.buf.clear();
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.context("writing output"),
        }
    }

    /// Start the `[[outputs]]` of a configuration: files here, the rest remote.
    pub fn add_outputs(&mut self, outputs: &[crate::remote::RemoteConfig], state_dir: Option<&Path>) -> Result<()> {
        for o in outputs {
            if o.kind == "file" {
                self.files.push(RotatingFile::open(o)?);
            } else {
                self.remotes.push(crate::remote::Remote::start(o, state_dir)?);
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        for f in &mut self.files {
            f.flush()?;
        }
        if !self.closed {
            self.write_buf()?;
        }
        match self.w.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.context("flushing output"),
        }
    }
}

/// A `file` output: NDJSON (or OCSF or CEF lines) of the kinds it takes, rotated by size:
/// at `max_mb` the file becomes `path.1` (`path.1` becomes `path.2`, ... the oldest beyond
/// `keep` is deleted) and a new one starts.
pub struct RotatingFile {
    path: std::path::PathBuf,
    max: u64,
    keep: u32,
    kinds: Vec<String>,
    format: String,
    w: std::io::BufWriter<std::fs::File>,
    size: u64,
    pub records: u64,
    pub rotations: u64,
}

impl RotatingFile {
    pub fn open(cfg: &crate::remote::RemoteConfig) -> Result<RotatingFile> {
        let path = cfg.path.clone().context("a file output needs a path")?;
        let (w, size) = Self::append(&path)?;
        Ok(RotatingFile {
            kinds: cfg.kinds.clone().unwrap_or_else(|| crate::remote::KINDS.iter().map(|k| k.to_string()).collect()),
            format: cfg.format().to_string(),
            path,
            max: cfg.max_mb << 20,
            keep: cfg.keep,
            w,
            size,
            records: 0,
            rotations: 0,
        })
    }

    fn append(path: &Path) -> Result<(std::io::BufWriter<std::fs::File>, u64)> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open output file {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((std::io::BufWriter::with_capacity(256 << 10, f), size))
    }

    pub fn offer(&mut self, lines: &[u8]) -> Result<()> {
        for line in lines.split_inclusive(|&c| c == b'\n') {
            let kind = crate::remote::record_kind(line);
            if !self.kinds.iter().any(|k| k.as_bytes() == kind) {
                continue;
            }
            let out: std::borrow::Cow<[u8]> = match self.format.as_str() {
                "ocsf" => match crate::ocsf::convert(line) {
                    Some(v) => v.into(),
                    None => continue,
                },
                "cef" => match crate::cef::convert(line) {
                    Some((c, _)) => format!("{c}\n").into_bytes().into(),
                    None => continue,
                },
                _ => line.into(),
            };
            if self.size > 0 && self.size + out.len() as u64 > self.max {
                self.rotate()?;
            }
            self.w.write_all(&out).with_context(|| format!("writing {}", self.path.display()))?;
            self.size += out.len() as u64;
            self.records += 1;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.w.flush()?;
        let name = |k: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{k}"));
            std::path::PathBuf::from(p)
        };
        let _ = std::fs::remove_file(name(self.keep));
        for k in (1..self.keep).rev() {
            let _ = std::fs::rename(name(k), name(k + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, name(1)).with_context(|| format!("rotating {}", self.path.display()))?;
        } else {
            std::fs::remove_file(&self.path).with_context(|| format!("rotating {}", self.path.display()))?;
        }
        let (w, size) = Self::append(&self.path)?;
        self.w = w;
        self.size = size;
        self.rotations += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.w.flush().with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let cfg: crate::remote::RemoteConfig = toml::from_str(&format!(
            "type = \"file\"\npath = {:?}\nmax_mb = 1\nkeep = 2\nkinds = [\"inventory\"]\n",
            path
        ))
        .unwrap();
        let mut f = RotatingFile::open(&cfg).unwrap();
        let rec = format!("{{\"kind\":\"inventory\",\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let other = "{\"kind\":\"transaction\"}\n";
        for _ in 0..5000 {
            f.offer(rec.as_bytes()).unwrap();
            f.offer(other.as_bytes()).unwrap();
        }
        f.flush().unwrap();
        assert_eq!(f.records, 5000);
        assert_eq!(f.rotations, 4);
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        for k in ["f.jsonl", "f.jsonl.1", "f.jsonl.2"] {
            assert!(size(&dir.path().join(k)) <= 1 << 20, "{k}");
            let text = std::fs::read_to_string(dir.path().join(k)).unwrap();
            assert!(text.lines().all(|l| l.starts_with("{\"kind\":\"inventory\"")), "{k} has only its kinds");
        }
        assert!(!dir.path().join("f.jsonl.3").exists(), "keep = 2");
    }
}
