//! The axum example's app over a real loopback socket, in each mounting style.

#[path = "common/http.rs"]
mod client;
#[path = "../examples/axum.rs"]
#[allow(dead_code)]
mod example;

use example::Mount;
use example::support;
use http::StatusCode;

const LIMIT: usize = 1024;

async fn start(mount: Mount) -> support::Setup {
    let (listener, setup) = support::Setup::on_loopback(mount.service_prefix(), LIMIT).await;
    let app = example::app(setup.service.clone(), mount);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    setup
}

async fn exercise(mount: Mount) {
    let mut server = start(mount).await;
    let client = client::http1();
    let url = format!(
        "http://{}/api/trigger/webhook/{}",
        server.listen, server.trigger_id
    );

    let (status, headers, body) = client::fetch(
        &client,
        client::post(
            url.clone(),
            Some(server.key.expose()),
            r#"{"type":"deploy"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{mount:?}: {body}");
    assert_eq!(headers["content-type"], "application/json");
    let execution = server.executions.recv().await.unwrap();
    assert_eq!(body, format!(r#"{{"executionId":"{}"}}"#, execution.id));
    assert_eq!(execution.delivery.action.as_deref(), Some("deploy"));

    let (status, headers, _) = client::fetch(&client, client::post(url.clone(), None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{mount:?}");
    assert_eq!(headers["www-authenticate"], "Bearer");

    let (status, _, body) = client::fetch(
        &client,
        client::get(format!("http://{}/health", server.listen)),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"), "{mount:?}");
    let (status, _, body) = client::fetch(
        &client,
        client::get(format!("http://{}/api/hello", server.listen)),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello from the host app"),
        "{mount:?}"
    );

    let oversize = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4 * LIMIT));
    let (status, _, body) = client::fetch(
        &client,
        client::post(url.clone(), Some(server.key.expose()), oversize),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{mount:?}: {body}");

    let (status, headers, _) = client::fetch(&client, client::get(url)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{mount:?}");
    assert_eq!(headers["allow"], "POST");
}

#[tokio::test]
async fn route_service() {
    exercise(Mount::Route).await;
}

#[tokio::test]
async fn nest_service() {
    exercise(Mount::Nest).await;
}

#[tokio::test]
async fn trigger_layer_on_a_router() {
    exercise(Mount::Layer).await;
}
