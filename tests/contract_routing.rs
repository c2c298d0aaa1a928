//! The contract's first rows (§1: route, method, path parameters; §3: the shape of their
//! issues), one test or more per row, through the tower `Service` API with real requests.

pub mod common;

use std::sync::Arc;

use agent_trigger::memory::ChannelSink;
use agent_trigger::{Source, TriggerLayer, TriggerService};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use uuid::Uuid;

// ---- route ----

#[tokio::test]
async fn route_service_answers_404_off_its_route() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    for path in [
        "/",
        "/api/trigger",
        "/api/trigger/jira",
        "/api/other/jira/x/y",
        "/api/trigger/jira/a/b",
    ] {
        let answer = send(service.clone(), Request::post(path).body(full("")).unwrap()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(answer.json["error"].is_string());
    }
}

#[tokio::test]
async fn route_layer_hands_other_paths_to_the_inner_service_untouched() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let inner = tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let echo = format!(
            "{} {} {}",
            parts.method,
            parts.uri,
            String::from_utf8_lossy(&body)
        );
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(echo))))
    });
    let mut app = tower::ServiceBuilder::new()
        .layer(TriggerLayer::new(service))
        .service(inner);

    let response = app
        .ready()
        .await
        .unwrap()
        .call(Request::put("/health?x=1").body(full("ping")).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "PUT /health?x=1 ping");

    let request = fixture.bearer_request(Source::Jira, JIRA_BODY);
    let response = app.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert!(json["executionId"].is_string());
}

/// An inner service that is not ready on its first poll, and that checks it is only called
/// after being polled ready.
#[derive(Clone, Default)]
struct Reluctant {
    polls: usize,
    ready: bool,
}

impl tower::Service<Request<Full<Bytes>>> for Reluctant {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.polls += 1;
        if self.polls == 1 {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        assert!(
            std::mem::take(&mut self.ready),
            "called without being polled ready"
        );
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"inner",
        )))))
    }
}

#[tokio::test]
async fn route_layer_respects_the_inner_readiness() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let mut app = TriggerLayer::new(service).layer(Reluctant::default());
    for _ in 0..3 {
        let response = app
            .ready()
            .await
            .unwrap()
            .call(Request::get("/elsewhere").body(full("")).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "inner"
        );
        let delivery = fixture.bearer_request(Source::Jira, JIRA_BODY);
        let response = app.ready().await.unwrap().call(delivery).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn route_prefix_is_configurable_and_may_be_empty() {
    let fixture = Fixture::new();
    let id = fixture.trigger(Source::Jira);
    for (prefix, path) in [
        ("/hooks", format!("/hooks/jira/{id}")),
        ("", format!("/jira/{id}")),
    ] {
        let (sink, _rx) = ChannelSink::new(8);
        let service = TriggerService::builder(sink, Arc::clone(&fixture.store))
            .prefix(prefix)
            .build();
        let request = Request::post(&path)
            .header("authorization", format!("Bearer {}", fixture.key.expose()))
            .body(full(JIRA_BODY))
            .unwrap();
        assert_eq!(
            send(service.clone(), request).await.status,
            StatusCode::OK,
            "{path}"
        );
        let default_path = fixture.path(Source::Jira);
        let request = Request::post(&default_path).body(full("")).unwrap();
        assert_eq!(send(service, request).await.status, StatusCode::NOT_FOUND);
    }
}

// ---- method ----

#[tokio::test]
async fn method_other_than_post_is_405_with_allow() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    for method in ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"] {
        let request = Request::builder()
            .method(method)
            .uri(fixture.path(Source::Jira))
            .body(full(""))
            .unwrap();
        let answer = send(service.clone(), request).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers["allow"], "POST");
    }
}

// ---- path params ----

#[tokio::test]
async fn path_params_unknown_source_is_a_zod_enum_issue() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let path = format!("/api/trigger/github/{}", Uuid::now_v7());
    let answer = send(service, Request::post(path).body(full("")).unwrap()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json,
        json!({"error":"Invalid request","issues":[{
            "code":"invalid_enum_value","path":["source"],"received":"github",
            "options":["jira","jira-automation","slack","linear","webhook","bugcrowd","hackerone"],
            "message":"Invalid enum value. Expected 'jira' | 'jira-automation' | 'slack' | 'linear' | 'webhook' | 'bugcrowd' | 'hackerone', received 'github'"
        }]})
    );
}

#[tokio::test]
async fn path_params_source_is_case_sensitive() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let path = format!("/api/trigger/Jira/{}", fixture.trigger(Source::Jira));
    let answer = send(service, Request::post(path).body(full("")).unwrap()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["issues"][0]["received"], "Jira");
}

#[tokio::test]
async fn path_params_only_hyphenated_uuids() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    let id = Uuid::now_v7();
    for bad in [
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
        "not-a-uuid".to_owned(),
        format!("{id}0"),
    ] {
        let path = format!("/api/trigger/jira/{bad}");
        let answer = send(service.clone(), Request::post(path).body(full("")).unwrap()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.json["issues"],
            json!([{"code":"invalid_string","validation":"uuid","path":["triggerId"],"message":"Invalid uuid"}])
        );
    }
}

#[tokio::test]
async fn path_params_one_issue_per_bad_parameter_before_credentials() {
    let fixture = Fixture::new();
    let (service, _rx) = fixture.channel_service();
    // No credentials either: the path checks come first.
    let answer = send(
        service,
        Request::post("/api/trigger/github/nope")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let paths: Vec<_> = answer.json["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"][0].clone())
        .collect();
    assert_eq!(paths, [json!("source"), json!("triggerId")]);
}
