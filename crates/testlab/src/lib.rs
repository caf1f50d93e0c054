//! A two-host test lab for tests and `cargo xtask`: network namespaces joined by a veth pair, with a VXLAN tunnel over
//! it (the encapsulation cloud traffic mirroring uses). Dropping the [`Lab`] deletes the
//! namespaces (and with them the links).
//!
//! A VLAN sub-interface would be the natural way to get 802.1Q frames, but the kernels of
//! these machines are built without 802.1Q (nor tc's vlan action): [`Lab::tag_frames`]
//! has a small TC BPF program (`ebpf/src/vlan_tag.c`) push and pop the tags instead.

use anyhow::{bail, Result};
use std::process::{Command, Stdio};

pub const CLI4: &str = "10.77.0.1";
pub const SRV4: &str = "10.77.0.2";
pub const SRV6: &str = "fd77::2";
pub const VNI: u16 = 42;
pub const SRV4_VX: &str = "10.77.42.2";
pub const SRV6_VX: &str = "fd77:42::2";

pub struct Lab {
    pub cli: String,
    pub srv: String,
    /// Server-side interface (where captures are taken).
    pub srv_if: String,
    pub cli_if: String,
}

/// Whether this process can build a lab: root, iproute2, and the capture tools.
pub fn available() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("1");
    if uid != "0" {
        return Err("network namespaces need root".into());
    }
    for tool in ["ip", "tcpdump", "dumpcap", "curl", "python3", "nginx"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status();
        if !found.map(|s| s.success()).unwrap_or(false) {
            return Err(format!("{tool} is not installed (see README: the setup command installs it)"));
        }
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Lab {
    pub fn new() -> Result<Lab> {
        // Unique per lab: tests build several in parallel, and other processes make
        // namespaces too. Interface names must stay within 15 bytes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
        let id = format!("{}{n:02}", std::process::id() % 10_000);
        let lab = Lab {
            cli: format!("aw{id}c"),
            srv: format!("aw{id}s"),
            cli_if: format!("aw{id}c0"),
            srv_if: format!("aw{id}s0"),
        };
        ip(&["netns", "add", &lab.cli])?;
        ip(&["netns", "add", &lab.srv])?;
        ip(&["link", "add", &lab.cli_if, "type", "veth", "peer", "name", &lab.srv_if])?;
        ip(&["link", "set", &lab.cli_if, "netns", &lab.cli])?;
        ip(&["link", "set", &lab.srv_if, "netns", &lab.srv])?;
        for (ns, dev, v4, v6, v4v, v6v, peer) in [
            (&lab.cli, &lab.cli_if, CLI4, "fd77::1", "10.77.42.1", "fd77:42::1", SRV4),
            (&lab.srv, &lab.srv_if, SRV4, SRV6, SRV4_VX, SRV6_VX, CLI4),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&["-n", ns, "-6", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            let vx = format!("vx{VNI}");
            ip(&[
                "-n",
                ns,
                "link",
                "add",
                &vx,
                "type",
                "vxlan",
                "id",
                &VNI.to_string(),
                "local",
                v4,
                "remote",
                peer,
                "dstport",
                "4789",
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4v}/24"), "dev", &vx])?;
            ip(&["-n", ns, "-6", "addr", "add", &format!("{v6v}/64"), "dev", &vx, "nodad"])?;
            ip(&["-n", ns, "link", "set", &vx, "up"])?;
        }
        Ok(lab)
    }

    /// Tag every frame on the wire between the namespaces: `push` (a section of
    /// `ebpf/vlan_tag.o`, `classifier/vlan_push` or `classifier/qinq_push`) on egress of both
    /// ends, `classifier/vlan_pop` on ingress. The kernel pushes and pops the tags (TC BPF,
    /// direct action); calling it again swaps the push program.
    pub fn tag_frames(&self, obj: &std::path::Path, push: &str) -> Result<()> {
        for (ns, dev) in [(&self.cli, &self.cli_if), (&self.srv, &self.srv_if)] {
            let obj = obj.to_string_lossy();
            for args in [
                vec!["qdisc", "replace", "dev", dev, "clsact"],
                vec![
                    "filter", "replace", "dev", dev, "egress", "pref", "1", "handle", "1", "bpf", "da", "obj", &obj,
                    "sec", push,
                ],
                vec![
                    "filter",
                    "replace",
                    "dev",
                    dev,
                    "ingress",
                    "pref",
                    "1",
                    "handle",
                    "1",
                    "bpf",
                    "da",
                    "obj",
                    &obj,
                    "sec",
                    "classifier/vlan_pop",
                ],
            ] {
                let out = Command::new("ip").args(["netns", "exec", ns, "tc"]).args(&args).output()?;
                if !out.status.success() {
                    bail!("tc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
                }
            }
        }
        Ok(())
    }

    /// Delete the veth pair (both ends go), wait, and make it again with the same names and
    /// addresses: an interface that goes away and comes back.
    pub fn bounce_link(&self, down_for: std::time::Duration) -> Result<()> {
        ip(&["-n", &self.cli, "link", "del", &self.cli_if])?;
        std::thread::sleep(down_for);
        ip(&["link", "add", &self.cli_if, "type", "veth", "peer", "name", &self.srv_if])?;
        ip(&["link", "set", &self.cli_if, "netns", &self.cli])?;
        ip(&["link", "set", &self.srv_if, "netns", &self.srv])?;
        for (ns, dev, v4, v6) in [(&self.cli, &self.cli_if, CLI4, "fd77::1"), (&self.srv, &self.srv_if, SRV4, SRV6)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&["-n", ns, "-6", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Take both ends of the veth pair down (the path is cut: packets vanish, connections
    /// hang) or up again (addresses and routes come back).
    pub fn set_link(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        for (ns, dev) in [(&self.cli, &self.cli_if), (&self.srv, &self.srv_if)] {
            ip(&["-n", ns, "link", "set", dev, state])?;
        }
        Ok(())
    }

    /// A command run inside namespace `ns`.
    pub fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.cli]);
        let _ = ip(&["netns", "del", &self.srv]);
    }
}
