//! Helpers shared by the integration tests.

use apiwatch::capture::{file, CaptureFile};
use apiwatch::engine::{Engine, EngineConfig, Stats};
use apiwatch_model::Transaction;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Whether we run under CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Skip a test for `reason` outside CI; fail it under CI.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("cannot run under CI=true: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// `../shared` next to the checkout (or $APIWATCH_SHARED), if present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("APIWATCH_SHARED").map(PathBuf::from).unwrap_or_else(|| root().join("..").join("shared"));
    p.is_dir().then_some(p)
}

/// Replay capture files through the whole pipeline in one thread and collect what comes
/// out. A format error is returned with what was processed before it.
pub fn replay(files: &[PathBuf], cfg: EngineConfig) -> (Vec<Transaction>, Stats, Option<String>) {
    let mut engine = Engine::new(cfg);
    let mut out = Vec::new();
    let mut err = None;
    let mut idx = 0u64;
    'files: for f in files {
        let cap = CaptureFile::open(f).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
        let reader = match file::Reader::new(cap.bytes()) {
            Ok(r) => r,
            Err(e) => {
                err = Some(format!("{}: {e}", f.display()));
                break;
            }
        };
        for p in reader {
            match p {
                Ok(p) => {
                    engine.packet(p.linktype, p.data, p.orig_len, p.ts_ns, idx);
                    idx += 1;
                    out.extend(engine.drain());
                }
                Err(e) => {
                    err = Some(format!("{}: {e}", f.display()));
                    break 'files;
                }
            }
        }
    }
    engine.finish();
    out.extend(engine.drain());
    (out, engine.stats(), err)
}
