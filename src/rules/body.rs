//! The body as a tree of values, for the triggers that read it with rules: built from bytes the
//! JSON step has already proved to be one well-formed JSON text with no key twice in an
//! object, and only as far as the rules read it.

use std::borrow::Cow;

use crate::json;

/// A JSON value whose strings borrow from the body where they have no escapes. Numbers keep
/// their text: each consumer reads them its own way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'b> {
    Null,
    Bool(bool),
    Number(&'b str),
    String(Cow<'b, str>),
    Array(Vec<Json<'b>>),
    Object(Vec<(Cow<'b, str>, Json<'b>)>),
}

/// A number's value in the types CEL and templates have: a whole number that fits `i64` is an
/// int, else one that fits `u64` a uint, else a double (infinite when too large for one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Uint(u64),
    Double(f64),
}

impl Number {
    pub(crate) fn parse(text: &str) -> Number {
        if !text.contains(['.', 'e', 'E']) {
            if let Ok(int) = text.parse() {
                return Number::Int(int);
            }
            if let Ok(uint) = text.parse() {
                return Number::Uint(uint);
            }
        }
        // Rust's parser gives ±infinity past the largest double, never an error, for the
        // grammar the scan validated.
        Number::Double(text.parse().unwrap_or(f64::NAN))
    }
}

/// The parts of `body` that some rule reads: a tree of field names, each node read whole or
/// only through some of its fields. A rule that reads `body.issue.key` and
/// `body.issue.fields.labels` needs nothing else of the body, however large it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Paths {
    whole: bool,
    /// In [`order`].
    fields: Vec<(Box<str>, Paths)>,
}

impl Paths {
    /// The whole value.
    pub(crate) fn whole() -> Paths {
        Paths {
            whole: true,
            fields: Vec::new(),
        }
    }

    /// Adds the value at `path` (field names from the top), read whole.
    pub(crate) fn insert<'p>(&mut self, path: impl IntoIterator<Item = &'p str>) {
        let mut node = self;
        for field in path {
            if node.whole {
                return;
            }
            let at = match node
                .fields
                .binary_search_by(|(name, _)| order(name.as_bytes(), field.as_bytes()))
            {
                Ok(at) => at,
                Err(at) => {
                    node.fields.insert(at, (field.into(), Paths::default()));
                    at
                }
            };
            node = &mut node.fields[at].1;
        }
        *node = Paths::whole();
    }

    /// Adds everything `other` reads.
    pub(crate) fn merge(&mut self, other: &Paths) {
        if self.whole {
            return;
        }
        if other.whole {
            *self = Paths::whole();
            return;
        }
        for (name, paths) in &other.fields {
            match self
                .fields
                .binary_search_by(|(mine, _)| order(mine.as_bytes(), name.as_bytes()))
            {
                Ok(at) => self.fields[at].1.merge(paths),
                Err(at) => self.fields.insert(at, (name.clone(), paths.clone())),
            }
        }
    }

    /// Nothing at all.
    pub(crate) fn is_empty(&self) -> bool {
        !self.whole && self.fields.is_empty()
    }

    fn field(&self, name: &[u8]) -> Option<&Paths> {
        self.fields
            .binary_search_by(|(field, _)| order(field.as_bytes(), name))
            .ok()
            .map(|at| &self.fields[at].1)
    }
}

/// The order of the fields of a [`Paths`] node: by length, then by bytes, so that most
/// comparisons with a body's key are one of lengths.
fn order(field: &[u8], key: &[u8]) -> std::cmp::Ordering {
    field.len().cmp(&key.len()).then_with(|| field.cmp(key))
}

/// The parts of `body` that `paths` names (all of it when `paths` is whole). `body` is
/// already validated as JSON (its keys unique, for a trigger with rules); an empty body is
/// `null`.
pub(crate) fn parse<'b>(body: &'b [u8], paths: &Paths) -> Json<'b> {
    if body.is_empty() {
        return Json::Null;
    }
    let mut reader = Reader { bytes: body, at: 0 };
    reader.skip_whitespace();
    reader.value(paths)
}

/// A reader of validated JSON that builds what it is asked for and skips the rest. Recursion
/// is bounded by the scan's nesting limit.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn peek(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), b' ' | b'\n' | b'\r' | b'\t') {
            self.at += 1;
        }
    }

    /// The value at the cursor as far as `paths` reads it: an object only with the fields
    /// `paths` names, anything else whole (so that a field of a list or a number fails as it
    /// would on the whole body).
    fn value(&mut self, paths: &Paths) -> Json<'b> {
        match self.peek() {
            b'{' if !paths.whole => self.some_fields(paths),
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Json::String(self.string()),
            b't' => {
                self.at += 4;
                Json::Bool(true)
            }
            b'f' => {
                self.at += 5;
                Json::Bool(false)
            }
            b'n' => {
                self.at += 4;
                Json::Null
            }
            _ => Json::Number(self.number()),
        }
    }

    /// Calls `member` with each key of the object at the cursor (its bytes between the quotes,
    /// and whether it has escapes), the cursor on its value; the member reads or skips the
    /// value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'b [u8], bool)) {
        self.at += 1;
        self.skip_whitespace();
        if self.peek() == b'}' {
            self.at += 1;
            return;
        }
        loop {
            let start = self.at;
            let (end, escaped) = json::string_end(self.bytes, start);
            self.at = end;
            let key = self
                .bytes
                .get(start + 1..end.saturating_sub(1))
                .unwrap_or_default();
            self.skip_whitespace();
            self.at += 1; // the colon
            self.skip_whitespace();
            member(self, key, escaped);
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b'}' {
                return;
            }
        }
    }

    fn object(&mut self) -> Json<'b> {
        let whole = Paths::whole();
        let mut members = Vec::new();
        self.members(|reader, key, escaped| {
            let value = reader.value(&whole);
            members.push((text(key, escaped), value));
        });
        Json::Object(members)
    }

    fn some_fields(&mut self, paths: &Paths) -> Json<'b> {
        let mut members = Vec::new();
        self.members(|reader, raw, escaped| {
            // Most keys are compared as they are in the body; one with escapes unescaped.
            let unescaped = escaped.then(|| text(raw, true));
            let name = unescaped.as_deref().map_or(raw, str::as_bytes);
            match paths.field(name) {
                Some(wanted) => {
                    let value = reader.value(wanted);
                    members.push((unescaped.unwrap_or_else(|| text(raw, false)), value));
                }
                None => reader.at = json::value_end(reader.bytes, reader.at),
            }
        });
        Json::Object(members)
    }

    fn array(&mut self) -> Json<'b> {
        self.at += 1;
        self.skip_whitespace();
        let mut elements = Vec::new();
        if self.peek() == b']' {
            self.at += 1;
            return Json::Array(elements);
        }
        let whole = Paths::whole();
        loop {
            elements.push(self.value(&whole));
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b']' {
                return Json::Array(elements);
            }
        }
    }

    /// The string whose opening quote is at the cursor, borrowed when it has no escapes.
    fn string(&mut self) -> Cow<'b, str> {
        let start = self.at;
        let (end, escaped) = json::string_end(self.bytes, start);
        self.at = end;
        text(
            self.bytes
                .get(start + 1..end.saturating_sub(1))
                .unwrap_or_default(),
            escaped,
        )
    }

    fn number(&mut self) -> &'b str {
        let start = self.at;
        while matches!(self.peek(), b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("0")
    }
}

/// The text of a string's bytes between its quotes, validated by the scan: borrowed, or
/// unescaped when it has escapes.
fn text(raw: &[u8], escaped: bool) -> Cow<'_, str> {
    if escaped {
        // serde_json unescapes, as the scan does for picked fields.
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        Cow::Owned(serde_json::from_slice(&quoted).unwrap_or_default())
    } else {
        Cow::Borrowed(std::str::from_utf8(raw).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_every_kind_of_value() {
        let body = br#" {"a": [1, -2.5e3, "x\"y", true, false, null, {}], "b": {"c": "d"}} "#;
        let tree = parse(body, &Paths::whole());
        let Json::Object(members) = tree else {
            panic!("an object")
        };
        assert_eq!(members[0].0, "a");
        assert_eq!(
            members[0].1,
            Json::Array(vec![
                Json::Number("1"),
                Json::Number("-2.5e3"),
                Json::String("x\"y".into()),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Object(vec![]),
            ])
        );
        assert_eq!(parse(b"", &Paths::whole()), Json::Null);
        assert_eq!(parse(b" 7 ", &Paths::whole()), Json::Number("7"));
    }

    #[test]
    fn numbers_take_the_narrowest_cel_type() {
        assert_eq!(Number::parse("-7"), Number::Int(-7));
        assert_eq!(
            Number::parse("18446744073709551615"),
            Number::Uint(u64::MAX)
        );
        assert_eq!(Number::parse("1.0"), Number::Double(1.0));
        assert_eq!(Number::parse("1e400"), Number::Double(f64::INFINITY));
        assert_eq!(Number::parse("-1e400"), Number::Double(f64::NEG_INFINITY));
        assert_eq!(
            Number::parse("-99999999999999999999"),
            Number::Double(-1e20)
        );
    }

    /// The JSON value of a tree, to compare with serde_json's reading.
    fn to_serde(json: &Json<'_>) -> serde_json::Value {
        match json {
            Json::Null => serde_json::Value::Null,
            Json::Bool(value) => (*value).into(),
            Json::Number(text) => serde_json::from_str(text).unwrap(),
            Json::String(text) => text.as_ref().into(),
            Json::Array(elements) => elements.iter().map(to_serde).collect(),
            Json::Object(members) => members
                .iter()
                .map(|(key, value)| (key.to_string(), to_serde(value)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z{}\\[\\]\\\\\"é ]{0,40}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[ab\\\\\"]{1,2}", inner, 0..8)
                    .prop_map(|members| members.into_iter().collect()),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_what_serde_json_reads_and_only_what_paths_name(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            prop_assert_eq!(to_serde(&parse(&text, &Paths::whole())), value.clone());
            // Only `a` and `b.a`; everything else is skipped.
            let mut paths = Paths::default();
            paths.insert(["a"]);
            paths.insert(["b", "a"]);
            let mut expected = value.clone();
            if let Some(members) = expected.as_object_mut() {
                members.retain(|key, _| key == "a" || key == "b");
                if let Some(inner) = members.get_mut("b").and_then(|b| b.as_object_mut()) {
                    inner.retain(|key, _| key == "a");
                }
            }
            prop_assert_eq!(to_serde(&parse(&text, &paths)), expected);
        }
    }

    #[test]
    fn only_the_parts_rules_read_are_built() {
        let mut paths = Paths::default();
        paths.insert(["issue", "key"]);
        paths.insert(["issue", "fields", "labels"]);
        paths.insert(["missing", "x"]);
        let body = br#"{"user":{"name":"a"},"issue":{"id":1,"key":"K-1","fields":{"labels":["x"],"big":[1,2,3]}},"list":[1]}"#;
        assert_eq!(
            parse(body, &paths),
            Json::Object(vec![(
                "issue".into(),
                Json::Object(vec![
                    ("key".into(), Json::String("K-1".into())),
                    (
                        "fields".into(),
                        Json::Object(vec![(
                            "labels".into(),
                            Json::Array(vec![Json::String("x".into())])
                        )])
                    ),
                ])
            )])
        );
        // A field of something that is not an object: the value whole.
        let mut paths = Paths::default();
        paths.insert(["list", "x"]);
        assert_eq!(
            parse(br#"{"list":[1],"n":2}"#, &paths),
            Json::Object(vec![("list".into(), Json::Array(vec![Json::Number("1")]))])
        );
        // Paths merge, and a whole node covers the paths below it.
        let mut merged = Paths::default();
        merged.insert(["a", "b"]);
        let mut other = Paths::default();
        other.insert(["a"]);
        merged.merge(&other);
        let mut expected = Paths::default();
        expected.insert(["a"]);
        assert_eq!(merged, expected);
    }
}
