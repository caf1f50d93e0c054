//! Capture sources. For now: capture files, memory-mapped (or gunzipped into an anonymous
//! temporary file and mapped). Live capture (libpcap, eBPF) comes here too.

pub mod file;

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An opened capture file: its bytes, mapped.
pub struct CaptureFile {
    pub path: PathBuf,
    map: memmap2::Mmap,
    /// Size on disk (the gzip size for compressed files), for progress.
    pub disk_size: u64,
}

impl CaptureFile {
    /// Open `path`. Files starting with the gzip magic are decompressed first (into an
    /// unlinked temporary file, so memory stays flat whatever their size).
    pub fn open(path: &Path) -> Result<Self> {
        let mut f = File::open(path).with_context(|| format!("cannot open capture file {}", path.display()))?;
        let disk_size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).with_context(|| format!("cannot read {}", path.display()))?;
        f.seek(SeekFrom::Start(0))?;
        let file = if n == 2 && magic == [0x1f, 0x8b] {
            let mut tmp = tempfile::tempfile().context("cannot create a temporary file to decompress into")?;
            let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, f));
            std::io::copy(&mut gz, &mut tmp)
                .with_context(|| format!("{}: gzip decompression failed", path.display()))?;
            tmp
        } else {
            f
        };
        // SAFETY: the mapping is read-only and private to this process. Another process
        // truncating the file while we read it could fault; replay of a file that is
        // being rewritten is unsupported (documented in the README).
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        #[cfg(unix)]
        {
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        Ok(CaptureFile { path: path.to_path_buf(), map, disk_size })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drop the pages of `[start, end)` from this process's resident set. They stay in the
    /// page cache and fault back in if read again, with the same contents: this is what
    /// keeps memory flat while replaying a file larger than memory.
    pub fn release(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let s = start.div_ceil(PAGE) * PAGE;
        let e = (end / PAGE) * PAGE;
        if e > s && e <= self.map.len() {
            // SAFETY: the mapping is read-only and shared with the file: MADV_DONTNEED only
            // unmaps pages, which re-fault from the file unchanged. No one writes to it.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, s, e - s) };
        }
    }
}

/// Read every packet of `path` with libpcap and sum their sizes: the bare read loop the
/// benchmark compares our reader with. Returns (packets, captured bytes).
pub fn libpcap_read_all(path: &Path) -> Result<(u64, u64)> {
    let mut cap = pcap::Capture::from_file(path).with_context(|| format!("libpcap cannot open {}", path.display()))?;
    let (mut n, mut bytes) = (0u64, 0u64);
    loop {
        match cap.next_packet() {
            Ok(p) => {
                n += 1;
                bytes += p.data.len() as u64;
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(anyhow::anyhow!("libpcap: {e}")),
        }
    }
    Ok((n, bytes))
}
