//! The two comparison servers of `benches/scripts/loopback.sh`: `bare` is hyper answering a
//! fixed `{"executionId":…}` after reading the body (the floor of this stack), `axum` is the
//! idiomatic axum handler over the same stores as the service. Both serve on one worker thread.
//!
//! ```text
//! API_KEY=… TRIGGER_ID=… cargo run --release --example loopback-servers -- bare 127.0.0.1:3101
//! ```

pub mod support;

use std::convert::Infallible;

use agent_trigger::ApiKey;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use uuid::Uuid;

async fn bare(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(
        br#"{"executionId":"01936f1c-1c52-7a57-8f7e-9d438d2b8f1d"}"#,
    )));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let kind = arguments
        .next()
        .ok_or("usage: loopback-servers bare|axum ADDR")?;
    let address = arguments
        .next()
        .ok_or("usage: loopback-servers bare|axum ADDR")?;
    let key = ApiKey::from_plaintext(std::env::var("API_KEY")?);
    let trigger_id = Uuid::try_parse(&std::env::var("TRIGGER_ID")?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&address).await?;
        println!("{kind} listening on http://{address}");
        match kind.as_str() {
            "bare" => loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(bare))
                        .await;
                });
            },
            "axum" => {
                let world = support::World::with(key, trigger_id);
                axum::serve(listener, support::idiomatic_router(&world)).await?;
                Ok(())
            }
            other => Err(format!("unknown server {other:?}: bare or axum").into()),
        }
    })
}
