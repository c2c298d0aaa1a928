//! The body as a tree of values, for the triggers that read it with rules: built from bytes the
//! JSON step has already proved to be one well-formed JSON text, refusing any object that
//! holds a key twice (the filter and the agent must never read different values).

use std::borrow::Cow;
use std::collections::HashSet;

use crate::json::{JsonError, locate};

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

/// Objects with more keys than this find duplicates with a set rather than by comparing.
const LINEAR_SEARCH_KEYS: usize = 16;

/// The parts of `body` that some rule reads: a tree of field names, each node read whole or
/// only through some of its fields. A rule that reads `body.issue.key` and
/// `body.issue.fields.labels` needs nothing else of the body, however large it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Paths {
    whole: bool,
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
            let at = match node.fields.iter().position(|(name, _)| &**name == field) {
                Some(at) => at,
                None => {
                    node.fields.push((field.into(), Paths::default()));
                    node.fields.len() - 1
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
            match self.fields.iter_mut().find(|(mine, _)| mine == name) {
                Some((_, mine)) => mine.merge(paths),
                None => self.fields.push((name.clone(), paths.clone())),
            }
        }
    }

    fn field(&self, name: &str) -> Option<&Paths> {
        self.fields
            .iter()
            .find(|(field, _)| &**field == name)
            .map(|(_, paths)| paths)
    }
}

/// The parts of `body` that `paths` names (all of it when `paths` is whole, nothing when
/// `None`), after checking the whole body: no object may hold a key twice. `body` is already
/// validated as JSON; an empty body is `null`.
pub(crate) fn parse<'b>(body: &'b [u8], paths: Option<&Paths>) -> Result<Json<'b>, JsonError> {
    if body.is_empty() {
        return Ok(Json::Null);
    }
    let mut reader = Reader {
        bytes: body,
        at: 0,
        keys: Vec::new(),
    };
    reader.skip_whitespace();
    let value = reader.value(paths).map_err(|at| {
        locate(
            body,
            at,
            "duplicate key: an object holds the same key twice, which a trigger with rules refuses",
        )
    })?;
    Ok(value.unwrap_or(Json::Null))
}

/// A reader of validated JSON; its only error is a duplicate key, at the offset of the second.
/// Recursion is bounded by the scan's nesting limit.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    /// The keys of the objects open around the cursor, innermost last: one buffer for all.
    keys: Vec<Cow<'b, str>>,
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

    /// The value at the cursor as far as `paths` reads it: all of it, some of its fields, or
    /// (`None`) only checked.
    fn value(&mut self, paths: Option<&Paths>) -> Result<Option<Json<'b>>, usize> {
        // Anything but an object is built whole when any of it is read: a field of a list or a
        // number then fails as it would on the whole body.
        let build = paths.is_some();
        match self.peek() {
            b'{' => self.object(paths),
            b'[' => self.array(build),
            b'"' => {
                let text = self.string(build);
                Ok(build.then_some(Json::String(text)))
            }
            b't' => {
                self.at += 4;
                Ok(build.then_some(Json::Bool(true)))
            }
            b'f' => {
                self.at += 5;
                Ok(build.then_some(Json::Bool(false)))
            }
            b'n' => {
                self.at += 4;
                Ok(build.then_some(Json::Null))
            }
            _ => {
                let number = self.number();
                Ok(build.then_some(Json::Number(number)))
            }
        }
    }

    fn object(&mut self, paths: Option<&Paths>) -> Result<Option<Json<'b>>, usize> {
        self.at += 1;
        self.skip_whitespace();
        let whole = paths.is_some_and(|paths| paths.whole);
        let mut members: Option<Vec<(Cow<'b, str>, Json<'b>)>> = paths.map(|_| Vec::new());
        if self.peek() == b'}' {
            self.at += 1;
            return Ok(members.map(Json::Object));
        }
        let first_key = self.keys.len();
        let mut set: Option<HashSet<Cow<'b, str>>> = None;
        loop {
            let key_at = self.at;
            let key = self.string(true);
            let own = &self.keys[first_key..];
            let duplicate = match &mut set {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let duplicate = own.contains(&key);
                    if own.len() == LINEAR_SEARCH_KEYS {
                        set = Some(own.iter().cloned().chain([key.clone()]).collect());
                    }
                    duplicate
                }
            };
            if duplicate {
                return Err(key_at);
            }
            self.skip_whitespace();
            self.at += 1; // the colon
            self.skip_whitespace();
            let wanted = match paths {
                Some(paths) if whole => Some(paths),
                Some(paths) => paths.field(&key),
                None => None,
            };
            let value = self.value(wanted)?;
            if let (Some(members), Some(value)) = (&mut members, value) {
                members.push((key.clone(), value));
            }
            self.keys.push(key);
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b'}' {
                self.keys.truncate(first_key);
                return Ok(members.map(Json::Object));
            }
        }
    }

    /// An array, built when `build`; a partial read of one takes it whole, so that a rule that
    /// selects a field of a list fails as it would on the whole list.
    fn array(&mut self, build: bool) -> Result<Option<Json<'b>>, usize> {
        self.at += 1;
        self.skip_whitespace();
        let mut elements = build.then(Vec::new);
        if self.peek() == b']' {
            self.at += 1;
            return Ok(elements.map(Json::Array));
        }
        let whole = Paths::whole();
        loop {
            let value = self.value(build.then_some(&whole))?;
            if let (Some(elements), Some(value)) = (&mut elements, value) {
                elements.push(value);
            }
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b']' {
                return Ok(elements.map(Json::Array));
            }
        }
    }

    /// The string whose opening quote is at the cursor, borrowed when it has no escapes;
    /// unescaped only when `read` (else an empty placeholder).
    fn string(&mut self, read: bool) -> Cow<'b, str> {
        let start = self.at + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.bytes[at..]) {
                Some(found) if self.bytes[at + found] == b'"' => {
                    at += found;
                    break;
                }
                Some(found) => {
                    escaped = true;
                    at += found + 2;
                }
                None => {
                    at = self.bytes.len();
                    break;
                }
            }
        }
        self.at = at + 1;
        if !read {
            Cow::Borrowed("")
        } else if escaped {
            // Validated by the scan; serde_json unescapes, as the scan does for picked fields.
            Cow::Owned(
                serde_json::from_slice(&self.bytes[start - 1..=at])
                    .expect("a validated JSON string unescapes"),
            )
        } else {
            // Validated as UTF-8 by the scan.
            Cow::Borrowed(std::str::from_utf8(&self.bytes[start..at]).unwrap_or_default())
        }
    }

    fn number(&mut self) -> &'b str {
        let start = self.at;
        while matches!(self.peek(), b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_value() {
        let body = br#" {"a": [1, -2.5e3, "x\"y", true, false, null, {}], "b": {"c": "d"}} "#;
        let tree = parse(body, Some(&Paths::whole())).unwrap();
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
        assert_eq!(parse(b"", Some(&Paths::whole())).unwrap(), Json::Null);
        assert_eq!(
            parse(b" 7 ", Some(&Paths::whole())).unwrap(),
            Json::Number("7")
        );
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

    #[test]
    fn a_key_twice_in_any_object_is_refused_where_the_second_is() {
        let error = parse(br#"{"a":{"x":1,"y":2,"x":3}}"#, None).unwrap_err();
        assert_eq!((error.line, error.column), (1, 19));
        // Escapes do not hide a duplicate.
        assert!(parse(br#"[{"k":1,"\u006b":2}]"#, None).is_err());
        // Many keys: found through the set.
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(parse(format!("{{{many}\"k3\":0}}").as_bytes(), None).is_err());
        assert!(parse(format!("{{{many}\"z\":0}}").as_bytes(), None).is_ok());
        // The same key in different objects is fine.
        assert!(parse(br#"[{"k":1},{"k":2}]"#, None).is_ok());
        // Inside values that no rule reads too.
        let mut paths = Paths::default();
        paths.insert(["a"]);
        assert!(parse(br#"{"a":1,"b":{"c":{"d":1,"d":2}}}"#, Some(&paths)).is_err());
    }

    #[test]
    fn only_the_parts_rules_read_are_built() {
        let mut paths = Paths::default();
        paths.insert(["issue", "key"]);
        paths.insert(["issue", "fields", "labels"]);
        paths.insert(["missing", "x"]);
        let body = br#"{"user":{"name":"a"},"issue":{"id":1,"key":"K-1","fields":{"labels":["x"],"big":[1,2,3]}},"list":[1]}"#;
        assert_eq!(
            parse(body, Some(&paths)).unwrap(),
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
            parse(br#"{"list":[1],"n":2}"#, Some(&paths)).unwrap(),
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
