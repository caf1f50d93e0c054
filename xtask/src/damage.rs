//! Derive damaged captures from a good one (classic pcap, Ethernet or SLL2, IPv4/IPv6):
//! drop, duplicate or reorder TCP data segments, or cut the file in the middle of a
//! record. Used to make the reassembly regression captures; deterministic.

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Drop three data segments (at a third, half and two thirds of them).
    Drop,
    /// Write every data segment twice (a retransmission of each).
    Duplicate,
    /// Swap every tenth pair of neighbouring data segments (timestamps stay in order).
    Reorder,
    /// Cut the file at 60% of its length, inside a record.
    Truncate,
}

struct Rec {
    header: [u8; 16],
    data: Vec<u8>,
}

fn rd32(b: &[u8], be: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// The TCP source port of an Ethernet frame (enough to tell the two directions apart).
fn direction(f: &[u8]) -> u16 {
    let ihl = f.get(14).map_or(20, |b| (b & 15) as usize * 4);
    let l4 = if f.get(12..14) == Some(&[0x86, 0xdd]) { 14 + 40 } else { 14 + ihl };
    f.get(l4..l4 + 2).map_or(0, |p| u16::from_be_bytes([p[0], p[1]]))
}

/// TCP payload length of an Ethernet frame, if it is TCP.
fn tcp_payload_len(f: &[u8]) -> usize {
    let mut off = 14;
    let mut et = match f.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return 0,
    };
    while et == 0x8100 {
        match f.get(off + 2..off + 4) {
            Some(b) => et = u16::from_be_bytes([b[0], b[1]]),
            None => return 0,
        }
        off += 4;
    }
    let (proto, l4, total_end) = match et {
        0x0800 => {
            let Some(h) = f.get(off..off + 20) else { return 0 };
            let ihl = (h[0] & 15) as usize * 4;
            (h[9], off + ihl, off + u16::from_be_bytes([h[2], h[3]]) as usize)
        }
        0x86dd => {
            let Some(h) = f.get(off..off + 40) else { return 0 };
            (h[6], off + 40, off + 40 + u16::from_be_bytes([h[4], h[5]]) as usize)
        }
        _ => return 0,
    };
    if proto != 6 {
        return 0;
    }
    let Some(t) = f.get(l4..l4 + 20) else { return 0 };
    let doff = (t[12] >> 4) as usize * 4;
    total_end.saturating_sub(l4 + doff)
}

pub fn apply(data: &[u8], op: Op) -> Result<Vec<u8>> {
    if data.len() < 24 {
        bail!("not a pcap file");
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let be = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => false,
        0xd4c3b2a1 | 0x4d3cb2a1 => true,
        _ => bail!("only classic pcap files can be damaged"),
    };
    if let Op::Truncate = op {
        let cut = data.len() * 6 / 10;
        return Ok(data[..cut].to_vec());
    }
    let mut recs = Vec::new();
    let mut pos = 24;
    while pos + 16 <= data.len() {
        let mut header = [0u8; 16];
        header.copy_from_slice(&data[pos..pos + 16]);
        let caplen = rd32(&header[8..12], be) as usize;
        let end = pos + 16 + caplen;
        if end > data.len() {
            bail!("record at {pos} is truncated");
        }
        recs.push(Rec { header, data: data[pos + 16..end].to_vec() });
        pos = end;
    }
    let data_idx: Vec<usize> = (0..recs.len()).filter(|&i| tcp_payload_len(&recs[i].data) > 0).collect();
    let n = data_idx.len();
    let mut out = data[..24].to_vec();
    match op {
        Op::Drop => {
            let drop: Vec<usize> = [n / 3, n / 2, 2 * n / 3].iter().filter_map(|&k| data_idx.get(k).copied()).collect();
            for (i, r) in recs.iter().enumerate() {
                if !drop.contains(&i) {
                    out.extend_from_slice(&r.header);
                    out.extend_from_slice(&r.data);
                }
            }
        }
        Op::Duplicate => {
            for (i, r) in recs.iter().enumerate() {
                let times = if data_idx.binary_search(&i).is_ok() { 2 } else { 1 };
                for _ in 0..times {
                    out.extend_from_slice(&r.header);
                    out.extend_from_slice(&r.data);
                }
            }
        }
        Op::Reorder => {
            // Swap neighbouring data segments of the same direction, as the network does;
            // segments of opposite directions keep their causal order.
            let mut order: Vec<usize> = (0..recs.len()).collect();
            let mut k = 5;
            while k + 1 < n {
                let (a, b) = (data_idx[k], data_idx[k + 1]);
                if direction(&recs[a].data) == direction(&recs[b].data) {
                    order.swap(a, b);
                    k += 10;
                } else {
                    k += 1;
                }
            }
            // Keep the timestamps in file order: only the contents move.
            for (slot, &src) in order.iter().enumerate() {
                let mut h = recs[src].header;
                h[..8].copy_from_slice(&recs[slot].header[..8]);
                out.extend_from_slice(&h);
                out.extend_from_slice(&recs[src].data);
            }
        }
        Op::Truncate => unreachable!(),
    }
    Ok(out)
}

/// `cargo xtask damage IN OUT drop|duplicate|reorder|truncate`
pub fn cli(args: &[String]) -> Result<()> {
    let [input, output, op] = args else { bail!("usage: cargo xtask damage IN OUT drop|duplicate|reorder|truncate") };
    let op = match op.as_str() {
        "drop" => Op::Drop,
        "duplicate" => Op::Duplicate,
        "reorder" => Op::Reorder,
        "truncate" => Op::Truncate,
        other => bail!("unknown damage {other}"),
    };
    std::fs::write(output, apply(&std::fs::read(input)?, op)?)?;
    Ok(())
}
