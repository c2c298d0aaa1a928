//! The endpoint's OpenAPI 3.1 document: the spec's operation with every answer the contract
//! adds (401, 404, 405, 413, 415, 503, the `Idempotent-Replayed` header), and the standalone
//! server's execution status operation.
//!
//! ```
//! let document: serde_json::Value = serde_json::from_str(agent_trigger::openapi::DOCUMENT).unwrap();
//! assert_eq!(document["openapi"], "3.1.0");
//! assert!(document["paths"]["/api/trigger/{source}/{triggerId}"]["post"]["responses"]["503"].is_object());
//! ```

/// The document as JSON text, ready to serve as `application/json`.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use crate::Source;

    #[test]
    fn source_enum_matches_the_crate() {
        let document: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let names = &document["paths"]["/api/trigger/{source}/{triggerId}"]["post"]["parameters"]
            [0]["schema"]["enum"];
        let expected: Vec<_> = Source::ALL.iter().map(|source| source.as_str()).collect();
        assert_eq!(names, &serde_json::json!(expected));
    }
}
