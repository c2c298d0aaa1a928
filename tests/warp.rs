//! The warp example's app over a real loopback socket: deliveries beside warp's own routes.

#[path = "common/http.rs"]
mod client;
#[path = "../examples/warp.rs"]
#[allow(dead_code)]
mod example;

use example::support;
use http::StatusCode;

const LIMIT: usize = 1024;

#[tokio::test]
async fn deliveries_beside_warp_filters() {
    let (listener, mut setup) =
        support::Setup::on_loopback(agent_trigger::service::DEFAULT_PREFIX, LIMIT).await;
    let (address, key, trigger_id) = (setup.listen, setup.key.clone(), setup.trigger_id);
    let app = example::app(setup.service.clone());
    tokio::spawn(support::serve_tower(listener, app, std::future::pending()));
    let client = client::http1();
    let url = format!("http://{address}/api/trigger/webhook/{trigger_id}");

    let (status, _, body) = client::fetch(
        &client,
        client::post(url.clone(), Some(key.expose()), r#"{"type":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let execution = setup.executions.recv().await.unwrap();
    assert_eq!(body, format!(r#"{{"executionId":"{}"}}"#, execution.id));

    let (status, _, _) = client::fetch(&client, client::post(url.clone(), None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, body) =
        client::fetch(&client, client::get(format!("http://{address}/hello/warp"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, warp"));
    let (status, _, body) =
        client::fetch(&client, client::get(format!("http://{address}/health"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let oversize = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4 * LIMIT));
    let (status, _, _) =
        client::fetch(&client, client::post(url, Some(key.expose()), oversize)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
