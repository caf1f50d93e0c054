//! Sensitive data in API traffic: which types, where (path, query, headers, bodies with
//! field paths), with a validator or context behind each finding. Values never leave this
//! crate in clear (unless redaction is explicitly turned off): findings carry a masked form
//! and a keyed hash.
//!
//! Pure: no I/O, no clock, no threads. Whoever owns the transactions decides what to
//! sample and calls [`Classifier`]'s `scan_*` methods. The JSON walker keeps buffers and a
//! cache of what field names say per thread (thread-locals, invisible in results), so that a
//! body costs no allocation.

mod detect;
pub mod mask;
mod text;
mod types;
pub mod validate;
mod walk;

pub use detect::{Classifier, Config, CustomType, Validator};
pub use text::{Hex, SmallStr, ValueHash};
pub use types::{DataType, Finding, Location};
pub use walk::percent_decode;

#[cfg(test)]
mod tests;
