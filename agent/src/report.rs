//! `apiwatch inventory show|export`: the stored inventory as a table, JSON or OpenAPI.

use anyhow::{bail, Result};
use apiwatch_inventory::export::{inventory_json, openapi};
use apiwatch_inventory::inventory::Standing;
use apiwatch_inventory::Inventory;
use apiwatch_model::format_rfc3339_micros;
use std::fmt::Write;

pub fn render(inv: &Inventory, format: &str, host: Option<&str>) -> Result<String> {
    if let Some(h) = host {
        if !inv.hosts.contains_key(h) {
            bail!("no host {h:?} in the inventory (hosts: {})", hosts(inv));
        }
    }
    match format {
        "json" => {
            let mut v = inventory_json(inv);
            if let (Some(h), Some(list)) = (host, v.get_mut("endpoints").and_then(|e| e.as_array_mut())) {
                list.retain(|e| e["host"] == h);
            }
            Ok(serde_json::to_string_pretty(&v)? + "\n")
        }
        "openapi" => {
            let names: Vec<&str> = match host {
                Some(h) => vec![h],
                None => inv.hosts.keys().map(|k| k.as_ref()).collect(),
            };
            let v = if names.len() == 1 {
                openapi(inv, names[0]).unwrap_or_default()
            } else {
                serde_json::Value::Object(
                    names.iter().filter_map(|h| Some((h.to_string(), openapi(inv, h)?))).collect(),
                )
            };
            Ok(serde_json::to_string_pretty(&v)? + "\n")
        }
        _ => Ok(table(inv, host)),
    }
}

fn hosts(inv: &Inventory) -> String {
    inv.hosts.keys().map(|k| k.as_ref()).collect::<Vec<_>>().join(", ")
}

fn table(inv: &Inventory, host: Option<&str>) -> String {
    let mut rows: Vec<[String; 10]> = vec![[
        "HOST",
        "METHOD",
        "TEMPLATE",
        "CALLS",
        "STATUS",
        "P50 ms",
        "AUTH",
        "NO-AUTH 2xx",
        "EXTERNAL",
        "STANDING",
    ]
    .map(String::from)];
    for v in inv.views().into_iter().filter(|v| host.is_none_or(|h| h == v.host)) {
        let e = v.endpoint;
        let mut status: Vec<(&str, &u64)> = e.status.by.iter().collect();
        status.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let status = status.iter().take(3).map(|(c, n)| format!("{c}:{n}")).collect::<Vec<_>>().join(" ");
        let p50 = e.latency.quantile(0.5).map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0));
        let auth = e.auth.by.keys().collect::<Vec<_>>().join(",");
        let noauth = e.unauthenticated_success_share().map_or("-".into(), |s| format!("{:.0}%", s * 100.0));
        let ext = match e.last_external {
            Some(t) => format_rfc3339_micros(t)[..10].to_string(),
            None => "no".into(),
        };
        let p = inv.posture(v.host, v.method, &v.template, e);
        let standing = match p.standing {
            Standing::Unknown => "-".to_string(),
            s => serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        };
        let template = if v.confidence < 0.8 {
            format!("{} ({:.0}%)", v.template, v.confidence * 100.0)
        } else {
            v.template.clone()
        };
        rows.push([
            v.host.to_string(),
            v.method.to_string(),
            template,
            e.count.to_string(),
            status,
            p50,
            auth,
            noauth,
            ext,
            standing,
        ]);
    }
    let mut widths = [0usize; 10];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let declared = inv.declared_activity();
    if !declared.is_empty() {
        let count = |a: &str| declared.iter().filter(|d| d.activity == a).count();
        let _ = writeln!(
            out,
            "\ndeclared operations: {} ({} active, {} inactive, {} never seen)",
            declared.len(),
            count("active"),
            count("inactive"),
            count("never_seen")
        );
        for d in declared.iter().filter(|d| d.activity == "inactive") {
            let last = d.last_seen.map(format_rfc3339_micros).unwrap_or_default();
            let _ = writeln!(out, "  inactive: {} {} ({}; last call {last})", d.method, d.path, d.spec);
        }
    }
    let c = &inv.counters;
    let _ = writeln!(
        out,
        "\n{} endpoints on {} hosts; {} observations; dropped at caps: {} hosts, {} endpoints; {} capped nodes; {} endpoints merged into templates, {} undone with a template that stood for names",
        inv.endpoints,
        inv.hosts.len(),
        c.observations,
        c.hosts_dropped_cap,
        c.endpoints_dropped_cap,
        c.nodes_capped,
        c.endpoints_merged,
        c.endpoints_undone
    );
    out
}
