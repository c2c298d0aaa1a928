//! Accepting connections: HTTP/1 and HTTP/2 on one port, at most [`Limits::max_connections`]
//! open (one more is closed as soon as it is accepted, so idle sockets cannot use up the
//! process's file descriptors), a deadline for each connection's first request head (protocol
//! detection included) and for each later HTTP/1 head, idle HTTP/2 connections pinged and
//! closed when a ping goes unanswered, and a graceful stop.

use std::time::Duration;

use crate::config::Limits;

/// How often an idle HTTP/2 connection is pinged, and how long its answer may take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections (HTTP/1 and HTTP/2) until `shutdown`, then stops accepting and lets the
/// requests in flight finish (within the request deadline). Connections past the cap are closed
/// at accept; one whose first request head has not arrived within the header deadline is
/// closed then.
pub async fn accept_until<A>(
    listener: tokio::net::TcpListener,
    app: A,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    A: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;
    use std::sync::Arc;
    use tokio::sync::{Notify, Semaphore};

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a moment rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
                    tracing::debug!(max_connections = limits.max_connections, "connection refused: too many open");
                    drop(stream);
                    continue;
                };
                // Told when the connection's first request head has been read.
                let first_request = Arc::new(Notify::new());
                let service = {
                    let (app, first_request) = (app.clone(), Arc::clone(&first_request));
                    hyper::service::service_fn(move |request| {
                        first_request.notify_one();
                        tower_service::Service::call(&mut app.clone(), request)
                    })
                };
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                let first_head_deadline = limits.header_timeout;
                tokio::spawn(async move {
                    let mut connection = std::pin::pin!(connection);
                    tokio::select! {
                        _ = &mut connection => {}
                        () = first_request.notified() => {
                            let _ = connection.await;
                        }
                        // Dropping the connection closes it.
                        () = tokio::time::sleep(first_head_deadline) => {
                            tracing::debug!("connection closed: no request head in time");
                        }
                    }
                    drop(place);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the request deadline; closing them");
    }
}
