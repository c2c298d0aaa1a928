//! Looking up a request's headers. A request carries a handful, and comparing their names
//! with the one wanted is quicker than hashing it: a map hashes a name one byte at a time, a
//! chain of dependent multiplications about as long as the name. Only large maps are hashed.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Up to this many distinct names, a map is searched entry by entry rather than by hash.
const SEARCHED_IN_ORDER_UP_TO: usize = 16;

/// The first value of the header `name`, as a source names it (lowercase, as maps keep names).
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    debug_assert!(
        !name.bytes().any(|byte| byte.is_ascii_uppercase()),
        "header names are looked up in lowercase"
    );
    if headers.keys_len() > SEARCHED_IN_ORDER_UP_TO {
        return headers.get(name);
    }
    first(headers, |key| key.as_str() == name)
}

/// The first value of the header `name`, compared as a header name: a standard one as a small
/// number, any other by its bytes, never through its text one entry at a time.
pub(crate) fn named<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    if headers.keys_len() > SEARCHED_IN_ORDER_UP_TO {
        return headers.get(name);
    }
    first(headers, |key| key == name)
}

/// The first entry of a name comes before its further values, as `HeaderMap::get` reads.
fn first(headers: &HeaderMap, wanted: impl Fn(&HeaderName) -> bool) -> Option<&HeaderValue> {
    headers
        .iter()
        .find(|(key, _)| wanted(key))
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in entries {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn agrees_with_the_map_for_small_and_large_maps() {
        let mut entries = vec![
            ("content-type", "application/json"),
            ("webhook-id", "first"),
            ("Webhook-Id", "second"),
            ("authorization", "Bearer x"),
        ];
        let small = map(&entries);
        let extra: Vec<String> = (0..SEARCHED_IN_ORDER_UP_TO)
            .map(|n| format!("x-extra-{n}"))
            .collect();
        entries.extend(extra.iter().map(|name| (name.as_str(), "v")));
        let large = map(&entries);
        assert!(large.keys_len() > SEARCHED_IN_ORDER_UP_TO);
        for headers in [&small, &large] {
            for name in ["webhook-id", "content-type", "idempotency-key", "x-extra-3"] {
                assert_eq!(header(headers, name), headers.get(name), "{name}");
                let name = HeaderName::from_static(name);
                assert_eq!(named(headers, &name), headers.get(&name), "{name}");
            }
            assert_eq!(header(headers, "webhook-id").unwrap(), "first");
        }
    }
}
