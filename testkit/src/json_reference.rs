//! The reference the JSON scan is checked against: serde_json's grammar and string decoding,
//! with numbers of any size (read as text, never converted), plus the contract's one extra rule,
//! that a field the pipeline reads appears at most once in its object. Shared by the scan's unit
//! tests and the `json_body` fuzz target.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Whether `text` is one JSON text with no picked field (a path of keys from `paths`) twice in
/// one object. Nesting is not limited here: callers bound it themselves.
pub fn accepts(text: &[u8], paths: &[&[&str]]) -> bool {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    deserializer.disable_recursion_limit();
    // A raw value is only checked for its grammar; `valid` then decodes its strings.
    let Ok(raw) = <&RawValue>::deserialize(&mut deserializer) else {
        return false;
    };
    deserializer.end().is_ok() && valid(raw, paths, 0)
}

/// Every string in `value` decodes (paired surrogates), and no picked field repeats.
fn valid(value: &RawValue, paths: &[&[&str]], level: usize) -> bool {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Ok(Members(members)) = parse::<Members<'_>>(text) else {
                return false;
            };
            let mut seen = HashSet::new();
            members.into_iter().all(|(key, value)| {
                let deeper: Vec<&[&str]> = paths
                    .iter()
                    .copied()
                    .filter(|path| path.get(level) == Some(&key.as_str()))
                    .collect();
                (deeper.is_empty() || seen.insert(key)) && valid(value, &deeper, level + 1)
            })
        }
        Some(b'[') => parse::<Vec<&RawValue>>(text)
            .is_ok_and(|items| items.into_iter().all(|item| valid(item, &[], 0))),
        Some(b'"') => parse::<String>(text).is_ok(),
        _ => true,
    }
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    T::deserialize(&mut deserializer)
}

/// An object's members in order, duplicates kept.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}
