//! The on-disk spool of a remote output: every record bound for a sink is written here
//! first, in sealed batches, and leaves only when the sink has acknowledged it. It survives
//! restarts of the agent, and its size is capped: when full, the oldest records go first,
//! and are counted.
//!
//! Layout of the directory:
//! - `stream`: a random 64-bit id made when the directory is first used. A record's id is
//!   (stream, seq), so the sink can drop the duplicates that at-least-once delivery makes;
//!   a new spool directory gets a new stream, so ids never repeat.
//! - `acked`: the first sequence number not yet acknowledged (written on each
//!   acknowledgement; losing an update only resends, and the sink drops the repeats).
//! - `<first seq, 20 digits>.seg`: segments of frames, the newest being appended to.
//!
//! A frame: magic `AWS1`, payload length (u32), CRC-32 of the payload, first seq (u64),
//! record count (u32), flags (u8: 1 = gzip), then the payload (NDJSON, one record a line).
//! All little-endian. On opening, each segment is read through; a torn or corrupt tail
//! (a crash while appending) is cut off, and what precedes it is kept.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"AWS1";
const HEADER: usize = 4 + 4 + 4 + 8 + 4 + 1;
/// Payloads larger than this are refused on append and taken as corruption on reading.
pub const MAX_FRAME: usize = 64 << 20;
pub const FLAG_GZIP: u8 = 1;

/// One sealed batch, as read back for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub first_seq: u64,
    pub count: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Index into `segments` is not stable (segments are removed from the front), so a
    /// frame names its segment by first seq.
    segment: u64,
    offset: u64,
    len: u32,
    first_seq: u64,
    count: u32,
    flags: u8,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// What the spool did, for metrics and the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpoolCounters {
    pub appended_records: u64,
    pub appended_bytes: u64,
    pub acked_records: u64,
    /// Records removed unsent because the spool was full.
    pub dropped_records: u64,
    pub dropped_bytes: u64,
    /// Bytes cut off damaged segment tails when opening.
    pub recovered_truncated_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    stream: u64,
    segments: VecDeque<Segment>,
    frames: VecDeque<Frame>,
    /// The segment being appended to (the last one), open.
    tail: Option<File>,
    next_seq: u64,
    acked: u64,
    pub counters: SpoolCounters,
}

impl Spool {
    /// Open (or create) the spool in `dir`, holding at most `max_bytes` on disk, in
    /// segments of `segment_bytes`.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Spool> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let stream = read_or_make_stream(dir)?;
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(s) => {
                s.trim().parse::<u64>().with_context(|| format!("{}: not a number", dir.join("acked").display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.join("acked").display())),
        };
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if let Ok(first) = stem.parse::<u64>() {
                names.push((first, path));
            }
        }
        names.sort();
        let mut sp = Spool {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(segment_bytes),
            segment_bytes,
            stream,
            segments: VecDeque::new(),
            frames: VecDeque::new(),
            tail: None,
            next_seq: acked,
            acked,
            counters: SpoolCounters::default(),
        };
        for (first, path) in names {
            let (frames, good) = scan_segment(&path, first)?;
            let len = std::fs::metadata(&path)?.len();
            if good < len {
                // A torn or damaged tail: keep what precedes it.
                OpenOptions::new().write(true).open(&path)?.set_len(good)?;
                sp.counters.recovered_truncated_bytes += len - good;
            }
            if let Some(last) = frames.last() {
                sp.next_seq = sp.next_seq.max(last.first_seq + last.count as u64);
            }
            sp.frames.extend(frames.into_iter().filter(|f| f.first_seq + f.count as u64 > acked));
            sp.segments.push_back(Segment { first_seq: first, path, bytes: good });
        }
        sp.remove_delivered_segments()?;
        Ok(sp)
    }

    pub fn stream(&self) -> u64 {
        self.stream
    }

    /// Records waiting to be acknowledged.
    pub fn pending_records(&self) -> u64 {
        self.next_seq - self.acked
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Append a sealed batch of `count` records; returns the first seq given to them. The
    /// oldest records are dropped (and counted) if the spool would pass its cap.
    pub fn append(&mut self, count: u32, flags: u8, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_FRAME {
            bail!("batch of {} bytes is larger than a spool frame may be ({MAX_FRAME})", payload.len());
        }
        let size = (HEADER + payload.len()) as u64;
        let needs_new = match self.segments.back() {
            None => true,
            Some(s) => s.bytes > 0 && s.bytes + size > self.segment_bytes,
        };
        if needs_new || self.tail.is_none() {
            self.roll(needs_new)?;
        }
        // Make room: whole segments, oldest first, never the one being written.
        while self.bytes() + size > self.max_bytes && self.segments.len() > 1 {
            self.drop_oldest()?;
        }
        let first_seq = self.next_seq;
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(MAGIC);
        head[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        head[12..20].copy_from_slice(&first_seq.to_le_bytes());
        head[20..24].copy_from_slice(&count.to_le_bytes());
        head[24] = flags;
        let seg = self.segments.back_mut().context("spool has a segment")?;
        let offset = seg.bytes;
        let tail = self.tail.as_mut().context("spool tail is open")?;
        // One write of header and payload, so that a crash tears at most this frame.
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&head);
        frame.extend_from_slice(payload);
        tail.write_all(&frame).with_context(|| format!("cannot append to {}", seg.path.display()))?;
        seg.bytes += size;
        self.frames.push_back(Frame {
            segment: seg.first_seq,
            offset,
            len: payload.len() as u32,
            first_seq,
            count,
            flags,
        });
        self.next_seq += count as u64;
        self.counters.appended_records += count as u64;
        self.counters.appended_bytes += size;
        Ok(first_seq)
    }

    /// Make the appended frames durable (fsync).
    pub fn sync(&mut self) -> Result<()> {
        if let Some(t) = &self.tail {
            t.sync_data().context("cannot sync the spool")?;
        }
        Ok(())
    }

    /// The oldest batch not yet acknowledged.
    pub fn peek(&self) -> Result<Option<Batch>> {
        Ok(self.peek_n(1)?.pop())
    }

    /// The `n` oldest batches not yet acknowledged (fewer if there are fewer).
    pub fn peek_n(&self, n: usize) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        for f in self.frames.iter().take(n) {
            let seg =
                self.segments.iter().find(|s| s.first_seq == f.segment).context("spool frame without its segment")?;
            let mut file = File::open(&seg.path).with_context(|| format!("cannot open {}", seg.path.display()))?;
            file.seek(SeekFrom::Start(f.offset + HEADER as u64))?;
            let mut payload = vec![0u8; f.len as usize];
            file.read_exact(&mut payload).with_context(|| format!("cannot read {}", seg.path.display()))?;
            out.push(Batch { first_seq: f.first_seq, count: f.count, flags: f.flags, payload });
        }
        Ok(out)
    }

    /// Every record before `upto` was delivered.
    pub fn ack(&mut self, upto: u64) -> Result<()> {
        if upto <= self.acked {
            return Ok(());
        }
        let upto = upto.min(self.next_seq);
        self.counters.acked_records += upto - self.acked;
        self.acked = upto;
        while self.frames.front().is_some_and(|f| f.first_seq + f.count as u64 <= upto) {
            self.frames.pop_front();
        }
        write_atomically(&self.dir.join("acked"), format!("{upto}\n").as_bytes())?;
        self.remove_delivered_segments()
    }

    /// A new segment after the last (or the last reopened for appending, `new == false`).
    fn roll(&mut self, new: bool) -> Result<()> {
        if new {
            let path = self.dir.join(format!("{:020}.seg", self.next_seq));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            self.segments.push_back(Segment { first_seq: self.next_seq, path, bytes: 0 });
            self.tail = Some(f);
        } else {
            let seg = self.segments.back().context("spool has a segment")?;
            self.tail = Some(
                OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .with_context(|| format!("cannot open {}", seg.path.display()))?,
            );
        }
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<()> {
        let Some(seg) = self.segments.pop_front() else { return Ok(()) };
        let mut lost = 0;
        while self.frames.front().is_some_and(|f| f.segment == seg.first_seq) {
            let f = self.frames.pop_front().context("frame")?;
            lost += (f.first_seq + f.count as u64).saturating_sub(self.acked.max(f.first_seq)).min(f.count as u64);
        }
        self.counters.dropped_records += lost;
        self.counters.dropped_bytes += seg.bytes;
        let next = self.segments.front().map_or(self.next_seq, |s| s.first_seq);
        if next > self.acked {
            self.acked = next;
            write_atomically(&self.dir.join("acked"), format!("{next}\n").as_bytes())?;
        }
        std::fs::remove_file(&seg.path).with_context(|| format!("cannot remove {}", seg.path.display()))
    }

    /// Segments whose every record was delivered are removed (the one being written is
    /// kept unless it is delivered and another follows).
    fn remove_delivered_segments(&mut self) -> Result<()> {
        while self.segments.len() > 1 {
            let delivered_to = self.segments[1].first_seq;
            if delivered_to > self.acked {
                break;
            }
            let seg = self.segments.pop_front().context("segment")?;
            std::fs::remove_file(&seg.path).with_context(|| format!("cannot remove {}", seg.path.display()))?;
        }
        // The last segment, delivered whole and not small: start afresh.
        if let Some(last) = self.segments.back() {
            if self.frames.is_empty() && self.acked == self.next_seq && last.bytes >= self.segment_bytes {
                let seg = self.segments.pop_back().context("segment")?;
                self.tail = None;
                std::fs::remove_file(&seg.path).with_context(|| format!("cannot remove {}", seg.path.display()))?;
            }
        }
        Ok(())
    }
}

/// Read a segment's frames; returns them and the length of its sound prefix.
fn scan_segment(path: &Path, first: u64) -> Result<(Vec<Frame>, u64)> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut frames = Vec::new();
    let mut at = 0usize;
    let mut expect = first;
    while at + HEADER <= data.len() {
        let h = &data[at..at + HEADER];
        let len = u32::from_le_bytes(h[4..8].try_into()?) as usize;
        let crc = u32::from_le_bytes(h[8..12].try_into()?);
        let first_seq = u64::from_le_bytes(h[12..20].try_into()?);
        let count = u32::from_le_bytes(h[20..24].try_into()?);
        if &h[..4] != MAGIC || len > MAX_FRAME || at + HEADER + len > data.len() || first_seq != expect {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        frames.push(Frame { segment: first, offset: at as u64, len: len as u32, first_seq, count, flags: h[24] });
        expect = first_seq + count as u64;
        at += HEADER + len;
    }
    Ok((frames, at as u64))
}

fn read_or_make_stream(dir: &Path) -> Result<u64> {
    let path = dir.join("stream");
    match std::fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16).with_context(|| format!("{}: not a stream id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b)
                .map_err(|e| anyhow::anyhow!("no randomness for the spool's stream id: {e}"))?;
            let id = u64::from_le_bytes(b) | 1;
            write_atomically(&path, format!("{id:016x}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: u32) -> Vec<u8> {
        format!("{{\"kind\":\"t\",\"i\":{i}}}\n").repeat(10).into_bytes()
    }

    #[test]
    fn append_peek_ack_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut sp = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        let stream = sp.stream();
        for i in 0..50 {
            assert_eq!(sp.append(10, 0, &batch(i)).unwrap(), i as u64 * 10);
        }
        assert_eq!(sp.pending_records(), 500);
        let b = sp.peek().unwrap().unwrap();
        assert_eq!((b.first_seq, b.count, b.payload.clone()), (0, 10, batch(0)));
        sp.ack(10).unwrap();
        assert_eq!(sp.peek().unwrap().unwrap().payload, batch(1));
        sp.ack(200).unwrap();
        drop(sp);
        // A restart: the same stream, what was acknowledged stays gone, the rest is there.
        let mut sp = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        assert_eq!(sp.stream(), stream);
        assert_eq!(sp.pending_records(), 300);
        assert_eq!(sp.peek().unwrap().unwrap().first_seq, 200);
        assert_eq!(sp.append(10, 0, &batch(99)).unwrap(), 500);
        sp.ack(510).unwrap();
        assert_eq!(sp.peek().unwrap(), None);
        // Delivered segments are gone but the last.
        let segs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count();
        assert!(segs <= 1, "{segs} segments left");
        drop(sp);
        let sp = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
        assert_eq!((sp.next_seq(), sp.pending_records()), (510, 0));
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut sp = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        for i in 0..5 {
            sp.append(10, 0, &batch(i)).unwrap();
        }
        drop(sp);
        let seg = dir.path().join(format!("{:020}.seg", 0));
        let len = std::fs::metadata(&seg).unwrap().len();
        // Half a frame more, as a crash in the middle of a write leaves it.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&b"AWS1\xff\x00\x00\x00garbage"[..]).unwrap();
        drop(f);
        let mut sp = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(sp.pending_records(), 50);
        assert_eq!(sp.counters.recovered_truncated_bytes, 15);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
        assert_eq!(sp.append(10, 0, &batch(5)).unwrap(), 50);
        // A flipped byte inside a payload: that frame and what follows are cut.
        drop(sp);
        let mut data = std::fs::read(&seg).unwrap();
        let third = 2 * (HEADER + batch(0).len()) + HEADER + 3;
        data[third] ^= 0x20;
        std::fs::write(&seg, &data).unwrap();
        let sp = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(sp.pending_records(), 20);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let frame = (HEADER + batch(0).len()) as u64;
        // Room for about 8 frames in segments of 2.
        let mut sp = Spool::open(dir.path(), 8 * frame, 2 * frame).unwrap();
        for i in 0..20 {
            sp.append(10, 0, &batch(i)).unwrap();
        }
        assert!(sp.bytes() <= 8 * frame, "{} bytes", sp.bytes());
        let c = sp.counters;
        assert_eq!(c.dropped_records + sp.pending_records(), 200);
        assert!(c.dropped_records >= 120, "{c:?}");
        // What is left is the newest, in order.
        let first = sp.peek().unwrap().unwrap().first_seq;
        assert_eq!(first, c.dropped_records);
        assert_eq!(sp.next_seq(), 200);
        drop(sp);
        let sp = Spool::open(dir.path(), 8 * frame, 2 * frame).unwrap();
        assert_eq!(sp.peek().unwrap().unwrap().first_seq, first);
    }

    #[test]
    fn oversized_batches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut sp = Spool::open(dir.path(), 1 << 30, 1 << 20).unwrap();
        assert!(sp.append(1, 0, &vec![b'x'; MAX_FRAME + 1]).is_err());
        assert_eq!(sp.pending_records(), 0);
    }
}
