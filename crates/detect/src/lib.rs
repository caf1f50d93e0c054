//! Runtime threat detections (issue 7).
//!
//! Two halves, as the pipeline has two places to run them:
//! - [`Inspector`] reads one transaction alone, in the worker that parsed it: injection
//!   signatures over the normalized request (`normalize`, `signatures`), framing that smells
//!   of smuggling, how credentials and tokens are sent (`jwt`), what responses give away
//!   (`leaks`). It yields an [`Inspection`]: signals, the principal, login attempts.
//! - [`Detector`] is fed every transaction's inspection in output order by one owner, with
//!   the endpoint's template: it aggregates repeats per (detection, actor, endpoint) window
//!   and follows clients for brute force, credential stuffing and endpoint spraying, in
//!   capped tables.
//!
//! `rules` names each detection with its OWASP API Top 10 (2023) category, MITRE ATT&CK
//! tactic and technique, severity and explanation. `evidence` makes what leaves the agent
//! safe: attack syntax stays, data values are masked, credentials never appear.
//!
//! Pure: no I/O, no clock, no threads.

pub mod behaviour;
pub mod detector;
pub mod evidence;
pub mod inspect;
pub mod jwt;
pub mod leaks;
pub mod normalize;
pub mod rules;
pub mod signatures;

pub use behaviour::ThreatList;
pub use detector::{Context, Detector, DetectorConfig, DetectorCounters, Event, Finding};
pub use inspect::{InspectConfig, Inspection, Inspector, Login, Signal, Traits};
pub use rules::{RuleId, Severity, RULES};

#[cfg(test)]
mod tests;
