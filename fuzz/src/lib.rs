//! What the fuzz targets share: a service over in-memory stores with one trigger per source
//! (signed where the source signs), a key, a sink that accepts everything, and the invariants
//! every answer must keep.

use std::sync::OnceLock;
use std::time::SystemTime;

use agent_trigger::memory::MemoryKeyStore;
use agent_trigger::{
    ApiKey, ApiKeyRecord, Delivery, ExecutionId, ExecutionSink, Outcome, SigningSecret, SinkError, Source,
    Trigger, TriggerService,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use uuid::Uuid;

pub const KEY: &str = "atk_fuzzing_key_0123456789abcdefghijklmnopqrstu";
pub const SECRET: &str = "fuzzing-signing-secret";
pub const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Fixed trigger ids, one per source, in `Source::ALL` order.
pub fn trigger_id(source: Source) -> Uuid {
    let index = Source::ALL.iter().position(|s| *s == source).unwrap() as u128;
    Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | index)
}

pub fn secret(source: Source) -> SigningSecret {
    SigningSecret::new("fuzz", if source == Source::Webhook { WHSEC } else { SECRET }).unwrap()
}

pub struct Accepting;

impl ExecutionSink for Accepting {
    async fn submit(&self, delivery: Delivery) -> Result<Outcome, SinkError> {
        // The input handed on is always one valid JSON text (numbers of any size, which only
        // a reader that does not convert them takes).
        let mut reader = serde_json::Deserializer::from_slice(&delivery.input);
        reader.disable_recursion_limit();
        assert!(
            serde::de::Deserialize::deserialize(&mut reader)
                .and_then(|serde::de::IgnoredAny| reader.end())
                .is_ok(),
            "the sink got input that is not JSON: {:?}",
            delivery.input
        );
        Ok(Outcome::Started(ExecutionId::from(Uuid::from_u128(1))))
    }
}

pub type Service = TriggerService<Accepting, MemoryKeyStore>;

pub fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let key = ApiKey::from_plaintext(KEY);
        let mut store = MemoryKeyStore::new().with_key(key.digest(), ApiKeyRecord::new("fuzz", "fuzz"));
        for source in Source::ALL {
            let mut trigger = Trigger::new(trigger_id(source), "fuzz", source);
            if source.is_signed() {
                trigger = trigger.with_secret(secret(source));
            }
            store = store.with_trigger(trigger);
        }
        TriggerService::builder(Accepting, store).body_limit(64 * 1024).build()
    })
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

/// Sends `request` and checks what every answer must be: a status the contract names, JSON of
/// the contract's shape, never a 500 (the sink and store here never fail, so a 500 would be a
/// caught panic), and nothing of the key or secrets echoed.
pub fn send(request: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
    send_to(service(), request)
}

/// [`send`] to another service over the same key and secrets.
pub fn send_to<E: ExecutionSink>(
    service: &TriggerService<E, MemoryKeyStore>,
    request: Request<Full<Bytes>>,
) -> (StatusCode, serde_json::Value) {
    // Path segments are echoed in zod issues by design; a secret the caller sent is its own.
    let sent = format!("{} {:?}", request.uri(), request.headers());
    let sent_secret = [KEY, SECRET, WHSEC].iter().any(|secret| sent.contains(secret));
    let response: Response<Full<Bytes>> = runtime().block_on(service.clone().oneshot(request)).unwrap();
    let status = response.status();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "a panic was caught");
    assert!(
        [200, 400, 401, 404, 405, 413, 415, 503].contains(&status.as_u16()),
        "status {status} is not one the contract names"
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = runtime().block_on(response.into_body().collect()).unwrap().to_bytes();
    let text = std::str::from_utf8(&body).expect("answers are UTF-8");
    if !sent_secret {
        assert!(!text.contains(KEY) && !text.contains(SECRET) && !text.contains(WHSEC), "a secret leaked: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(text).expect("answers are JSON");
    let object = json.as_object().expect("answers are objects");
    let shaped = match status.as_u16() {
        200 => object.contains_key("executionId") || object.contains_key("error") || object.contains_key("challenge"),
        400 => object.get("error").is_some_and(|e| e.is_string()) && object.get("issues").is_some_and(|i| i.is_array()),
        _ => object.len() == 1 && object.get("error").is_some_and(|e| e.is_string()),
    };
    assert!(shaped, "{status} with an unexpected shape: {text}");
    (status, json)
}

/// Whether a 200 started or replayed an execution (as opposed to a skip, an error or a handshake).
pub fn executed(status: StatusCode, json: &serde_json::Value) -> bool {
    status == StatusCode::OK && json.get("executionId").is_some_and(|id| id != "skipped")
}

pub fn now() -> SystemTime {
    SystemTime::now()
}
