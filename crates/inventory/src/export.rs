//! Reports of the inventory: a JSON document of every endpoint and declared operation, and
//! an OpenAPI 3.1 document per host reconstructed from traffic.

use crate::endpoint::class_of;
use crate::inventory::{EndpointView, Inventory};
use crate::segment::Kinds;
use apiwatch_model::format_rfc3339_micros;
use serde_json::{json, Map, Value};

fn time(ts: i64) -> Value {
    json!(format_rfc3339_micros(ts))
}

/// Path parameters of a view: one entry per variable position.
fn path_params(inv: &Inventory, v: &EndpointView<'_>) -> Vec<Value> {
    let Some(h) = inv.hosts.get(v.host) else { return Vec::new() };
    h.trie
        .chain(v.node)
        .into_iter()
        .filter_map(|n| h.trie.nodes[n as usize].evidence.as_deref())
        .map(|ev| {
            json!({
                "kinds": ev.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "type": ev.kinds.summary().name(),
                "examples": ev.examples,
                "learned": ev.learned,
                "confidence": (ev.confidence() * 100.0).round() / 100.0,
            })
        })
        .collect()
}

/// One endpoint as a JSON object (the `inventory show --format json` element).
pub fn endpoint_json(inv: &Inventory, v: &EndpointView<'_>) -> Value {
    let e = v.endpoint;
    let classes = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let by_class = |a: &[u64; 6]| -> Value {
        Value::Object(classes.iter().zip(a).filter(|(_, n)| **n > 0).map(|(c, n)| (c.to_string(), json!(n))).collect())
    };
    let query: Map<String, Value> = e
        .query
        .iter()
        .map(|(k, ks)| {
            (
                k.to_string(),
                json!({"type": ks.summary().name(), "kinds": ks.iter().map(|k| k.name()).collect::<Vec<_>>()}),
            )
        })
        .collect();
    let posture = inv.posture(v.host, v.method, &v.template, e);
    json!({
        "host": v.host,
        "method": v.method,
        "template": v.template,
        "confidence": v.confidence,
        "path_params": path_params(inv, v),
        "first_seen": time(e.first_seen),
        "last_seen": time(e.last_seen),
        "calls": e.count,
        "status": e.status.by,
        "latency_us": {"p50": e.latency.quantile(0.5), "p90": e.latency.quantile(0.9), "p99": e.latency.quantile(0.99)},
        "request_types": e.req_types.by,
        "response_types": e.resp_types.by,
        "query": query,
        "request_schema": e.req_schema.as_ref().map(|s| s.to_json_schema()),
        "response_schema": e.resp_schema.as_ref().map(|s| s.to_json_schema()),
        "auth": e.auth.by,
        "unauthenticated": by_class(&e.unauthenticated),
        "authenticated": by_class(&e.authenticated),
        "unauthenticated_2xx_share": e.unauthenticated_success_share(),
        "clients": {"internal_calls": e.internal_calls, "external_calls": e.external_calls,
                    "last_external": e.last_external.map(time)},
        "cleartext_calls": e.cleartext_calls,
        "posture": posture,
        "sensitive_data": e.sensitive.iter().map(|x| json!({
            "type": x.ty, "location": x.location, "field": x.field, "count": x.count,
            "first_seen": time(x.first_seen), "last_seen": time(x.last_seen), "confidence": x.confidence,
            "status_classes": x.status_classes.by, "external": x.external, "example": x.example,
            "distinct_values": x.hashes.len(), "detail": x.detail,
        })).collect::<Vec<_>>(),
        "classifier_calls_seen": e.sensitive_seen,
    })
}

/// The whole inventory as one JSON document.
pub fn inventory_json(inv: &Inventory) -> Value {
    let endpoints: Vec<Value> = inv.views().iter().map(|v| endpoint_json(inv, v)).collect();
    let hosts: Vec<Value> = inv
        .hosts
        .iter()
        .map(|(n, h)| json!({"host": n, "endpoints": h.endpoints, "first_seen": time(h.first_seen), "last_seen": time(h.last_seen)}))
        .collect();
    let declared: Vec<Value> = inv
        .declared_activity()
        .into_iter()
        .map(|d| {
            json!({"spec": d.spec, "method": d.method, "path": d.path, "deprecated": d.deprecated,
                   "activity": d.activity, "last_seen": d.last_seen.map(time), "calls": d.calls})
        })
        .collect();
    json!({
        "clock": if inv.clock == i64::MIN { Value::Null } else { time(inv.clock) },
        "hosts": hosts,
        "endpoints": endpoints,
        "declared": declared,
        "counters": inv.counters,
        "sensitive_counters": inv.sensitive.as_ref().map(|s| &s.counters),
    })
}

fn kind_schema(ks: Kinds) -> Value {
    let (t, f) = ks.summary().openapi();
    match f {
        Some(f) => json!({"type": t, "format": f}),
        None => json!({"type": t}),
    }
}

/// An OpenAPI 3.1 document for `host`, from what was observed.
pub fn openapi(inv: &Inventory, host: &str) -> Option<Value> {
    let h = inv.hosts.get(host)?;
    let mut paths = Map::new();
    let mut schemes = Map::new();
    for v in inv.views().into_iter().filter(|v| v.host == host) {
        let e = v.endpoint;
        // Name variables by position: {id}, {id2}, ... (OpenAPI wants them unique per path).
        let mut params = Vec::new();
        let mut path = String::new();
        let mut n = 0;
        for node in h.trie.chain(v.node) {
            let node = &h.trie.nodes[node as usize];
            path.push('/');
            match &node.evidence {
                Some(ev) => {
                    n += 1;
                    let name = if n == 1 { "id".to_string() } else { format!("id{n}") };
                    path.push_str(&format!("{{{name}}}{}", &node.label["{id}".len()..]));
                    params.push(json!({"name": name, "in": "path", "required": true, "schema": kind_schema(ev.kinds)}));
                }
                None => path.push_str(&node.label),
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        for (q, ks) in e.query.iter() {
            params.push(json!({"name": q, "in": "query", "required": false, "schema": kind_schema(*ks)}));
        }
        let mut op = Map::new();
        op.insert("operationId".into(), json!(format!("{} {}", v.method, v.template)));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(t) = e.req_types.by.iter().max_by_key(|x| x.1).map(|x| x.0) {
            let schema = e.req_schema.as_ref().map(|s| s.to_json_schema()).unwrap_or(json!({}));
            op.insert("requestBody".into(), json!({"content": {t: {"schema": schema}}}));
        }
        let mut responses = Map::new();
        for code in e.status.by.keys().filter(|c| *c != "none") {
            let mut r = Map::new();
            r.insert("description".into(), json!(format!("observed {code}")));
            let success = code.parse::<u16>().map(class_of) == Ok(2);
            if let (true, Some(t)) = (success, e.resp_types.by.iter().max_by_key(|x| x.1).map(|x| x.0)) {
                let schema = e.resp_schema.as_ref().map(|s| s.to_json_schema()).unwrap_or(json!({}));
                r.insert("content".into(), json!({t: {"schema": schema}}));
            }
            responses.insert(code.to_string(), Value::Object(r));
        }
        if responses.is_empty() {
            responses.insert("default".into(), json!({"description": "no response observed"}));
        }
        op.insert("responses".into(), Value::Object(responses));
        let mut security = Vec::new();
        for label in e.auth.by.keys() {
            let (name, scheme) = match label.split(':').collect::<Vec<_>>().as_slice() {
                ["none"] => {
                    security.push(json!({}));
                    continue;
                }
                ["basic"] => ("basicAuth".to_string(), json!({"type": "http", "scheme": "basic"})),
                ["bearer"] => ("bearerAuth".to_string(), json!({"type": "http", "scheme": "bearer"})),
                ["jwt", alg] => (
                    "bearerJwt".to_string(),
                    json!({"type": "http", "scheme": "bearer", "bearerFormat": format!("JWT ({alg})")}),
                ),
                ["scheme", s] => (format!("{s}Auth"), json!({"type": "http", "scheme": s})),
                ["apikey", place, n] => {
                    (format!("apiKey_{place}_{n}"), json!({"type": "apiKey", "in": place, "name": n}))
                }
                ["session", _, n] => (format!("session_{n}"), json!({"type": "apiKey", "in": "cookie", "name": n})),
                _ => continue,
            };
            if !security.iter().any(|s: &Value| s.get(&name).is_some()) {
                security.push(json!({ name.clone(): [] }));
            }
            schemes.insert(name, scheme);
        }
        if !security.is_empty() {
            op.insert("security".into(), Value::Array(security));
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        if let Some(o) = entry.as_object_mut() {
            o.insert(v.method.to_ascii_lowercase(), Value::Object(op));
        }
    }
    Some(json!({
        "openapi": "3.1.0",
        "info": {"title": format!("{host} (observed by apiwatch)"), "version": "observed"},
        "servers": [{"url": format!("http://{host}")}],
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }))
}
