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

/// The tree of `body`, already validated as JSON: an empty body is `null`.
pub(crate) fn parse(body: &[u8]) -> Result<Json<'_>, JsonError> {
    if body.is_empty() {
        return Ok(Json::Null);
    }
    let mut reader = Reader { bytes: body, at: 0 };
    reader.skip_whitespace();
    let value = reader.value().map_err(|at| {
        locate(
            body,
            at,
            "duplicate key: an object holds the same key twice, which a trigger with rules refuses",
        )
    })?;
    Ok(value)
}

/// A reader of validated JSON; its only error is a duplicate key, at the offset of the second.
/// Recursion is bounded by the scan's nesting limit.
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

    fn value(&mut self) -> Result<Json<'b>, usize> {
        match self.peek() {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Ok(Json::String(self.string())),
            b't' => {
                self.at += 4;
                Ok(Json::Bool(true))
            }
            b'f' => {
                self.at += 5;
                Ok(Json::Bool(false))
            }
            b'n' => {
                self.at += 4;
                Ok(Json::Null)
            }
            _ => Ok(Json::Number(self.number())),
        }
    }

    fn object(&mut self) -> Result<Json<'b>, usize> {
        self.at += 1;
        self.skip_whitespace();
        let mut members: Vec<(Cow<'b, str>, Json<'b>)> = Vec::new();
        let mut keys: Option<HashSet<Cow<'b, str>>> = None;
        if self.peek() == b'}' {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            let key_at = self.at;
            let key = self.string();
            let duplicate = match &mut keys {
                Some(keys) => !keys.insert(key.clone()),
                None => {
                    let duplicate = members.iter().any(|(other, _)| *other == key);
                    if members.len() == LINEAR_SEARCH_KEYS {
                        keys = Some(
                            members
                                .iter()
                                .map(|(key, _)| key.clone())
                                .chain([key.clone()])
                                .collect(),
                        );
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
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b'}' {
                return Ok(Json::Object(members));
            }
        }
    }

    fn array(&mut self) -> Result<Json<'b>, usize> {
        self.at += 1;
        self.skip_whitespace();
        let mut elements = Vec::new();
        if self.peek() == b']' {
            self.at += 1;
            return Ok(Json::Array(elements));
        }
        loop {
            elements.push(self.value()?);
            self.skip_whitespace();
            let separator = self.peek();
            self.at += 1;
            self.skip_whitespace();
            if separator == b']' {
                return Ok(Json::Array(elements));
            }
        }
    }

    /// The string whose opening quote is at the cursor, borrowed when it has no escapes.
    fn string(&mut self) -> Cow<'b, str> {
        let start = self.at + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            match self.bytes[at] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => at += 1,
            }
        }
        self.at = at + 1;
        if escaped {
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
        let tree = parse(body).unwrap();
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
        assert_eq!(parse(b"").unwrap(), Json::Null);
        assert_eq!(parse(b" 7 ").unwrap(), Json::Number("7"));
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
        let error = parse(br#"{"a":{"x":1,"y":2,"x":3}}"#).unwrap_err();
        assert_eq!((error.line, error.column), (1, 19));
        // Escapes do not hide a duplicate.
        assert!(parse(br#"[{"k":1,"\u006b":2}]"#).is_err());
        // Many keys: found through the set.
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(parse(format!("{{{many}\"k3\":0}}").as_bytes()).is_err());
        assert!(parse(format!("{{{many}\"z\":0}}").as_bytes()).is_ok());
        // The same key in different objects is fine.
        assert!(parse(br#"[{"k":1},{"k":2}]"#).is_ok());
    }
}
