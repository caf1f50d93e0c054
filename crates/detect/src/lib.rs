//! Runtime threat detections (issue 7), built up in steps. So far: the normalization every
//! signature reads (`normalize`), and injection signatures (`signatures`: SQL injection and
//! XSS), scored against libinjection's labeled strings in the tests. Not yet wired into the
//! pipeline: no `detection` records are made.
//!
//! Pure: no I/O, no clock, no threads.

pub mod normalize;
pub mod signatures;
