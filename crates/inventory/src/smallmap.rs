//! A small sorted map in one exact-size vector: the many tiny maps of an endpoint (status
//! codes, content types, schema fields) cost a few dozen bytes each instead of a B-tree
//! node (several hundred). Serialized as a JSON object.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub struct SmallMap<V>(Vec<(Box<str>, V)>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<V> SmallMap<V> {
    fn find(&self, k: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.as_ref().cmp(k))
    }
    pub fn get(&self, k: &str) -> Option<&V> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        match self.find(k) {
            Ok(i) => Some(&mut self.0[i].1),
            Err(_) => None,
        }
    }
    pub fn contains_key(&self, k: &str) -> bool {
        self.find(k).is_ok()
    }
    /// Insert or replace; keeps the vector exactly sized.
    pub fn insert(&mut self, k: &str, v: V) {
        match self.find(k) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (k.into(), v));
            }
        }
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<V> std::ops::Index<&str> for SmallMap<V> {
    type Output = V;
    fn index(&self, k: &str) -> &V {
        self.get(k).expect("key present")
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = SmallMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<SmallMap<V>, A::Error> {
                let mut m = SmallMap::default();
                while let Some((k, v)) = a.next_entry::<String, V>()? {
                    m.insert(&k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_round_trips() {
        let mut m = SmallMap::default();
        m.insert("b", 2u64);
        m.insert("a", 1);
        m.insert("b", 3);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"a":1,"b":3}"#);
        let back: SmallMap<u64> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
    }
}
