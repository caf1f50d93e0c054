//! The eBPF capture backend: `ebpf/src/capture.c`, loaded with aya.
//!
//! Two TC classifiers (ingress and egress) are attached to every interface, through TCX
//! links on kernels that have them (6.6+): the links belong to this process and vanish
//! with it, even on SIGKILL. The kernel side keeps the TCP segments of the ports in the
//! `ports` map and copies them into the `events` ring buffer; this side drains it, turns
//! each record into a [`TcpSegment`] and feeds the same pipeline as replay.
//!
//! The compiled object is embedded (`ebpf/capture.o`, committed, rebuilt and checked by
//! `cargo xtask ebpf`), so building the agent needs no clang.

use anyhow::{anyhow, Context, Result};
use apiwatch_wire::{Checksum, TcpSegment};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::Ebpf;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

static OBJECT: &[u8] = aya::include_bytes_aligned!("../../ebpf/capture.o");

/// Size of the record header shared with the C program (`struct rec_hdr`).
pub const HEADER: usize = 72;

/// Kernel-side counters (`counters` map, summed over CPUs).
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelCounters {
    pub seen: u64,
    pub kept: u64,
    pub records: u64,
    pub reserve_failed: u64,
    pub cut: u64,
}

pub struct EbpfCapture {
    bpf: Ebpf,
    /// Interfaces and the index each was attached at (0: absent).
    attached: Vec<(String, u32)>,
    ring: RingBuf<MapData>,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, to turn the kernel's timestamps into wall time.
    mono_to_real: i64,
}

const PROGRAMS: [&str; 2] = ["capture_ingress", "capture_egress"];

fn ifindex(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else { return 0 };
    // SAFETY: a NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

fn clock(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl EbpfCapture {
    /// Load the programs, attach them to `interfaces` (ingress and egress) and watch `ports`.
    pub fn open(interfaces: &[String], ports: &[u16]) -> Result<EbpfCapture> {
        let mut bpf = Ebpf::load(OBJECT).context("loading the eBPF capture program (needs CAP_BPF)")?;
        for name in PROGRAMS {
            let prog: &mut SchedClassifier =
                bpf.program_mut(name).ok_or_else(|| anyhow!("{name} missing from the eBPF object"))?.try_into()?;
            prog.load().with_context(|| format!("the kernel refused {name}"))?;
        }
        let ring = RingBuf::try_from(bpf.take_map("events").ok_or_else(|| anyhow!("events map missing"))?)?;
        let mono_to_real = clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC);
        let mut cap = EbpfCapture { bpf, attached: Vec::new(), ring, mono_to_real };
        for iface in interfaces {
            cap.attach(iface)
                .with_context(|| format!("capture.interfaces: cannot attach to {iface} (needs CAP_NET_ADMIN)"))?;
            cap.attached.push((iface.clone(), ifindex(iface)));
        }
        cap.set_ports(ports)?;
        Ok(cap)
    }

    fn attach(&mut self, iface: &str) -> Result<()> {
        // Before 6.6 there is no TCX: aya attaches through netlink, which needs the clsact
        // qdisc (left in place on exit, as tc leaves it; the filters go with our process).
        // On these machines (6.18) this path is not taken and cannot be tested.
        if !aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0)) {
            let _ = aya::programs::tc::qdisc_add_clsact(iface);
        }
        for (name, kind) in PROGRAMS.iter().zip([TcAttachType::Ingress, TcAttachType::Egress]) {
            let prog: &mut SchedClassifier =
                self.bpf.program_mut(name).ok_or_else(|| anyhow!("{name} missing"))?.try_into()?;
            prog.attach(iface, kind)?;
        }
        Ok(())
    }

    /// Re-attach to interfaces that came back (the kernel drops TCX links with the
    /// interface). Call it now and then; returns the interfaces attached again.
    pub fn check_interfaces(&mut self) -> Vec<String> {
        let mut back = Vec::new();
        for i in 0..self.attached.len() {
            let (name, old) = self.attached[i].clone();
            let now = ifindex(&name);
            if now == old {
                continue;
            }
            self.attached[i].1 = now;
            if now == 0 {
                tracing::warn!(interface = %name, "interface gone: will attach again when it returns");
            } else if self.attach(&name).is_ok() {
                back.push(name);
            } else {
                // Not ready yet: try on the next check.
                self.attached[i].1 = 0;
            }
        }
        back
    }

    /// Replace the watched ports (reload: the programs stay attached). Empty: every port.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<()> {
        let mut map: BpfHashMap<&mut MapData, u16, u8> =
            BpfHashMap::try_from(self.bpf.map_mut("ports").ok_or_else(|| anyhow!("ports map missing"))?)?;
        let old: Vec<u16> = map.keys().filter_map(|k| k.ok()).collect();
        for k in old {
            if !ports.contains(&k) {
                map.remove(&k)?;
            }
        }
        let all: Vec<u16> = if ports.is_empty() { (1..=u16::MAX).collect() } else { ports.to_vec() };
        for p in all.iter().take(1024) {
            map.insert(p, 1, 0)?;
        }
        Ok(())
    }

    pub fn counters(&self) -> KernelCounters {
        let Some(map) = self.bpf.map("counters") else { return KernelCounters::default() };
        let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(map) else { return KernelCounters::default() };
        let sum = |i: u32| arr.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
        KernelCounters { seen: sum(0), kept: sum(1), records: sum(2), reserve_failed: sum(3), cut: sum(4) }
    }

    pub fn fd(&self) -> i32 {
        self.ring.as_raw_fd()
    }

    /// Hand every waiting record to `f` as a segment, with its wall-clock time and the
    /// length of the packet on the wire (headers included; 0 for the second and later records
    /// of a segment cut into chunks). Returns the number of records.
    pub fn drain(&mut self, mut f: impl FnMut(&TcpSegment<'_>, i64, u64)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Some((seg, ts, wire)) = parse(&item, self.mono_to_real) {
                f(&seg, ts, wire);
            }
            n += 1;
        }
        n
    }
}

/// A ring record: the header of `struct rec_hdr`, then `len` payload bytes.
fn parse(rec: &[u8], mono_to_real: i64) -> Option<(TcpSegment<'_>, i64, u64)> {
    let h = rec.get(..HEADER)?;
    let u32_at = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let u16_at = |o: usize| u16::from_ne_bytes([h[o], h[o + 1]]);
    let ts = i64::from_ne_bytes(h[0..8].try_into().ok()?) + mono_to_real;
    let family = h[63];
    let (src, dst) = if family == 4 {
        (IpAddr::V4(Ipv4Addr::new(h[8], h[9], h[10], h[11])), IpAddr::V4(Ipv4Addr::new(h[24], h[25], h[26], h[27])))
    } else {
        let s: [u8; 16] = h[8..24].try_into().ok()?;
        let d: [u8; 16] = h[24..40].try_into().ok()?;
        (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
    };
    let len = u16_at(60) as usize;
    let payload = rec.get(HEADER..HEADER + len)?;
    Some((
        TcpSegment {
            src,
            dst,
            sport: u16_at(56),
            dport: u16_at(58),
            seq: u32_at(40),
            ack: u32_at(44),
            flags: h[62],
            window: 0,
            header: &[],
            payload,
            seg_len: len as u32,
            checksum: Checksum::Unchecked,
            tunnel_depth: 0,
        },
        ts,
        u64::from(u32_at(68)),
    ))
}
