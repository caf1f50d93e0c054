//! `cargo xtask`: project automation.
//!
//! - `capture [--out DIR]`: make the test captures from real programs in network namespaces.
//! - `bless`: write the expected output next to every capture in pcaps/.
//! - `test`: the whole test suite, privileged parts included (what CI runs).
//! - `bench [--quick]`: throughput and memory, against libpcap and tshark in the same run;
//!   `bench clients [--quick]`: memory with a million distinct client addresses.
//! - `fuzz [--seconds N]`: a short run of every fuzz target.

mod bench;
mod capture;
mod classify_quality;
mod clients_bench;
mod damage;
mod detect_quality;
mod quality;
mod ship_bench;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("capture") => {
            let out = flag_value(&args, "--out").map(PathBuf::from).unwrap_or_else(|| root.join("pcaps"));
            capture::run(&root, &out)
        }
        Some("bless") => bless(&root),
        Some("test") => test(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("fuzz") => {
            let secs: u64 = flag_value(&args, "--seconds").map(|s| s.parse()).transpose()?.unwrap_or(20);
            fuzz(&root, secs)
        }
        Some("damage") => damage::cli(&args[1..]),
        Some("ebpf") => ebpf(&root, args.iter().any(|a| a == "--check")),
        Some("classify-quality") => {
            let docs: usize = flag_value(&args, "--docs").map(|s| s.parse()).transpose()?.unwrap_or(2000);
            let py = flag_value(&args, "--presidio").map(std::path::PathBuf::from);
            classify_quality::run(&root, docs, py.as_deref())?;
            if args.iter().any(|a| a == "--faker") {
                let py = classify_quality::faker_python(&root.join("target/venv-faker"))?;
                let presidio = flag_value(&args, "--presidio").map(std::path::PathBuf::from);
                classify_quality::faker(&root, &py, 300, presidio.as_deref())?;
            }
            Ok(())
        }
        Some("detect-quality") => {
            let num = |flag: &str, d: usize| {
                args.windows(2).find(|w| w[0] == flag).and_then(|w| w[1].parse().ok()).unwrap_or(d)
            };
            let reuse = args.iter().any(|a| a == "--reuse");
            detect_quality::run(&root, num("--per-op", 30), num("--benign-rounds", 6000), reuse)
        }
        Some("inventory-quality") => {
            let per_op: usize = flag_value(&args, "--per-op").map(|s| s.parse()).transpose()?.unwrap_or(20);
            let mut specs: Vec<String> = args.windows(2).filter(|w| w[0] == "--spec").map(|w| w[1].clone()).collect();
            if specs.is_empty() {
                specs = quality::DEFAULT_SPECS.iter().map(|s| s.to_string()).collect();
            }
            let reuse = args.iter().any(|a| a == "--reuse");
            quality::run(&root, &specs, per_op, &root.join("target/inventory-quality"), reuse).map(|_| ())
        }
        _ => {
            eprintln!("usage: cargo xtask <capture [--out DIR] | bless | test | bench [--quick] | fuzz [--seconds N] | ebpf [--check]>");
            std::process::exit(2)
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// Run a command, failing with its name on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// A Python that can `import module`: a virtualenv in `dir`, made the first time with
/// `package` from PyPI (pinned as the caller writes it). Errors say what failed.
pub fn python_with(dir: &Path, module: &str, package: &str) -> Result<PathBuf> {
    let py = dir.join("bin/python");
    let imports = || {
        Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if imports() {
        return Ok(py);
    }
    println!("installing {package} into {} (once)", dir.display());
    run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
    run(Command::new(dir.join("bin/pip")).args(["install", "-q", package]))?;
    if !imports() {
        bail!("{package} was installed in {} but `import {module}` fails", dir.display());
    }
    Ok(py)
}

/// Build the release binary and return its path.
pub fn release_binary(root: &Path) -> Result<PathBuf> {
    run(Command::new("cargo").args(["build", "--release", "-q", "-p", "apiwatch"]).current_dir(root))?;
    Ok(root.join("target/release/apiwatch"))
}

/// Captures in pcaps/ that have (or get) an expected output.
pub fn capture_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".pcap.gz")
        })
        .collect();
    v.sort();
    Ok(v)
}

pub fn expected_path(capture: &Path) -> PathBuf {
    let name = capture.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    capture.with_file_name(format!("{name}.expected.jsonl"))
}

/// Write `<capture>.expected.jsonl` for every capture: what `apiwatch replay` writes now.
/// Review the diff before committing it.
fn bless(root: &Path) -> Result<()> {
    let bin = release_binary(root)?;
    for cap in capture_files(&root.join("pcaps"))? {
        let out = Command::new(&bin).args(["replay", "-q"]).arg(&cap).output()?;
        std::fs::write(expected_path(&cap), &out.stdout)?;
        println!(
            "blessed {} ({} records{})",
            cap.display(),
            out.stdout.iter().filter(|&&b| b == b'\n').count(),
            if out.status.success() { String::new() } else { format!(", exit {}", out.status) }
        );
    }
    Ok(())
}

/// The full test suite: unit and integration tests, then the privileged check that makes
/// fresh captures from real programs and replays them.
fn test(root: &Path) -> Result<()> {
    run(Command::new("cargo").args(["test", "--workspace", "--all-targets"]).current_dir(root))?;
    // Sensitive-data classifier: per-type precision and recall on the labeled set.
    classify_quality::run(root, 2000, None)?;
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    // The same on values made by Faker (from PyPI, into a virtualenv under target/).
    match classify_quality::faker_python(&root.join("target/venv-faker")) {
        Ok(py) => classify_quality::faker(root, &py, 300, None)?,
        Err(e) if !ci => println!("SKIPPED: classifier on Faker's values: no Faker ({e:#})"),
        Err(e) => return Err(e.context("Faker is needed under CI")),
    }
    // The committed eBPF objects must be what their sources compile to.
    ebpf(root, true)?;
    match apiwatch_testlab::available() {
        Ok(()) => {
            let dir = root.join("target/capture-check");
            let _ = std::fs::remove_dir_all(&dir);
            capture::run(root, &dir)?;
            run(Command::new("cargo")
                .args(["test", "-p", "apiwatch-tests", "--test", "pcaps", "--", "fresh_captures", "--nocapture"])
                .env("APIWATCH_CAPTURE_DIR", &dir)
                .current_dir(root))?;
            inventory_quality_floor(root, ci)?;
        }
        Err(why) if ci => bail!("privileged capture tests cannot run under CI=true: {why}"),
        Err(why) => println!("SKIPPED privileged capture tests: {why}"),
    }
    Ok(())
}

/// Path templating on traffic generated from real API descriptions (../shared/openapi) must
/// keep precision and recall at or above 0.95 on each of these documents.
fn inventory_quality_floor(root: &Path, ci: bool) -> Result<()> {
    const SPECS: &[&str] = &[
        "petstore/openapi.yaml",
        "oai-examples/_archive___schemas__v3.0__pass__petstore-expanded.yaml",
        "spotify/fixed-spotify-open-api.yml",
        "twilio/twilio_api_v2010.json",
        "slack/slack_web_openapi_v2.json",
    ];
    if !root.join("../shared/openapi").is_dir() {
        if ci {
            bail!("../shared/openapi is missing: the inventory quality check cannot run");
        }
        println!("SKIPPED inventory quality check: ../shared/openapi is missing");
        return Ok(());
    }
    let specs: Vec<String> = SPECS.iter().map(|s| s.to_string()).collect();
    let scores = quality::run(root, &specs, 20, &root.join("target/inventory-quality-check"), false)?;
    let low: Vec<String> = specs
        .iter()
        .zip(&scores)
        .filter(|(_, s)| s.precision < 0.95 || s.recall < 0.95)
        .map(|(n, s)| format!("{n}: precision {:.3}, recall {:.3}", s.precision, s.recall))
        .collect();
    if !low.is_empty() {
        bail!(
            "path templating fell below 0.95 (details in target/inventory-quality-check/*.diff):\n{}",
            low.join("\n")
        );
    }
    Ok(())
}

/// Compile every `ebpf/src/*.c` into `ebpf/*.o` with clang. `--check`: compile into a
/// temporary directory and fail if any committed object differs (CI runs this).
fn ebpf(root: &Path, check: bool) -> Result<()> {
    let src = root.join("ebpf/src");
    let tmp = tempfile::tempdir()?;
    let mut differ = Vec::new();
    for entry in std::fs::read_dir(&src)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("c") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("x").to_string();
        let committed = root.join("ebpf").join(format!("{stem}.o"));
        let out = if check { tmp.path().join(format!("{stem}.o")) } else { committed.clone() };
        let dir = root.join("ebpf");
        run(Command::new("clang")
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-fdebug-prefix-map={}=.", dir.display()))
            .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
            .arg(format!("src/{stem}.c"))
            .arg("-o")
            .arg(&out)
            .current_dir(&dir))?;
        if check && std::fs::read(&out)? != std::fs::read(&committed).unwrap_or_default() {
            differ.push(committed.display().to_string());
        }
        println!("built {}", out.display());
    }
    if !differ.is_empty() {
        bail!("committed eBPF objects differ from a fresh build (run `cargo xtask ebpf` and commit): {differ:?}");
    }
    Ok(())
}

fn fuzz(root: &Path, secs: u64) -> Result<()> {
    let have = Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in ["decode", "reassemble", "http", "capture_file", "classify"] {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        println!("fuzzing {target} for {secs} s");
        let mut cmd = Command::new("cargo");
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg(root.join("fuzz/seeds").join(target))
            .args(["--", &format!("-max_total_time={secs}")])
            .current_dir(root);
        run(&mut cmd)?;
    }
    Ok(())
}
