//! The trigger endpoint on a bare hyper 1 server through hyper-util: `TriggerLayer` in front of
//! the host's own hyper service, `TowerToHyperService`, and the auto builder (HTTP/1 and
//! HTTP/2).
//!
//! ```text
//! cargo run --example hyper
//! curl --http2-prior-knowledge http://127.0.0.1:3000/health
//! ```

pub mod support;

use std::convert::Infallible;

use agent_trigger::TriggerLayer;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::Layer;

/// The host's own service: what answers everything off the trigger route.
async fn host(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match request.uri().path() {
        "/health" => Response::new(Full::new(Bytes::from_static(b"ok"))),
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"no such page")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
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
    TriggerLayer::new(service).layer(tower::service_fn(host))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setup = support::Setup::from_env(agent_trigger::service::DEFAULT_PREFIX)?;
    let listener = tokio::net::TcpListener::bind(setup.listen).await?;
    setup.print_banner("hyper", listener.local_addr()?);
    let app = app(setup.service.clone());
    tokio::spawn(support::log_executions(setup.executions));
    support::serve_tower(listener, app, support::shutdown_signal()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The app over a real loopback socket, over HTTP/1.1 and HTTP/2.

    use agent_trigger_testkit::client;
    use http::StatusCode;

    use super::*;

    const LIMIT: usize = 1024;

    #[tokio::test]
    async fn http1_and_http2_deliveries_and_the_host_routes() {
        let (listener, mut setup) =
            support::Setup::on_loopback(agent_trigger::service::DEFAULT_PREFIX, LIMIT).await;
        let (address, key, trigger_id) = (setup.listen, setup.key.clone(), setup.trigger_id);
        let app = app(setup.service.clone());
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

            let (status, _, _) =
                client::fetch(&client, client::post(url.clone(), None, "{}")).await;
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
}
