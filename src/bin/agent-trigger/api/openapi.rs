//! `GET /api/openapi.json`: the server's OpenAPI document, the library's trigger endpoint
//! ([`agent_trigger::openapi::DOCUMENT`]) with the server's own routes (`openapi.json` beside
//! this file) added to it.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The server's paths and the schemas they use.
const SERVER_ROUTES: &str = include_str!("openapi.json");

/// The merged document, built at the first request.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// The library's document with the server's paths and schemas added.
fn document() -> Value {
    let mut document: Value = serde_json::from_str(agent_trigger::openapi::DOCUMENT)
        .expect("the library's OpenAPI document is JSON");
    let routes: Value = serde_json::from_str(SERVER_ROUTES).expect("the server's routes are JSON");
    for section in ["/paths", "/components/schemas"] {
        let added = routes
            .pointer(section)
            .and_then(Value::as_object)
            .expect("the server's routes have paths and schemas");
        document
            .pointer_mut(section)
            .and_then(Value::as_object_mut)
            .expect("the library's document has paths and schemas")
            .extend(added.clone());
    }
    document
}

/// Serves the document.
pub async fn openapi() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_document_has_the_endpoint_and_every_server_route() {
        let document = document();
        let paths: Vec<_> = document["paths"].as_object().unwrap().keys().collect();
        for path in [
            "/api/trigger/{source}/{triggerId}",
            "/api/executions",
            "/api/executions/{executionId}",
            "/api/executions/{executionId}/cancel",
            "/api/executions/{executionId}/replay",
            "/api/deliveries",
            "/api/deliveries/{deliveryId}",
            "/api/deliveries/{deliveryId}/redeliver",
            "/api/triggers",
            "/healthz",
            "/metrics",
        ] {
            assert!(paths.contains(&&path.to_owned()), "{path} in {paths:?}");
        }
        // Every reference resolves.
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referenced but not defined"
            );
        }
    }
}
