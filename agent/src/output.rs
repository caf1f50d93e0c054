//! Output sinks. For now NDJSON to stdout or a file; remote sinks come with issue 6.

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
        Ok(NdjsonOutput { w, buf: Vec::with_capacity(FLUSH_AT + (64 << 10)), opts, records: 0, closed: false })
    }

    /// Render a transaction as one line (appended to `line`).
    pub fn render(opts: &RenderOptions, tx: &Transaction, line: &mut Vec<u8>) {
        tx.render(opts, line);
        line.push(b'\n');
    }

    pub fn transaction(&mut self, tx: &Transaction) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        Self::render(&self.opts, tx, &mut self.buf);
        self.records += 1;
        self.maybe_write()
    }

    /// Write `records` pre-rendered lines.
    pub fn raw(&mut self, bytes: &[u8], records: u64) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        self.records += records;
        self.maybe_write()
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
