//! The hyper example's app over a real loopback socket, over HTTP/1.1 and HTTP/2.

#[path = "common/http.rs"]
mod client;
#[path = "../examples/hyper.rs"]
#[allow(dead_code)]
mod example;

use example::support;
use http::StatusCode;

const LIMIT: usize = 1024;

#[tokio::test]
async fn http1_and_http2_deliveries_and_the_host_routes() {
    let (listener, mut setup) =
        support::Setup::on_loopback(agent_trigger::service::DEFAULT_PREFIX, LIMIT).await;
    let (address, key, trigger_id) = (setup.listen, setup.key.clone(), setup.trigger_id);
    let app = example::app(setup.service.clone());
    tokio::spawn(support::serve_tower(listener, app, std::future::pending()));
    let url = format!("http://{address}/api/trigger/webhook/{trigger_id}");

    for (version, client) in [("HTTP/1.1", client::http1()), ("HTTP/2", client::http2())] {
        let (status, _, body) = client::fetch(
            &client,
            client::post(url.clone(), Some(key.expose()), r#"{"type":"x"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{version}: {body}");
        let execution = setup.executions.recv().await.unwrap();
        assert_eq!(
            body,
            format!(r#"{{"executionId":"{}"}}"#, execution.id),
            "{version}"
        );

        let (status, _, _) = client::fetch(&client, client::post(url.clone(), None, "{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{version}");

        let (status, _, body) =
            client::fetch(&client, client::get(format!("http://{address}/health"))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"), "{version}");
        let (status, _, _) =
            client::fetch(&client, client::get(format!("http://{address}/elsewhere"))).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{version}: the host's own 404"
        );

        let oversize = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4 * LIMIT));
        let (status, _, _) = client::fetch(
            &client,
            client::post(url.clone(), Some(key.expose()), oversize),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{version}");
    }
}
