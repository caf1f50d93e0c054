//! Output sinks. For now NDJSON to stdout or a file; remote sinks come with issue 6.

use anyhow::{Context, Result};
use apiwatch_model::{RenderOptions, Transaction};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Newline-delimited JSON records.
pub struct NdjsonOutput {
    w: BufWriter<Box<dyn Write + Send>>,
    line: Vec<u8>,
    opts: RenderOptions,
    pub records: u64,
    /// The reader went away (broken pipe): stop writing, quietly.
    pub closed: bool,
}

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
            w: BufWriter::with_capacity(1 << 20, w),
            line: Vec::with_capacity(4096),
            opts,
            records: 0,
            closed: false,
        })
    }

    /// Render a transaction into a line (without writing it).
    pub fn render(opts: &RenderOptions, tx: &Transaction, line: &mut Vec<u8>) {
        tx.render(opts, line);
        line.push(b'\n');
    }

    pub fn transaction(&mut self, tx: &Transaction) -> Result<()> {
        self.line.clear();
        Self::render(&self.opts, tx, &mut self.line);
        let line = std::mem::take(&mut self.line);
        let r = self.raw(&line, 1);
        self.line = line;
        r
    }

    /// Write `records` pre-rendered lines.
    pub fn raw(&mut self, bytes: &[u8], records: u64) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.records += records;
        match self.w.write_all(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.context("writing output"),
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        match self.w.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r.context("flushing output"),
        }
    }
}
