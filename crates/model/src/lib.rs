//! The records apiwatch emits and their JSON rendering: the versioned output schema.
//!
//! A record is one NDJSON line. Every record has `/kind` and `/schema_version`. This crate
//! holds the in-memory [`Transaction`] that the HTTP stage produces and later stages
//! (inventory, classify, detect) read, and renders it with a small hand-written JSON
//! writer: output is deterministic (field order fixed) and bytes that are not UTF-8 are
//! escaped as `\u00XX` of the raw byte rather than lost.
//!
//! Redaction happens here, at render time: analyzers see raw values, output never does
//! unless [`RenderOptions::redact`] is turned off for local debugging.

mod json;
mod time;
mod transaction;

pub use json::JsonWriter;
pub use time::format_rfc3339_micros;
pub use transaction::*;

/// What the inventory knew of a transaction's endpoint before the transaction, for the
/// detections' baselines (filled by the stage that owns the inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFacts {
    /// Identifies the endpoint (host, template and method) for as long as it lives.
    pub key: u64,
    pub first_seen: i64,
    /// Calls before this one.
    pub calls: u64,
    /// A query parameter the endpoint had never been called with.
    pub new_param: Option<Box<str>>,
    /// A known query parameter whose value was of a kind never seen for it (`id: string`).
    pub new_kind: Option<Box<str>>,
    /// Sensitive values the classifier found in this transaction's response (when it was
    /// sampled).
    pub sensitive_found: u32,
    /// The endpoint has been seen to answer with sensitive data.
    pub sensitive_endpoint: bool,
    /// Earlier 2xx answers with and without credentials.
    pub authenticated_success: u64,
    pub unauthenticated_success: u64,
    /// The client is external (not in the internal ranges).
    pub external: bool,
    /// This call carried credentials as the inventory reads them (Authorization, an API key
    /// in a header, the query or a cookie, a session cookie).
    pub authenticated: bool,
}

/// Version of the record schema. Bump on any incompatible change of a field.
pub const SCHEMA_VERSION: u32 = 1;

/// The Community ID (v1, seed 0) of a TCP connection: the flow hash that Zeek, Suricata and
/// most SIEMs use to join records about one connection.
pub fn community_id(a: std::net::IpAddr, ap: u16, b: std::net::IpAddr, bp: u16) -> String {
    use std::net::IpAddr;
    let bytes = |ip: IpAddr| -> Vec<u8> {
        match ip {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        }
    };
    let (sa, sp, da, dp) = {
        let (x, y) = ((bytes(a), ap), (bytes(b), bp));
        if x <= y {
            (x.0, x.1, y.0, y.1)
        } else {
            (y.0, y.1, x.0, x.1)
        }
    };
    let mut h = sha1_smol::Sha1::new();
    h.update(&0u16.to_be_bytes());
    h.update(&sa);
    h.update(&da);
    h.update(&[6, 0]);
    h.update(&sp.to_be_bytes());
    h.update(&dp.to_be_bytes());
    let digest = h.digest().bytes();
    format!("1:{}", base64(&digest))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_id_matches_the_spec_example() {
        // From the Community ID specification's test vectors (TCP over IPv4).
        let id = community_id("128.232.110.120".parse().unwrap(), 34855, "66.35.250.204".parse().unwrap(), 80);
        assert_eq!(id, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let rev = community_id("66.35.250.204".parse().unwrap(), 80, "128.232.110.120".parse().unwrap(), 34855);
        assert_eq!(rev, id);
    }

    #[test]
    fn rfc3339_micros() {
        assert_eq!(format_rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_rfc3339_micros(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456Z");
        assert_eq!(format_rfc3339_micros(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(format_rfc3339_micros(-1_000), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339_micros(1_709_164_800_500_000_000), "2024-02-29T00:00:00.500000Z");
        assert_eq!(format_rfc3339_micros(951_782_400_000_001_000), "2000-02-29T00:00:00.000001Z");
        // The ends of what nanoseconds in an i64 can say.
        assert_eq!(format_rfc3339_micros(i64::MAX), "2262-04-11T23:47:16.854775Z");
        assert_eq!(format_rfc3339_micros(i64::MIN), "1677-09-21T00:12:43.145224Z");
    }
}
