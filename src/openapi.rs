//! The trigger endpoint's OpenAPI 3.1 document: the spec's operation with every answer the
//! contract adds (401, 404, 405, 413, 415, 503, the `Idempotent-Replayed` header). It describes
//! what [`TriggerService`](crate::TriggerService) serves and nothing else; a host that adds
//! routes (the standalone server does) adds their paths to a copy of it.
//!
//! ```
//! let document: serde_json::Value = serde_json::from_str(agent_trigger::openapi::DOCUMENT).unwrap();
//! assert_eq!(document["openapi"], "3.1.0");
//! assert!(document["paths"]["/api/trigger/{source}/{triggerId}"]["post"]["responses"]["503"].is_object());
//! ```

/// The document as JSON text, ready to serve as `application/json`.
///
/// ```
/// let document: serde_json::Value = serde_json::from_str(agent_trigger::openapi::DOCUMENT).unwrap();
/// let paths: Vec<_> = document["paths"].as_object().unwrap().keys().collect();
/// assert_eq!(paths, ["/api/trigger/{source}/{triggerId}"]);
/// ```
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
