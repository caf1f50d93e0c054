//! Records as CEF (ArcSight Common Event Format) lines, for syslog outputs: what classic
//! SIEMs parse without configuration. `CEF:0|apiwatch|apiwatch|VERSION|SIGNATURE|NAME|
//! SEVERITY|EXTENSION`, the header's `|` and `\` escaped, the extension's `=`, `\` and line
//! breaks escaped. Values are as redacted as in our records. The mapping is in
//! docs/siem.md.

use serde_json::Value;

/// Header field: `\` and `|` escaped.
fn head(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

/// Extension value: `\`, `=` and line breaks escaped.
fn ext(s: &str) -> String {
    s.replace('\\', "\\\\").replace('=', "\\=").replace('\r', "\\r").replace('\n', "\\n")
}

fn ms(ts: Option<&Value>) -> Option<i64> {
    let t = time::OffsetDateTime::parse(ts?.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The CEF severity (0-10) of a sensitive type (see ocsf.rs for the same scale).
fn severity(ty: &str, external: bool) -> u8 {
    use crate::ocsf::Sensitivity;
    let base: u8 = match crate::ocsf::sensitivity(ty) {
        Sensitivity::Network => 1,
        Sensitivity::Contact => 3,
        Sensitivity::Critical => 7,
        Sensitivity::Other => 5,
    };
    (base + if external { 2 } else { 0 }).min(10)
}

/// The CEF line (without line end) of a record, or None for lines that are not records.
/// `syslog_severity` is the matching syslog severity (RFC 5424 numbering).
pub fn convert(line: &[u8]) -> Option<(String, u8)> {
    let r: Value = serde_json::from_slice(line).ok()?;
    let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let p =
        |k: &str| r.pointer(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default();
    let kind = g("kind");
    let mut e: Vec<(&str, String)> = Vec::new();
    if let Some(t) = ms(r.get("ts")) {
        e.push(("rt", t.to_string()));
    }
    let (sig, name, sev) = match kind {
        "transaction" => {
            e.extend([
                ("src", p("/client/ip")),
                ("spt", p("/client/port")),
                ("dst", p("/server/ip")),
                ("dpt", p("/server/port")),
                ("requestMethod", p("/request/method")),
                ("request", format!("http://{}{}", p("/request/host"), p("/request/uri"))),
                ("outcome", p("/response/status")),
                ("cs1Label", "communityId".into()),
                ("cs1", p("/community_id")),
            ]);
            let status = r.pointer("/response/status").and_then(Value::as_u64).unwrap_or(0);
            (
                "http_transaction".to_string(),
                format!("{} {}", p("/request/method"), p("/request/uri")),
                if status >= 500 { 3 } else { 1 },
            )
        }
        "sensitive_data" => {
            let external = r.get("external").and_then(Value::as_bool).unwrap_or(false);
            e.extend([
                ("dhost", g("host").to_string()),
                ("requestMethod", g("method").to_string()),
                ("request", g("template").to_string()),
                ("outcome", g("status_class").to_string()),
                ("cs1Label", "dataType".into()),
                ("cs1", g("type").to_string()),
                ("cs2Label", "location".into()),
                ("cs2", g("location").to_string()),
                ("cs3Label", "field".into()),
                ("cs3", g("field").to_string()),
                ("cs4Label", "maskedValue".into()),
                ("cs4", g("masked").to_string()),
                ("cs5Label", "valueHash".into()),
                ("cs5", g("hash").to_string()),
                ("cs6Label", "event".into()),
                ("cs6", g("event").to_string()),
                ("cn1Label", "confidence".into()),
                ("cn1", p("/confidence")),
            ]);
            let name = format!(
                "{} in {} {} of {} {}{}",
                g("type"),
                g("location"),
                g("field"),
                g("method"),
                g("host"),
                g("template")
            );
            (format!("sensitive_data:{}", g("type")), name, severity(g("type"), external))
        }
        "inventory" => {
            e.extend([
                ("dhost", g("host").to_string()),
                ("requestMethod", g("method").to_string()),
                ("request", g("template").to_string()),
                ("cs1Label", "event".into()),
                ("cs1", g("event").to_string()),
            ]);
            let sev = match g("event") {
                "shadow_api" | "zombie_api" | "unauthenticated" => 5,
                _ => 1,
            };
            (
                format!("inventory:{}", g("event")),
                format!("{} {} {}{}", g("event"), g("method"), g("host"), g("template")),
                sev,
            )
        }
        "detection" => {
            e.extend([
                ("src", p("/actor/ip")),
                ("suser", p("/actor/principal")),
                ("dhost", p("/endpoint/host")),
                ("requestMethod", p("/endpoint/method")),
                ("request", p("/endpoint/template")),
                ("outcome", p("/status")),
                ("cnt", p("/count")),
                // externalId is the record's id (added when the line is sent); the
                // finding's id, shared by its new and repeated records, goes here.
                ("cs5Label", "findingId".into()),
                ("cs5", p("/id")),
                ("cs1Label", "owasp".into()),
                ("cs1", p("/owasp")),
                ("cs2Label", "mitre".into()),
                ("cs2", format!("{} / {}", p("/mitre/tactic"), p("/mitre/technique"))),
                ("cs3Label", "location".into()),
                ("cs3", p("/location")),
                ("cs4Label", "evidence".into()),
                ("cs4", p("/evidence")),
                ("msg", p("/explanation")),
            ]);
            let sev = match g("severity") {
                "critical" => 10,
                "high" => 8,
                "medium" => 5,
                _ => 3,
            };
            (
                format!("detection:{}", g("detection")),
                format!("{} {} {}", g("detection"), p("/endpoint/method"), p("/endpoint/template")),
                sev,
            )
        }
        _ => return None,
    };
    let extension: Vec<String> =
        e.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", ext(&v))).collect();
    let line = format!(
        "CEF:0|apiwatch|apiwatch|{}|{}|{}|{sev}|{}",
        env!("CARGO_PKG_VERSION"),
        head(&sig),
        head(&name),
        extension.join(" ")
    );
    // CEF 7-10 warning, 4-6 notice, below informational.
    let syslog_severity = match sev {
        7..=10 => 4,
        4..=6 => 5,
        _ => 6,
    };
    Some((line, syslog_severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_cef_lines() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/api-keepalive.pcap.expected.jsonl");
        let text = std::fs::read_to_string(p).unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for l in text.lines() {
            let (cef, _) = convert(l.as_bytes()).expect("every record converts");
            assert!(cef.starts_with("CEF:0|apiwatch|apiwatch|"), "{cef}");
            assert!(!cef.contains('\n'));
            kinds.insert(cef.split('|').nth(4).unwrap().split(':').next().unwrap().to_string());
        }
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["detection", "http_transaction", "inventory", "sensitive_data"]
        );
        let det = text.lines().find(|l| l.contains("\"detection\":\"jwt_no_expiry\"")).unwrap();
        let (cef, _) = convert(det.as_bytes()).unwrap();
        assert!(
            cef.contains("|detection:jwt_no_expiry|") && cef.contains("src=10.77.0.1") && cef.contains("cs1=API2:2023"),
            "{cef}"
        );
        assert!(cef.contains("cs5Label=findingId cs5=") && !cef.contains("externalId="), "{cef}");
        let jwt = text.lines().find(|l| l.contains("\"type\":\"jwt\"")).unwrap();
        let (cef, sev) = convert(jwt.as_bytes()).unwrap();
        assert!(cef.contains("|sensitive_data:jwt|") && cef.contains("|7|"), "{cef}");
        assert!(cef.contains("cs4=eyJ***.eyJ***.***") && cef.contains("cs3Label=field cs3=authorization"), "{cef}");
        assert_eq!(sev, 4);
    }

    #[test]
    fn escaping() {
        assert_eq!(head("a|b\\c"), "a\\|b\\\\c");
        assert_eq!(ext("x=1\ny\\"), "x\\=1\\ny\\\\");
    }
}
