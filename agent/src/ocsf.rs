//! Records in OCSF (Open Cybersecurity Schema Framework) 1.3.0, for outputs with
//! `format = "ocsf"`: sensitive-data findings (and, with issue 7, detections) become
//! Detection Findings (class 2004), transactions HTTP Activity (class 4002). Inventory
//! records have no OCSF class and are not sent to OCSF outputs. The mapping, field by field,
//! is in docs/ocsf.md; values stay as redacted as in our own records.

use serde_json::{json, Map, Value};

pub const VERSION: &str = "1.3.0";

/// The record kinds an OCSF output can carry.
pub const KINDS: &[&str] = &["transaction", "sensitive_data", "detection"];

/// The OCSF form of one of our records (one NDJSON line), or None for kinds OCSF has no
/// class for (and lines that are not records).
pub fn convert(line: &[u8]) -> Option<Vec<u8>> {
    let r: Value = serde_json::from_slice(line).ok()?;
    let v = match r.get("kind")?.as_str()? {
        "transaction" => http_activity(&r),
        "sensitive_data" => sensitive_finding(&r),
        "detection" => detection_finding(&r),
        _ => return None,
    };
    let mut out = serde_json::to_vec(&v).ok()?;
    out.push(b'\n');
    Some(out)
}

fn metadata(r: &Value) -> Value {
    json!({
        "version": VERSION,
        "product": {"name": "apiwatch", "vendor_name": "apiwatch", "version": env!("CARGO_PKG_VERSION")},
        "log_name": r.get("kind").cloned().unwrap_or(Value::Null),
        "original_time": r.get("ts").cloned().unwrap_or(Value::Null),
    })
}

/// Milliseconds since the epoch of an RFC 3339 time (ours always are, in UTC).
fn epoch_ms(ts: Option<&Value>) -> Option<i64> {
    let s = ts?.as_str()?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn str_of<'a>(r: &'a Value, path: &str) -> Option<&'a str> {
    r.pointer(path)?.as_str()
}

/// HTTP Activity (4002): one transaction.
fn http_activity(r: &Value) -> Value {
    let method = str_of(r, "/request/method").unwrap_or("");
    let activity = match method {
        "CONNECT" => 1,
        "DELETE" => 2,
        "GET" => 3,
        "HEAD" => 4,
        "OPTIONS" => 5,
        "POST" => 6,
        "PUT" => 7,
        "TRACE" => 8,
        "PATCH" => 9,
        _ => 99,
    };
    let uri = str_of(r, "/request/uri").unwrap_or("");
    let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
    let host = str_of(r, "/request/host");
    let mut url = Map::new();
    url.insert("path".into(), path.into());
    if let Some(q) = query {
        url.insert("query_string".into(), q.into());
    }
    if let Some(h) = host {
        let name = h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(h, |(n, _)| n);
        url.insert("hostname".into(), name.trim_matches(|c| c == '[' || c == ']').into());
        url.insert("url_string".into(), format!("http://{h}{uri}").into());
    }
    let header = |dir: &str, name: &str| -> Option<Value> {
        r.pointer(&format!("/{dir}/headers"))?.as_array()?.iter().find_map(|h| {
            h.get("name")?.as_str()?.eq_ignore_ascii_case(name).then(|| h.get("value").cloned()).flatten()
        })
    };
    let status = r.pointer("/response/status").and_then(Value::as_u64);
    let mut v = json!({
        "class_uid": 4002,
        "class_name": "HTTP Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": activity,
        "activity_name": if activity == 99 { method.to_string() } else { titled(method) },
        "type_uid": 4002 * 100 + activity,
        "time": epoch_ms(r.get("ts")),
        "severity_id": 1,
        "severity": "Informational",
        "metadata": metadata(r),
        "src_endpoint": {"ip": r.pointer("/client/ip"), "port": r.pointer("/client/port")},
        "dst_endpoint": {"ip": r.pointer("/server/ip"), "port": r.pointer("/server/port")},
        "connection_info": {"protocol_name": "tcp", "uid": r.get("community_id")},
        "http_request": {
            "http_method": method,
            "version": r.pointer("/request/version"),
            "url": Value::Object(url),
            "user_agent": header("request", "user-agent"),
            "http_headers": r.pointer("/request/headers"),
            "length": r.pointer("/request/body_len"),
        },
        "duration": r.get("duration_us").and_then(Value::as_u64).map(|us| us / 1000),
        "unmapped": {
            "conn_id": r.get("conn_id"),
            "trans_depth": r.get("trans_depth"),
            "latency_us": r.get("latency_us"),
            "flags": r.get("flags"),
        },
    });
    if let Some(code) = status {
        v["http_response"] = json!({
            "code": code,
            "message": r.pointer("/response/reason"),
            "content_type": r.pointer("/response/content_type"),
            "length": r.pointer("/response/body_len"),
            "latency": r.get("latency_us").and_then(Value::as_u64).map(|us| us / 1000),
            "http_headers": r.pointer("/response/headers"),
        });
        v["status_id"] = json!(if code < 400 { 1 } else { 2 });
        v["status"] = json!(if code < 400 { "Success" } else { "Failure" });
    }
    strip_nulls(&mut v);
    v
}

fn titled(m: &str) -> String {
    let mut s = m.to_ascii_lowercase();
    if let Some(f) = s.get_mut(..1) {
        f.make_ascii_uppercase();
    }
    s
}

/// How sensitive a data type is, for severities (OCSF here, CEF in cef.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    /// IP addresses.
    Network,
    /// Email, phone, date of birth.
    Contact,
    /// Credentials, keys, tokens, card numbers, national and bank identifiers.
    Critical,
    /// Anything else (custom types).
    Other,
}

pub fn sensitivity(ty: &str) -> Sensitivity {
    match ty {
        "ip_address" => Sensitivity::Network,
        "email" | "phone" | "date_of_birth" => Sensitivity::Contact,
        "password" | "secret" | "session_id" | "jwt" | "private_key" | "aws_access_key_id" | "aws_secret_key"
        | "github_token" | "gitlab_token" | "slack_token" | "stripe_key" | "google_api_key" | "azure_storage_key"
        | "azure_sas" | "credit_card" | "us_ssn" | "iban" | "us_aba_routing" | "passport" | "uk_nino"
        | "in_aadhaar" | "es_dni" | "nl_bsn" => Sensitivity::Critical,
        _ => Sensitivity::Other,
    }
}

/// Severity of a sensitive type: credentials and national or financial identifiers are
/// High, contact details Low, addresses Informational; one step more when an external
/// client is involved.
fn severity_of(ty: &str, external: bool) -> (u64, &'static str) {
    let base = match sensitivity(ty) {
        Sensitivity::Network => 1,
        Sensitivity::Contact => 2,
        Sensitivity::Critical => 4,
        Sensitivity::Other => 3,
    };
    let id = (base + u64::from(external)).min(5);
    (id, ["Unknown", "Informational", "Low", "Medium", "High", "Critical"][id as usize])
}

/// What every Detection Finding we make has.
fn finding(r: &Value, severity_id: u64, title: &str) -> Value {
    json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "time": epoch_ms(r.get("ts")),
        "severity_id": severity_id,
        "status_id": 1,
        "status": "New",
        "message": title,
        "metadata": metadata(r),
    })
}

/// `extra`'s members into `v`.
fn merged(mut v: Value, extra: Value) -> Value {
    if let (Some(m), Value::Object(x)) = (v.as_object_mut(), extra) {
        m.extend(x);
    }
    v
}

/// Detection Finding (2004) for a sensitive-data record.
fn sensitive_finding(r: &Value) -> Value {
    let g = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let (ty, host, method, template) = (g("type"), g("host"), g("method"), g("template"));
    let external = r.get("external").and_then(Value::as_bool).unwrap_or(false);
    let (sev, sev_name) = severity_of(ty, external);
    let confidence = r.get("confidence").and_then(Value::as_u64).unwrap_or(0);
    let endpoint = format!("{method} {host}{template}");
    let event = g("event");
    let title = match event {
        "external_exposure" => format!("{ty} exposed to an external client by {endpoint}"),
        _ => format!("{ty} in {} {} of {endpoint}", g("location"), g("field")),
    };
    let extra = json!({
        "severity": sev_name,
        "confidence_score": confidence,
        "confidence_id": if confidence >= 85 { 3 } else if confidence >= 50 { 2 } else { 1 },
        "finding_info": {
            "uid": format!("{host} {method} {template} {ty} {} {} {event}", g("location"), g("field")),
            "title": title,
            "types": ["Sensitive Data Exposure", event],
            "first_seen_time": epoch_ms(r.get("ts")),
            "data_sources": ["network traffic (passive)"],
            "analytic": {"name": "apiwatch sensitive-data classifier", "type_id": 1, "type": "Rule", "uid": ty},
        },
        "resources": [{
            "type": "API Endpoint",
            "name": format!("{method} {template}"),
            "uid": endpoint,
            "hostname": host,
            "data": {"host": host, "method": method, "template": template},
        }],
        "evidences": [{
            "data": {
                "data_type": ty,
                "location": g("location"),
                "field": g("field"),
                "status_class": g("status_class"),
                "masked_value": g("masked"),
                "value_hash": g("hash"),
                "detail": r.get("detail"),
            }
        }],
        "unmapped": {"external": external, "event": event},
    });
    let mut v = merged(finding(r, sev, &title), extra);
    strip_nulls(&mut v);
    v
}

/// Detection Finding (2004) for a detection record: the rule with its OWASP category and
/// ATT&CK tactic and technique, the actor, the endpoint, the redacted evidence. A window's
/// closing count (`event` `repeated`) is an Update of the same finding (same uid).
fn detection_finding(r: &Value) -> Value {
    let g = |k: &str| r.pointer(k).and_then(Value::as_str).unwrap_or("");
    let sev = match g("/severity") {
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        "critical" => 5,
        _ => 3,
    };
    let (host, method, template) = (g("/endpoint/host"), g("/endpoint/method"), g("/endpoint/template"));
    let title = format!("{} on {method} {host}{template} from {}", g("/detection"), g("/actor/ip"));
    // "TA0001 Initial Access" → uid TA0001, name Initial Access.
    let split = |s: &str| {
        let (uid, name) = s.split_once(' ').unwrap_or((s, ""));
        json!({"uid": uid, "name": name})
    };
    let repeated = g("/event") == "repeated";
    let side_ip = json!({"ip": g("/actor/ip")});
    let extra = json!({
        "activity_id": if repeated { 2 } else { 1 },
        "activity_name": if repeated { "Update" } else { "Create" },
        "type_uid": if repeated { 200402 } else { 200401 },
        "severity": g("/severity"),
        "count": r.get("count"),
        "start_time": epoch_ms(r.get("first_ts")).or_else(|| epoch_ms(r.get("ts"))),
        "end_time": epoch_ms(r.get("ts")),
        "message": g("/explanation"),
        "finding_info": {
            "uid": g("/id"),
            "title": title,
            "desc": g("/explanation"),
            "types": [g("/owasp")],
            "analytic": {"name": g("/detection"), "type_id": 1, "type": "Rule", "uid": g("/detection")},
            "attacks": [{"tactic": split(g("/mitre/tactic")), "technique": split(g("/mitre/technique")), "version": "14"}],
            "data_sources": ["network traffic (passive)"],
        },
        "src_endpoint": if g("/actor/side") == "client" { side_ip.clone() } else { Value::Null },
        "dst_endpoint": if g("/actor/side") == "server" { side_ip } else { Value::Null },
        "actor": r.pointer("/actor/principal").map(|p| json!({"user": {"name": p}})),
        "resources": [{
            "type": "API Endpoint",
            "name": format!("{method} {template}"),
            "uid": format!("{method} {host}{template}"),
            "hostname": host,
        }],
        "evidences": [{"data": {
            "location": g("/location"),
            "signs": r.get("signs"),
            "evidence": g("/evidence"),
            "http_status": r.get("status"),
        }}],
        "unmapped": {"owasp": g("/owasp"), "event": g("/event")},
    });
    let mut v = merged(finding(r, sev, &title), extra);
    strip_nulls(&mut v);
    v
}

/// OCSF leaves out what is unknown: drop nulls and the objects they empty.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| {
                strip_nulls(x);
                !(x.is_null() || x.as_object().is_some_and(Map::is_empty))
            });
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(kind: &str) -> Vec<Value> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/api-keepalive.pcap.expected.jsonl");
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
            .map(|l| serde_json::from_slice(&convert(l.as_bytes()).expect("converted")).unwrap())
            .collect()
    }

    #[test]
    fn transactions_are_http_activity() {
        let v = records("transaction");
        assert!(!v.is_empty());
        let t = &v[0];
        assert_eq!((t["class_uid"].as_u64(), t["type_uid"].as_u64()), (Some(4002), Some(400203)));
        assert_eq!(t["http_request"]["http_method"], "GET");
        assert_eq!(t["http_request"]["url"]["path"], "/users/1");
        assert_eq!(t["http_request"]["url"]["hostname"], "10.77.0.2");
        assert_eq!(t["http_response"]["code"], 200);
        assert_eq!(t["src_endpoint"]["ip"], "10.77.0.1");
        assert_eq!(t["dst_endpoint"]["port"], 8080);
        assert_eq!(t["metadata"]["version"], VERSION);
        assert_eq!(t["time"].as_i64().map(|ms| ms > 1_700_000_000_000), Some(true));
        // Credentials stay masked, as in our own records.
        let headers = t["http_request"]["http_headers"].to_string();
        assert!(headers.contains("Bearer ***") && !headers.contains("eyJ"), "{headers}");
        assert!(v.iter().any(|t| t["activity_id"] == 6), "a POST is there");
        assert!(!serde_json::to_string(&v).unwrap().contains("null"));
    }

    #[test]
    fn sensitive_data_are_detection_findings() {
        let v = records("sensitive_data");
        assert!(!v.is_empty());
        for f in &v {
            assert_eq!((f["class_uid"].as_u64(), f["type_uid"].as_u64()), (Some(2004), Some(200401)));
            assert!(f["finding_info"]["uid"].is_string() && f["finding_info"]["title"].is_string(), "{f}");
            assert!(f["metadata"]["product"]["name"] == "apiwatch");
        }
        let jwt = v.iter().find(|f| f["finding_info"]["analytic"]["uid"] == "jwt").expect("a JWT finding");
        assert_eq!(jwt["severity_id"], 4);
        assert_eq!(jwt["evidences"][0]["data"]["masked_value"], "eyJ***.eyJ***.***");
        assert_eq!(jwt["resources"][0]["name"], "GET /users/{id}");
        let email = v.iter().find(|f| f["finding_info"]["analytic"]["uid"] == "email").expect("an email finding");
        assert_eq!(email["severity_id"], 2);
    }

    #[test]
    fn detections_are_detection_findings_with_attacks() {
        let v = records("detection");
        assert!(!v.is_empty());
        let f = v.iter().find(|f| f["finding_info"]["analytic"]["uid"] == "jwt_no_expiry").expect("a JWT finding");
        assert_eq!(
            (f["class_uid"].as_u64(), f["type_uid"].as_u64(), f["severity_id"].as_u64()),
            (Some(2004), Some(200401), Some(2))
        );
        assert_eq!(f["finding_info"]["types"][0], "API2:2023 Broken Authentication");
        assert_eq!(f["finding_info"]["attacks"][0]["tactic"]["uid"], "TA0006");
        assert_eq!(f["src_endpoint"]["ip"], "10.77.0.1");
        assert_eq!(f["resources"][0]["name"], "GET /users/{id}");
        let closed = v.iter().find(|f| f["activity_id"] == 2).expect("a window closed with a count");
        assert!(closed["count"].as_u64() > Some(1));
        assert!(closed["dst_endpoint"]["ip"].is_string(), "a version leak is about the server: {closed}");
    }

    #[test]
    fn inventory_records_have_no_ocsf_class() {
        assert!(convert(br#"{"kind":"inventory","event":"new_endpoint"}"#).is_none());
        assert!(convert(b"not json").is_none());
    }
}
