//! `cargo xtask capture`: test captures from real programs.
//!
//! Real servers (a small JSON API on python's http.server, nginx) and real clients (curl,
//! python sockets) talk across a veth pair between two network namespaces while tcpdump or
//! dumpcap records. Each capture gets `<name>.client.log`: one line per request the client
//! made, `METHOD URL STATUS`, as the client saw it. Tests check our transactions against
//! these logs. Then damaged variants are derived with `damage.rs`.

use crate::damage;
use anyhow::{bail, Context, Result};
use apiwatch_testlab::{self as netns, Lab};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// Kills (SIGINT, then SIGKILL) a background process when dropped.
pub(crate) struct Bg(Child, &'static str);

impl Bg {
    /// Stop with SIGINT and wait (tcpdump and dumpcap flush on SIGINT).
    fn stop(mut self) -> Result<()> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        for _ in 0..50 {
            if self.0.try_wait()?.is_some() {
                return Ok(());
            }
            sleep(Duration::from_millis(100));
        }
        bail!("{} did not stop on SIGINT", self.1)
    }
}

/// A running tcpdump or dumpcap. Its closing report (on stderr) is checked when it stops:
/// a capture the kernel dropped packets from is not a faithful record of what the programs
/// did, so it is an error rather than a flaky test later.
pub(crate) struct Recorder {
    bg: Bg,
    report: tempfile::NamedTempFile,
}

impl Recorder {
    fn start(mut cmd: Command, what: &'static str) -> Result<Recorder> {
        let report = tempfile::NamedTempFile::new()?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(report.reopen()?)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        // Neither says when it is ready; give it time to open the interface.
        sleep(Duration::from_millis(1500));
        Ok(Recorder { bg: Bg(child, what), report })
    }

    pub(crate) fn stop(self) -> Result<()> {
        let what = self.bg.1;
        self.bg.stop()?;
        let report = std::fs::read_to_string(self.report.path())?;
        match kernel_drops(&report) {
            Some(0) => Ok(()),
            Some(n) => bail!("{what} lost {n} packets in the kernel; its report:\n{report}"),
            None => bail!("{what} printed no drop count; its report:\n{report}"),
        }
    }
}

/// Packets dropped before the recorder saw them, from tcpdump's "N packets dropped by kernel"
/// or dumpcap's "Packets received/dropped on interface 'x': R/D".
fn kernel_drops(report: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        if let Some(n) = l.strip_suffix(" packets dropped by kernel") {
            return n.trim().parse().ok();
        }
        let rest = l.strip_prefix("Packets received/dropped on interface")?;
        let counts = rest.rsplit_once("': ")?.1.split_whitespace().next()?;
        counts.split_once('/')?.1.parse().ok()
    })
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
            sleep(Duration::from_millis(200));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn spawn(mut cmd: Command, what: &'static str) -> Result<Bg> {
    let child =
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("cannot start {what}"))?;
    Ok(Bg(child, what))
}

/// Wait until something listens on `port` in namespace `ns`.
pub(crate) fn wait_listening(lab: &Lab, ns: &str, port: u16) -> Result<()> {
    for _ in 0..100 {
        let out = lab.cmd(ns, "ss").args(["-ltnH"]).output()?;
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on port {port}")
}

/// Kernel capture buffer for the recorders, in KiB. In immediate mode libpcap uses
/// TPACKET_V2 with one frame per snaplen on the "any" device: the default 2 MiB held 8
/// frames and dropped packets of a two-request session.
const RING_KIB: &str = "65536";

/// Start recording on `iface` of the server namespace.
fn record(lab: &Lab, iface: &str, out: &Path, pcapng: bool) -> Result<Recorder> {
    if pcapng {
        let mut c = lab.cmd(&lab.srv, "dumpcap");
        c.args(["-q", "-i", iface, "-B", "64", "-w"]).arg(out);
        Recorder::start(c, "dumpcap")
    } else {
        record_tcpdump(lab, &["-i", iface, "--time-stamp-precision=nano"], out, None)
    }
}

/// tcpdump in the server namespace with options `args` (the interface...) writing `out`.
pub(crate) fn record_tcpdump(lab: &Lab, args: &[&str], out: &Path, filter: Option<&str>) -> Result<Recorder> {
    let mut c = lab.cmd(&lab.srv, "tcpdump");
    // Immediate mode: without it, packets still in an unfinished TPACKET_V3 block can be
    // lost when tcpdump is interrupted.
    c.args(["-s", "0", "-U", "--immediate-mode", "-B", RING_KIB]).args(args).arg("-w").arg(out).args(filter);
    Recorder::start(c, "tcpdump")
}

/// Run a client in the client namespace; its stdout (the client log) is appended to `log`.
fn client(lab: &Lab, program: &str, args: &[String], log: &mut String) -> Result<()> {
    let out = lab.cmd(&lab.cli, program).args(args).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("client {program} failed: {}", out.status);
    }
    log.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(())
}

const W: &str = "%{method} %{url_effective} %{response_code}\\n";

/// curl arguments for a list of requests made on one keep-alive connection (`--next`).
fn curl_session(requests: &[Vec<&str>]) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if i > 0 {
            a.push("--next".into());
        }
        a.extend(["-s", "-o", "/dev/null", "-w"].map(String::from));
        a.push(W.replace("\\n", "\n"));
        a.extend(r.iter().map(|s| s.to_string()));
    }
    a
}

pub fn run(root: &Path, out: &Path) -> Result<()> {
    netns::available().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out)?;
    let tmp = tempfile::tempdir()?;
    let assets = root.join("xtask/assets");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "<html><body>apiwatch test page</body></html>\n".repeat(20))?;
    std::fs::write(
        www.join("data.json"),
        format!("[{}]", (0..300).map(|i| format!("{{\"n\":{i}}}")).collect::<Vec<_>>().join(",")),
    )?;
    let big = tmp.path().join("big.json");
    std::fs::write(&big, format!("{{\"blob\":\"{}\"}}", "y".repeat(3000)))?;
    let nginx_conf = tmp.path().join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "user root; worker_processes 1; daemon off; pid {p}/nginx.pid; error_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {p}; keepalive_requests 1000;\n\
               server {{ listen {srv}:8081; listen [{srv6}]:8081; listen {srvv}:8081; root {www}; }} }}\n",
            p = tmp.path().display(),
            srv = netns::SRV4,
            srv6 = netns::SRV6,
            srvv = netns::SRV4_VX,
            www = www.display()
        ),
    )?;

    let lab = Lab::new()?;
    let api = assets.join("api_server.py");
    let raw = assets.join("raw_client.py");
    let mut servers = Vec::new();
    for host in [netns::SRV4, netns::SRV6_VX] {
        let mut c = lab.cmd(&lab.srv, "python3");
        c.arg(&api).args([host, "8080"]);
        servers.push(spawn(c, "api server")?);
    }
    let mut ng = lab.cmd(&lab.srv, "nginx");
    ng.arg("-c").arg(&nginx_conf).arg("-p").arg(tmp.path());
    servers.push(spawn(ng, "nginx")?);
    wait_listening(&lab, &lab.srv, 8080)?;
    wait_listening(&lab, &lab.srv, 8081)?;

    let api4 = format!("http://{}:8080", netns::SRV4);
    let big_arg = format!("@{}", big.display());

    // 1. Keep-alive API calls with curl: every method, body framing and status we handle.
    {
        let name = out.join("api-keepalive.pcap");
        let rec = record(&lab, &lab.srv_if, &name, false)?;
        let u = |p: &str| format!("{api4}{p}");
        let (users1, users2, users, login, items, report, etag, missing, boom, large) = (
            u("/users/1"),
            u("/users/2?fields=name,email"),
            u("/users"),
            u("/login"),
            u("/items"),
            u("/report"),
            u("/etag"),
            u("/missing"),
            u("/boom"),
            u("/large"),
        );
        let reqs: Vec<Vec<&str>> = vec![
            vec!["-H", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", &users1],
            vec![&users2],
            vec![
                "-H",
                "Content-Type: application/json",
                "-d",
                "{\"name\":\"ann\",\"email\":\"ann@example.com\"}",
                &users,
            ],
            vec!["-d", "user=ann&password=hunter2", &login],
            vec![
                "-X",
                "PUT",
                "-H",
                "Expect: 100-continue",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &big_arg,
                &users1,
            ],
            vec!["-X", "PATCH", "-H", "Content-Type: application/json", "-d", "{\"name\":\"bo\"}", &users1],
            vec!["-X", "DELETE", &users1],
            vec![&items],
            vec!["--compressed", &report],
            vec!["-H", "If-None-Match: \"v1\"", &etag],
            vec!["-I", &users1],
            vec![&missing],
            vec![&boom],
            vec!["-b", "sid=abc123; theme=dark", "-H", "X-Api-Key: k-live-0123456789", &large],
        ];
        let mut log = String::new();
        client(&lab, "curl", &curl_session(&reqs), &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(name.with_extension("client.log"), log)?;
        println!("captured {}", name.display());
        derive_damaged(&name)?;
    }

    // 2. Pipelining against nginx, recorded by dumpcap as pcapng.
    {
        let name = out.join("pipeline-nginx.pcapng");
        let rec = record(&lab, &lab.srv_if, &name, true)?;
        let mut log = String::new();
        let args: Vec<String> = [raw.display().to_string(), "pipeline".into(), netns::SRV4.into(), "8081".into()]
            .into_iter()
            .chain(
                ["GET /index.html", "GET /data.json", "HEAD /index.html", "GET /nope", "GET /data.json"]
                    .map(String::from),
            )
            .collect();
        client(&lab, "python3", &args, &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(out.join("pipeline-nginx.client.log"), log)?;
        println!("captured {}", name.display());
    }

    // 3. IPv6 and IPv4 through a VXLAN tunnel, recorded on the underlay: encapsulated
    //    frames, as cloud traffic mirroring delivers them.
    {
        let name = out.join("vxlan-ipv6.pcap");
        let rec = record(&lab, &lab.srv_if, &name, false)?;
        let mut log = String::new();
        let v6 = format!("http://[{}]:8080", netns::SRV6_VX);
        let (a, b) = (format!("{v6}/users/6"), format!("{v6}/items"));
        let c = format!("http://{}:8081/data.json", netns::SRV4_VX);
        client(&lab, "curl", &curl_session(&[vec!["-g", &a], vec!["-g", &b]]), &mut log)?;
        client(&lab, "curl", &curl_session(&[vec![&c]]), &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(name.with_extension("client.log"), log)?;
        println!("captured {}", name.display());
    }

    // 4. A connection already open when recording starts (gzipped afterwards, as users
    //    often store captures).
    {
        let name = out.join("midstream.pcap");
        let go = tmp.path().join("go");
        let args: Vec<String> =
            [raw.display().to_string(), "slow".into(), netns::SRV4.into(), "8080".into(), go.display().to_string()]
                .into_iter()
                .chain(["GET /users/1", "GET /large", "POST /users"].map(String::from))
                .collect();
        let mut child = lab.cmd(&lab.cli, "python3").args(&args).stdout(Stdio::piped()).spawn()?;
        // The first request is done (and logged) before recording starts; the client
        // goes on only once the recorder runs.
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("client stdout")?);
        let mut log = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut log)?;
        let rec = record(&lab, &lab.srv_if, &name, false)?;
        std::fs::write(&go, "")?;
        std::io::Read::read_to_string(&mut stdout, &mut log)?;
        child.wait()?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(out.join("midstream.client.log"), &log)?;
        crate::run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&name))?;
        println!("captured {}.gz", name.display());
    }

    // 5. Linux "any" device: cooked (SLL2) frames.
    {
        let name = out.join("any-device.pcap");
        let rec = record_tcpdump(&lab, &["-i", "any"], &name, Some("tcp port 8081"))?;
        let mut log = String::new();
        let u = format!("http://{}:8081/index.html", netns::SRV4);
        let n = format!("http://{}:8081/none", netns::SRV4);
        client(&lab, "curl", &curl_session(&[vec![&u], vec![&n]]), &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(name.with_extension("client.log"), log)?;
        println!("captured {}", name.display());
    }
    // 6. Hostile clients against nginx: huge and numerous headers, binary garbage, an endless
    //    chunk, a 20-digit Content-Length, a head cut by the close.
    {
        let name = out.join("hostile.pcap");
        let rec = record(&lab, &lab.srv_if, &name, false)?;
        let mut log = String::new();
        let args =
            vec![assets.join("hostile_client.py").display().to_string(), netns::SRV4.to_string(), "8081".to_string()];
        client(&lab, "python3", &args, &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(out.join("hostile.attacks.log"), log)?;
        println!("captured {}", name.display());
    }
    // 7. 802.1Q and QinQ (802.1ad over 802.1Q) tagged frames: the kernel pushes the tags on
    //    egress and pops them on ingress (TC BPF, ebpf/vlan_tag.o); taps see them tagged.
    for (file, push) in [("vlan.pcap", "classifier/vlan_push"), ("qinq.pcap", "classifier/qinq_push")] {
        lab.tag_frames(&root.join("ebpf/vlan_tag.o"), push)?;
        let name = out.join(file);
        let rec = record(&lab, &lab.srv_if, &name, false)?;
        let mut log = String::new();
        let (a, b) = (format!("{api4}/users/42"), format!("http://{}:8081/data.json", netns::SRV4));
        client(&lab, "curl", &curl_session(&[vec![&a], vec!["-X", "DELETE", &a]]), &mut log)?;
        client(&lab, "curl", &curl_session(&[vec![&b]]), &mut log)?;
        sleep(Duration::from_millis(500));
        rec.stop()?;
        std::fs::write(name.with_extension("client.log"), log)?;
        println!("captured {}", name.display());
    }
    drop(servers);
    drop(lab);
    Ok(())
}

/// Damaged variants of a capture, for the reassembly tests.
fn derive_damaged(src: &Path) -> Result<()> {
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("capture").to_string();
    let dir = src.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let data = std::fs::read(src)?;
    for (suffix, op) in [
        ("dropped", damage::Op::Drop),
        ("duplicated", damage::Op::Duplicate),
        ("reordered", damage::Op::Reorder),
        ("truncated", damage::Op::Truncate),
    ] {
        let out = dir.join(format!("{stem}.{suffix}.pcap"));
        std::fs::write(&out, damage::apply(&data, op)?)?;
        println!("derived {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::kernel_drops;

    #[test]
    fn reads_the_drop_count_of_both_recorders() {
        let tcpdump =
            "tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes\n\
                       10 packets captured\n24 packets received by filter\n14 packets dropped by kernel\n";
        assert_eq!(kernel_drops(tcpdump), Some(14));
        let dumpcap = "Capturing on 'Loopback: lo'\nFile: /tmp/x.pcapng\nPackets captured: 7\n\
                       Packets received/dropped on interface 'Loopback: lo': 7/3 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)\n";
        assert_eq!(kernel_drops(dumpcap), Some(3));
        assert_eq!(kernel_drops("tcpdump: killed\n"), None);
    }
}
