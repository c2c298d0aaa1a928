//! One pass over a body that both proves it is exactly one well-formed JSON text and picks out
//! the few fields a source needs (its action, delivery id, timestamp), without building a
//! `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Nesting deeper than this is refused, so a hostile body cannot exhaust the stack.
pub(crate) const MAX_NESTING: usize = 128;

/// At most this many fields can be picked out in one scan.
const MAX_FIELDS: usize = 8;

/// A path of object keys from the top of the document, `&["event", "type"]`.
pub(crate) type FieldPath = &'static [&'static str];

/// A picked-out value: a string (borrowed from the body when it has no escapes), a number, or
/// anything else (which still counts as present).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'b> {
    Str(Cow<'b, str>),
    Number(f64),
    Other,
}

/// The fields found by [`scan`], the first occurrence of each.
#[derive(Debug)]
pub(crate) struct Fields<'b> {
    paths: &'static [FieldPath],
    values: [Option<Scalar<'b>>; MAX_FIELDS],
}

impl<'b> Fields<'b> {
    /// No fields at all, as for an empty body.
    pub(crate) fn empty() -> Fields<'static> {
        Fields {
            paths: &[],
            values: Default::default(),
        }
    }

    fn get(&self, path: &[&str]) -> Option<&Scalar<'b>> {
        let at = self.paths.iter().position(|wanted| *wanted == path)?;
        self.values[at].as_ref()
    }

    /// The string at `path`, if the field is there and is a string.
    pub(crate) fn str(&self, path: &[&str]) -> Option<&str> {
        match self.get(path)? {
            Scalar::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The number at `path`, if the field is there and is a number.
    pub(crate) fn number(&self, path: &[&str]) -> Option<f64> {
        match self.get(path)? {
            Scalar::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// Whether the field is there at all, whatever its value (`null` included).
    pub(crate) fn is_present(&self, path: &[&str]) -> bool {
        self.get(path).is_some()
    }
}

/// Why a body is not JSON, with a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) message: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// Validates `body` as exactly one JSON text (UTF-8, no trailing bytes, nesting at most
/// [`MAX_NESTING`]) and picks out the values at `paths`.
///
/// # Panics
///
/// When `paths` has more than eight entries, which the source table never does.
pub(crate) fn scan<'b>(
    body: &'b [u8],
    paths: &'static [FieldPath],
) -> Result<Fields<'b>, JsonError> {
    assert!(
        paths.len() <= MAX_FIELDS,
        "a source picks out at most eight fields"
    );
    let text = std::str::from_utf8(body).map_err(|error| invalid_utf8(body, error))?;
    let mut fields = Fields {
        paths,
        values: Default::default(),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // Depth is counted by `Node` itself, up to MAX_NESTING rather than serde_json's 127.
    deserializer.disable_recursion_limit();
    let everything = (1u16 << paths.len()) - 1;
    let root = Node {
        paths,
        candidates: everything,
        depth: 0,
        nesting: 0,
        values: &mut fields.values,
    };
    root.deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(from_serde)?;
    Ok(fields)
}

fn from_serde(error: serde_json::Error) -> JsonError {
    let full = error.to_string();
    let message = match full.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => full,
    };
    JsonError {
        message,
        line: error.line(),
        column: error.column().max(1),
    }
}

fn invalid_utf8(body: &[u8], error: std::str::Utf8Error) -> JsonError {
    let before = &body[..error.valid_up_to()];
    let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    // Columns count characters, as serde_json's do; the text before the bad byte is valid.
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    JsonError {
        message: "invalid UTF-8".to_owned(),
        line,
        column,
    }
}

/// A value somewhere in the document. `candidates` is a bit set over `paths`: the fields that
/// may still be found at or under this value, given the keys on the way here.
struct Node<'v, 'b> {
    paths: &'static [FieldPath],
    candidates: u16,
    depth: usize,
    nesting: usize,
    values: &'v mut [Option<Scalar<'b>>; MAX_FIELDS],
}

impl<'v, 'b> Node<'v, 'b> {
    /// Records `scalar` for every candidate whose path ends here, first occurrence wins.
    fn capture(self, scalar: impl Fn() -> Scalar<'b>) {
        for (at, path) in self.paths.iter().enumerate() {
            if self.candidates & (1 << at) != 0
                && path.len() == self.depth
                && self.values[at].is_none()
            {
                self.values[at] = Some(scalar());
            }
        }
    }

    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let nesting = self.nesting + 1;
        if nesting > MAX_NESTING {
            return Err(E::custom(format_args!("nesting deeper than {MAX_NESTING}")));
        }
        Ok(nesting)
    }

    fn child(&mut self, candidates: u16, nesting: usize) -> Node<'_, 'b> {
        Node {
            paths: self.paths,
            candidates,
            depth: self.depth + 1,
            nesting,
            values: self.values,
        }
    }
}

impl<'de: 'b, 'b> DeserializeSeed<'de> for Node<'_, 'b> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'b, 'b> Visitor<'de> for Node<'_, 'b> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<(), E> {
        self.capture(|| Scalar::Str(Cow::Borrowed(text)));
        Ok(())
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        if self.candidates != 0 {
            self.capture(|| Scalar::Str(Cow::Owned(text.to_owned())));
        }
        Ok(())
    }

    fn visit_u64<E>(self, number: u64) -> Result<(), E> {
        self.capture(|| Scalar::Number(number as f64));
        Ok(())
    }

    fn visit_i64<E>(self, number: i64) -> Result<(), E> {
        self.capture(|| Scalar::Number(number as f64));
        Ok(())
    }

    fn visit_f64<E>(self, number: f64) -> Result<(), E> {
        self.capture(|| Scalar::Number(number));
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.capture(|| Scalar::Other);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.capture(|| Scalar::Other);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        let nesting = self.enter()?;
        // Fields are paths of object keys, so nothing under an array is ever picked out.
        while items.next_element_seed(self.child(0, nesting))?.is_some() {}
        self.capture(|| Scalar::Other);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut entries: A) -> Result<(), A::Error> {
        let nesting = self.enter()?;
        loop {
            let candidates = if self.candidates == 0 {
                match entries.next_key::<IgnoredAny>()? {
                    Some(_) => 0,
                    None => break,
                }
            } else {
                let key = KeyMatch {
                    paths: self.paths,
                    candidates: self.candidates,
                    depth: self.depth,
                };
                match entries.next_key_seed(key)? {
                    Some(candidates) => candidates,
                    None => break,
                }
            };
            entries.next_value_seed(self.child(candidates, nesting))?;
        }
        self.capture(|| Scalar::Other);
        Ok(())
    }
}

/// Reads one object key and narrows the candidates to the paths that continue with it.
struct KeyMatch {
    paths: &'static [FieldPath],
    candidates: u16,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for KeyMatch {
    type Value = u16;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u16, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch {
    type Value = u16;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<u16, E> {
        let mut narrowed = 0;
        for (at, path) in self.paths.iter().enumerate() {
            if self.candidates & (1 << at) != 0 && path.get(self.depth) == Some(&key) {
                narrowed |= 1 << at;
            }
        }
        Ok(narrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: &[FieldPath] = &[&["type"], &["event", "type"], &["event", "bot_id"], &["ts"]];

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn picks_out_fields_and_first_occurrence_wins() {
        let body = br#"{"type":"event_callback","event":{"type":"app_mention","bot_id":null,"type":"x"},"ts":17.5,"type":"again"}"#;
        let fields = scan(body, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), Some("event_callback"));
        assert_eq!(fields.str(&["event", "type"]), Some("app_mention"));
        assert!(fields.is_present(&["event", "bot_id"]));
        assert_eq!(fields.str(&["event", "bot_id"]), None);
        assert_eq!(fields.number(&["ts"]), Some(17.5));
    }

    #[test]
    fn fields_are_not_found_in_the_wrong_place() {
        let body = br#"{"event":[{"type":"in array"}],"inner":{"type":"nested"},"type":5}"#;
        let fields = scan(body, PATHS).unwrap();
        assert_eq!(fields.str(&["event", "type"]), None);
        assert_eq!(fields.str(&["type"]), None);
        assert_eq!(fields.number(&["type"]), Some(5.0));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let fields = scan(br#"{"type":"a\"b\u00e9"}"#, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), Some("a\"bé"));
    }

    #[test]
    fn any_json_text_is_accepted() {
        for body in [
            "null",
            "0",
            "-1.5e3",
            "\"s\"",
            "[]",
            "{}",
            " [1, {\"a\": [true]}] \n",
        ] {
            assert!(scan(body.as_bytes(), PATHS).is_ok(), "{body}");
        }
    }

    #[test]
    fn malformed_bodies_report_where() {
        let error = scan(b"{\n  \"a\": trux\n}", PATHS).unwrap_err();
        assert_eq!((error.line, error.column), (2, 11));
        // serde_json puts an error found at a line break in column 0; columns here are 1-based.
        let error = scan(b"{\n  \"a\": tru\n}", PATHS).unwrap_err();
        assert_eq!((error.line, error.column), (3, 1));
        assert!(!error.message.contains("at line"));
        let error = scan(b"{} {}", PATHS).unwrap_err();
        assert_eq!(error.message, "trailing characters");
        assert!(scan(b"", PATHS).is_err());
        assert!(scan(b"{\"a\":1,}", PATHS).is_err());
    }

    #[test]
    fn invalid_utf8_is_located() {
        let error = scan(b"{\"a\":\n \"\xff\"}", PATHS).unwrap_err();
        assert_eq!(error.message, "invalid UTF-8");
        assert_eq!((error.line, error.column), (2, 3));
    }

    #[test]
    fn nesting_is_limited_to_128() {
        assert!(scan(nested(MAX_NESTING).as_bytes(), PATHS).is_ok());
        let error = scan(nested(MAX_NESTING + 1).as_bytes(), PATHS).unwrap_err();
        assert!(error.message.contains("nesting"), "{}", error.message);
        let objects = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_NESTING + 1),
            "}".repeat(MAX_NESTING + 1)
        );
        assert!(scan(objects.as_bytes(), PATHS).is_err());
        // Deep hostile input fails fast instead of overflowing the stack.
        assert!(scan(nested(100_000).as_bytes(), PATHS).is_err());
    }
}
