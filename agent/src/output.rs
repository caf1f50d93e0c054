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

    pub fn flush(&mut self) -> Result<()> {
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
