//! The trigger endpoint beside warp 0.4 filters: the filters become a tower service with
//! `warp::service`, `TriggerLayer` goes in front of it, and hyper-util serves the result. The
//! warp routes are still served as before.
//!
//! ```text
//! cargo run --example warp
//! curl http://127.0.0.1:3000/hello/world
//! ```

pub mod support;

use std::convert::Infallible;

use agent_trigger::TriggerLayer;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::Layer;
use warp::Filter;

/// The host's warp routes.
fn routes()
-> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    let health = warp::path("health").and(warp::path::end()).map(|| "ok");
    let hello = warp::path!("hello" / String).map(|name: String| format!("hello, {name}"));
    health.or(hello)
}

/// The whole app as one tower service.
pub fn app(
    service: support::Triggers,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<
        impl http_body::Body<Data = bytes::Bytes, Error = agent_trigger::BoxError> + Send + 'static,
    >,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    TriggerLayer::new(service).layer(warp::service(routes()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = support::Setup::from_env(agent_trigger::service::DEFAULT_PREFIX)?;
    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner("warp", listener.local_addr()?);
    let app = app(setup.service.clone());
    tokio::spawn(support::log_executions(setup.executions));
    support::serve_tower(listener, app, support::shutdown_signal()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The app over a real loopback socket: deliveries beside warp's own routes.

    use agent_trigger_testkit::client;
    use http::StatusCode;

    use super::*;

    const LIMIT: usize = 1024;

    #[tokio::test]
    async fn deliveries_beside_warp_filters() {
        let (listener, mut setup) =
            support::Setup::on_loopback(agent_trigger::service::DEFAULT_PREFIX, LIMIT).await;
        let (address, key, trigger_id) = (setup.listen, setup.key.clone(), setup.trigger_id);
        let app = app(setup.service.clone());
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
}
