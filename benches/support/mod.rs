//! What the benchmarks share: the same stores, the same do-nothing sink, the same requests, and
//! the axum handler a user would write instead of using the service. Each bench declares this
//! module `pub mod support;`, so the parts one bench leaves unused are not dead code.

use std::sync::Arc;
use std::time::SystemTime;

use agent_trigger::memory::MemoryKeyStore;
use agent_trigger::{
    ApiKey, ApiKeyRecord, Caller, Delivery, ExecutionId, ExecutionSink, KeyDigest, KeyStore,
    Outcome, SignatureScheme, SigningSecret, SinkError, Source, Trigger, TriggerService, signature,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::TypedHeader;
use axum_extra::headers::Authorization;
use axum_extra::headers::authorization::Bearer;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use uuid::Uuid;

/// A Jira `issue_created` delivery of about 240 bytes.
pub const JIRA_BODY: &str = r#"{"timestamp":1732800000000,"webhookEvent":"jira:issue_created","issue":{"id":"10042","key":"SEC-42","fields":{"summary":"Rotate the leaked token","priority":{"name":"High"},"labels":["security","triage"]}},"user":{"accountId":"5b10ac8d82e05b22cc7d4ef5"}}"#;

pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const SLACK_BODY: &str = r#"{"token":"z26uFbvR1xHJEdHE1OQiO6t8","team_id":"T061EG9RZ","api_app_id":"A0FFV41KK","event":{"type":"app_mention","user":"U061F7AUR","text":"<@U0LAN0Z89> triage SEC-42","ts":"1515449522.000016","channel":"C0LAN2Q65"},"type":"event_callback","event_id":"Ev0LAN670R","event_time":1515449522}"#;

/// A sink that acknowledges everything with the same id and keeps nothing.
pub struct NullSink(ExecutionId);

impl Default for NullSink {
    fn default() -> Self {
        NullSink(ExecutionId::from(Uuid::from_u128(
            0x0193_6f1c_1c52_7a57_8f7e_9d43_8d2b_8f1d,
        )))
    }
}

impl ExecutionSink for NullSink {
    async fn submit(&self, _delivery: Delivery) -> Result<Outcome, SinkError> {
        Ok(Outcome::Started(self.0.clone()))
    }
}

/// The stores, key and triggers every benchmark uses.
pub struct World {
    pub store: Arc<MemoryKeyStore>,
    pub sink: Arc<NullSink>,
    pub key: ApiKey,
    pub jira: Uuid,
    pub slack: Uuid,
    /// A `webhook` trigger with the default scheme, Standard Webhooks.
    pub webhook: Uuid,
    /// A `webhook` trigger with the `github` preset.
    pub github: Uuid,
}

impl World {
    pub fn new() -> Self {
        Self::with(ApiKey::generate(), Uuid::now_v7())
    }

    /// The world with this key and this Jira trigger id.
    pub fn with(key: ApiKey, jira: Uuid) -> Self {
        let slack = Uuid::now_v7();
        let (webhook, github) = (Uuid::now_v7(), Uuid::now_v7());
        let store = MemoryKeyStore::new()
            .with_key(key.digest(), ApiKeyRecord::new("bench", "bench"))
            .with_trigger(Trigger::new(jira, "bench", Source::Jira))
            .with_trigger(
                Trigger::new(slack, "bench", Source::Slack)
                    .with_secret(SigningSecret::new("s", SLACK_SECRET).unwrap()),
            )
            .with_trigger(
                Trigger::new(webhook, "bench", Source::Webhook)
                    .with_secret(SigningSecret::new("s", WHSEC).unwrap()),
            )
            .with_trigger(
                Trigger::new(github, "bench", Source::Webhook)
                    .with_signature(SignatureScheme::github())
                    .with_secret(SigningSecret::new("s", SLACK_SECRET).unwrap()),
            );
        World {
            store: Arc::new(store),
            sink: Arc::new(NullSink::default()),
            key,
            jira,
            slack,
            webhook,
            github,
        }
    }

    pub fn service(&self) -> TriggerService<Arc<NullSink>, Arc<MemoryKeyStore>> {
        TriggerService::new(Arc::clone(&self.sink), Arc::clone(&self.store))
    }

    pub fn service_with_limit(
        &self,
        limit: usize,
    ) -> TriggerService<Arc<NullSink>, Arc<MemoryKeyStore>> {
        TriggerService::builder(Arc::clone(&self.sink), Arc::clone(&self.store))
            .body_limit(limit)
            .build()
    }

    /// The accepted request: a Jira delivery with the bearer key.
    pub fn accepted<B: From<Bytes>>(&self, body: &'static str) -> Request<B> {
        Request::post(format!("/api/trigger/jira/{}", self.jira))
            .header("authorization", format!("Bearer {}", self.key.expose()))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(B::from(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    /// The accepted request with `document` as its body, shared rather than copied.
    pub fn accepted_document(&self, document: &Bytes) -> Request<Full<Bytes>> {
        let mut request = self.accepted::<Full<Bytes>>("");
        *request.body_mut() = Full::new(document.clone());
        request
            .headers_mut()
            .insert("content-length", document.len().into());
        request
    }

    /// A Slack event signed now with the trigger's secret.
    pub fn slack_signed(&self) -> Request<Full<Bytes>> {
        let secret = SigningSecret::new("s", SLACK_SECRET).unwrap();
        let headers = signature::sign(
            Source::Slack,
            &secret,
            SLACK_BODY.as_bytes(),
            SystemTime::now(),
            "",
        )
        .unwrap();
        let mut request = Request::post(format!("/api/trigger/slack/{}", self.slack))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(SLACK_BODY.as_bytes())))
            .unwrap();
        request.headers_mut().extend(headers);
        request
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// The Jira body as a Standard Webhooks delivery, signed now, to the default `webhook`
    /// trigger.
    pub fn webhook_signed(&self) -> Request<Full<Bytes>> {
        let secret = SigningSecret::new("s", WHSEC).unwrap();
        let headers = signature::sign(
            Source::Webhook,
            &secret,
            JIRA_BODY.as_bytes(),
            SystemTime::now(),
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        )
        .unwrap();
        let mut request = Request::post(format!("/api/trigger/webhook/{}", self.webhook))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(JIRA_BODY.as_bytes())))
            .unwrap();
        request.headers_mut().extend(headers);
        request
    }

    /// The Jira body as GitHub would sign it, to the `webhook` trigger with the `github` preset.
    pub fn github_signed(&self) -> Request<Full<Bytes>> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
        mac.update(JIRA_BODY.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        Request::post(format!("/api/trigger/webhook/{}", self.github))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("x-github-event", "issues")
            .body(Full::new(Bytes::from_static(JIRA_BODY.as_bytes())))
            .unwrap()
    }
}

/// The state of the idiomatic axum handler.
#[derive(Clone)]
pub struct HandlerState {
    pub store: Arc<MemoryKeyStore>,
    pub sink: Arc<NullSink>,
}

/// What a user would write with axum's extractors instead of the service: typed path, typed
/// bearer header, `Json<Value>`, the same stores and the same sink.
pub async fn idiomatic_handler(
    State(state): State<HandlerState>,
    Path((source, trigger_id)): Path<(Source, Uuid)>,
    TypedHeader(Authorization(bearer)): TypedHeader<Authorization<Bearer>>,
    Json(body): Json<Value>,
) -> Response {
    let key = match state
        .store
        .api_key(KeyDigest::of_token(bearer.token()))
        .await
    {
        Ok(Some(key)) if key.is_usable(SystemTime::now()) => key,
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid API key"})),
            )
                .into_response();
        }
    };
    let trigger = match state.store.trigger(trigger_id).await {
        Ok(Some(trigger)) if trigger.source() == source && key.may_invoke(&trigger) => trigger,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "trigger not found"})),
            )
                .into_response();
        }
    };
    let mut delivery = Delivery::new(
        source,
        trigger_id,
        trigger.tenant().into(),
        Caller::ApiKey {
            key_id: key.id().into(),
            tenant: key.tenant().into(),
        },
        Bytes::from(serde_json::to_vec(&body).unwrap()),
    );
    delivery.action = body
        .get("webhookEvent")
        .and_then(Value::as_str)
        .map(Into::into);
    match state.sink.submit(delivery).await {
        Ok(Outcome::Started(id)) => Json(json!({"executionId": id.to_string()})).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal error"})),
        )
            .into_response(),
    }
}

/// The idiomatic handler's router.
pub fn idiomatic_router(world: &World) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/trigger/{source}/{trigger_id}",
            axum::routing::post(idiomatic_handler),
        )
        .with_state(HandlerState {
            store: Arc::clone(&world.store),
            sink: Arc::clone(&world.sink),
        })
}

/// A JSON document of about `size` bytes with the mix of a real payload: objects, arrays,
/// strings (some escaped), numbers, booleans and nulls.
pub fn json_document(size: usize) -> Bytes {
    let mut out = String::with_capacity(size + 256);
    out.push_str(r#"{"webhookEvent":"jira:issue_updated","items":["#);
    let mut n = 0u64;
    while out.len() < size {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{n},"key":"SEC-{n}","summary":"Rotate the \"leaked\" token in service {n}","score":{}.{:02},"open":{},"assignee":null,"labels":["security","triage","p{}"],"links":{{"self":"https://example.atlassian.net/rest/api/3/issue/{n}"}}}}"#,
            n % 97,
            n % 100,
            n.is_multiple_of(2),
            n % 4
        ));
        n += 1;
    }
    out.push_str("]}");
    Bytes::from(out)
}

/// The least an in-process tower service can do with an accepted request: drop it and answer
/// the fixed JSON of an execution id with the service's two headers. What the harness, the
/// request's drop and the response cost, without any checking.
pub fn floor_service() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = http::Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|request: Request<Full<Bytes>>| async move {
        drop(request);
        let mut response = http::Response::new(Full::new(Bytes::from_static(
            br#"{"executionId":"01936f1c-1c52-7a57-8f7e-9d438d2b8f1d"}"#,
        )));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        Ok(response)
    })
}
