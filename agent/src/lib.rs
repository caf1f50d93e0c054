//! The `apiwatch` agent: everything that touches the outside world (capture files, live
//! capture, output, configuration, the command line) around the pure stages in `crates/`.

pub mod capture;
pub mod cef;
pub mod config;
pub mod detect;
pub mod ebpf;
pub mod engine;
pub mod inventory;
pub mod live;
pub mod ocsf;
pub mod output;
pub mod privileges;
pub mod remote;
pub mod replay;
pub mod report;
pub mod sink;
pub mod spool;
pub mod summary;
pub mod tls;
