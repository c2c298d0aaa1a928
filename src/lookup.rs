//! Looking up the headers that sources name, none of which is one of HTTP's standard headers.

use http::{HeaderMap, HeaderValue};

/// Up to this many distinct names, a map is searched entry by entry rather than by hash.
const SEARCHED_IN_ORDER_UP_TO: usize = 16;

/// The first value of the header `name` (lowercase, as header maps keep names).
///
/// A map finds a name that is not a standard header by hashing it one byte at a time, a chain
/// of dependent multiplications: about as long as the name. A request carries a handful of
/// headers, and comparing their names with `name` is quicker; only a large map is hashed.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    debug_assert!(
        !name.bytes().any(|byte| byte.is_ascii_uppercase()),
        "header names are looked up in lowercase"
    );
    if headers.keys_len() > SEARCHED_IN_ORDER_UP_TO {
        return headers.get(name);
    }
    // The first entry of a name comes before its further values, as `HeaderMap::get` reads.
    headers
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

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
            }
            assert_eq!(header(headers, "webhook-id").unwrap(), "first");
        }
    }
}
