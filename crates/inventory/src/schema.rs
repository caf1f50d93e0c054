//! The shape of JSON bodies: field names, types and nesting, inferred from samples and
//! merged across them. Built straight from the parser's events (no `serde_json::Value`
//! tree), and bounded: depth, fields per object and total nodes are capped.

use crate::smallmap::SmallMap;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const MAX_DEPTH: usize = 8;
pub const MAX_FIELDS: usize = 64;
pub const MAX_NODES: usize = 256;

/// String formats worth telling apart in a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    DateTime,
    Date,
    Uuid,
    Email,
    Uri,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Bit set of JSON types seen: see the `T_*` constants.
    pub types: u8,
    /// Formats of the strings seen, when they all agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Schema>>,
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub properties: SmallMap<Schema>,
    /// Fields beyond the caps were seen and not recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// How many samples had this field (for objects' properties: presence count).
    #[serde(default)]
    pub seen: u64,
}

pub const T_NULL: u8 = 1;
pub const T_BOOL: u8 = 2;
pub const T_INT: u8 = 4;
pub const T_NUM: u8 = 8;
pub const T_STR: u8 = 16;
pub const T_ARR: u8 = 32;
pub const T_OBJ: u8 = 64;

fn format_of(s: &str) -> Option<Format> {
    use crate::segment::{classify, Kind};
    match classify(s) {
        Kind::DateTime => Some(Format::DateTime),
        Kind::Date => Some(Format::Date),
        Kind::Uuid => Some(Format::Uuid),
        Kind::Email => Some(Format::Email),
        _ if s.starts_with("http://") || s.starts_with("https://") => Some(Format::Uri),
        _ => None,
    }
}

impl Schema {
    /// Infer the schema of one JSON document; `None` when it is not JSON.
    pub fn infer(body: &[u8]) -> Option<Schema> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let mut budget = MAX_NODES;
        let s = Seed { depth: 0, budget: &mut budget }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(s)
    }

    pub fn node_count(&self) -> usize {
        1 + self.items.as_ref().map_or(0, |i| i.node_count())
            + self.properties.values().map(Schema::node_count).sum::<usize>()
    }

    /// Merge another sample's schema into this one, within the caps.
    pub fn merge(&mut self, o: &Schema) {
        let mut budget = MAX_NODES.saturating_sub(self.node_count());
        self.merge_in(o, &mut budget);
    }

    fn merge_in(&mut self, o: &Schema, budget: &mut usize) {
        if self.types & T_STR != 0 && o.types & T_STR != 0 && self.format != o.format {
            self.format = None;
        } else if self.types & T_STR == 0 {
            self.format = o.format;
        }
        self.types |= o.types;
        self.seen += o.seen;
        self.truncated |= o.truncated;
        if let Some(oi) = &o.items {
            match &mut self.items {
                Some(i) => i.merge_in(oi, budget),
                None if *budget >= oi.node_count() => {
                    *budget -= oi.node_count();
                    self.items = Some(oi.clone());
                }
                None => self.truncated = true,
            }
        }
        for (k, v) in o.properties.iter() {
            if let Some(mine) = self.properties.get_mut(k) {
                mine.merge_in(v, budget);
            } else if self.properties.len() < MAX_FIELDS && *budget >= v.node_count() {
                *budget -= v.node_count();
                self.properties.insert(k, v.clone());
            } else {
                self.truncated = true;
            }
        }
    }

    /// JSON Schema (OpenAPI 3.1 dialect) for export. `total` is how many samples the parent
    /// object had: fields present in all of them are `required`.
    pub fn to_json_schema(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut types: Vec<Value> = Vec::new();
        for (bit, name) in [
            (T_OBJ, "object"),
            (T_ARR, "array"),
            (T_STR, "string"),
            (T_INT, "integer"),
            (T_NUM, "number"),
            (T_BOOL, "boolean"),
            (T_NULL, "null"),
        ] {
            if self.types & bit != 0 && !(bit == T_INT && self.types & T_NUM != 0) {
                types.push(json!(name));
            }
        }
        let mut m = Map::new();
        match types.len() {
            0 => {}
            1 => {
                m.insert("type".into(), types.pop().unwrap_or(Value::Null));
            }
            _ => {
                m.insert("type".into(), Value::Array(types));
            }
        }
        if let Some(f) = self.format {
            m.insert("format".into(), serde_json::to_value(f).unwrap_or(Value::Null));
        }
        if let Some(i) = &self.items {
            m.insert("items".into(), i.to_json_schema());
        }
        if !self.properties.is_empty() {
            let props: Map<String, Value> =
                self.properties.iter().map(|(k, v)| (k.to_string(), v.to_json_schema())).collect();
            m.insert("properties".into(), Value::Object(props));
            let objects = self.seen;
            let req: Vec<Value> = self
                .properties
                .iter()
                .filter(|(_, v)| v.seen >= objects && objects > 0)
                .map(|(k, _)| json!(k))
                .collect();
            if !req.is_empty() {
                m.insert("required".into(), Value::Array(req));
            }
        }
        Value::Object(m)
    }
}

struct Seed<'b> {
    depth: usize,
    budget: &'b mut usize,
}

fn leaf(types: u8) -> Schema {
    Schema { types, seen: 1, ..Schema::default() }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Schema;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Schema, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Schema;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Schema, E> {
        Ok(leaf(T_NULL))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Schema, E> {
        Ok(leaf(T_BOOL))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Schema, E> {
        Ok(leaf(T_INT))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Schema, E> {
        Ok(leaf(T_INT))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Schema, E> {
        Ok(leaf(T_NUM))
    }
    fn visit_str<E>(self, s: &str) -> Result<Schema, E> {
        Ok(Schema { format: format_of(s), ..leaf(T_STR) })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Schema, A::Error> {
        let mut s = leaf(T_ARR);
        let deep = self.depth >= MAX_DEPTH;
        while let Some(item) = if deep || *self.budget == 0 {
            seq.next_element::<de::IgnoredAny>()?.map(|_| None)
        } else {
            *self.budget -= 1;
            seq.next_element_seed(Seed { depth: self.depth + 1, budget: self.budget })?.map(Some)
        } {
            match (item, &mut s.items) {
                (Some(i), Some(mine)) => {
                    let seen = mine.seen;
                    let mut b = usize::MAX;
                    mine.merge_in(&i, &mut b);
                    // Items count once per array, not once per element.
                    mine.seen = seen.max(1);
                }
                (Some(i), None) => s.items = Some(Box::new(i)),
                (None, _) => s.truncated = true,
            }
        }
        Ok(s)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Schema, A::Error> {
        let mut s = leaf(T_OBJ);
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.depth >= MAX_DEPTH
                || *self.budget == 0
                || s.properties.len() >= MAX_FIELDS
                || s.properties.contains_key(k.as_ref())
            {
                map.next_value::<de::IgnoredAny>()?;
                s.truncated = true;
                continue;
            }
            *self.budget -= 1;
            let v = map.next_value_seed(Seed { depth: self.depth + 1, budget: self.budget })?;
            s.properties.insert(&k, v);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_and_merges() {
        let mut a =
            Schema::infer(br#"{"id":1,"name":"x","tags":["a"],"when":"2024-01-01T00:00:00Z","o":{"k":null}}"#).unwrap();
        let b = Schema::infer(br#"{"id":2.5,"name":"y","extra":true}"#).unwrap();
        a.merge(&b);
        assert_eq!(a.seen, 2);
        assert_eq!(a.properties["id"].types, T_INT | T_NUM);
        assert_eq!(a.properties["name"].seen, 2);
        assert_eq!(a.properties["extra"].seen, 1);
        assert_eq!(a.properties["when"].format, Some(Format::DateTime));
        assert_eq!(a.properties["tags"].items.as_ref().unwrap().types, T_STR);
        let js = a.to_json_schema();
        assert_eq!(js["required"], serde_json::json!(["id", "name"]));
        assert_eq!(js["properties"]["id"]["type"], "number");
        assert!(Schema::infer(b"not json").is_none());
        assert!(Schema::infer(br#"{"a":1} trailing"#).is_none());
    }

    #[test]
    fn bounded() {
        let wide = format!("{{{}}}", (0..500).map(|i| format!("\"f{i}\":{i}")).collect::<Vec<_>>().join(","));
        let s = Schema::infer(wide.as_bytes()).unwrap();
        assert_eq!(s.properties.len(), MAX_FIELDS);
        assert!(s.truncated);
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let s = Schema::infer(deep.as_bytes()).unwrap();
        assert!(s.node_count() <= MAX_DEPTH + 2);
        let mut many = Schema::default();
        for i in 0..50 {
            let doc =
                format!("{{{}}}", (0..40).map(|j| format!("\"g{i}_{j}\":{{\"x\":1}}")).collect::<Vec<_>>().join(","));
            many.merge(&Schema::infer(doc.as_bytes()).unwrap());
        }
        assert!(many.node_count() <= MAX_NODES + 1);
    }
}
