//! Accepting connections: HTTP/1 and HTTP/2 on one port, at most [`Limits::max_connections`]
//! open (one more is closed as soon as it is accepted, so idle sockets cannot use up the
//! process's file descriptors), optionally at most [`Limits::max_connections_per_peer`] from one
//! address, a deadline for each connection's first request head (protocol detection included)
//! and for each later HTTP/1 head, idle connections closed gracefully (an HTTP/2 connection
//! that only answers pings included: GOAWAY), and a graceful stop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::config::Limits;

/// How often an idle HTTP/2 connection is pinged, and how long its answer may take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves: the whole application, one clone per connection.
pub trait App:
    tower::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<A> App for A where
    A: tower::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// Serves connections until `shutdown`, then stops accepting, asks every connection to close
/// once its requests are answered, and waits for them (within the request deadline).
pub async fn accept_until<A: App>(
    listener: tokio::net::TcpListener,
    app: A,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
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
    let builder = Arc::new(builder);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let peers = PeerCounts::default();
    let (stopping, stop_requested) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: wait a moment rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
                    tracing::debug!(max_connections = limits.max_connections, "connection refused: too many open");
                    continue;
                };
                let Some(peer_place) = peers.admit(peer.ip(), limits.max_connections_per_peer) else {
                    tracing::debug!("connection refused: too many open from its address");
                    continue;
                };
                tokio::spawn(serve_connection(
                    Arc::clone(&builder),
                    stream,
                    app.clone(),
                    limits,
                    stop_requested.clone(),
                    (place, peer_place),
                ));
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let every_place = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.request_timeout, places.acquire_many(every_place))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the request deadline; closing them");
    }
}

/// One connection, from its accept to its close. `_places` are given back when it ends.
async fn serve_connection<A: App>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    app: A,
    limits: Limits,
    mut stop_requested: watch::Receiver<bool>,
    _places: (OwnedSemaphorePermit, PeerPlace),
) {
    let activity = Arc::new(watch::Sender::new(Activity {
        in_flight: 0,
        requests: 0,
        idle_since: Instant::now(),
    }));
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request| {
            activity.send_modify(|activity| {
                activity.in_flight += 1;
                activity.requests += 1;
            });
            let answered = AnswerGuard(Arc::clone(&activity));
            let response = tower_service::Service::call(&mut app.clone(), request);
            async move {
                let response = response.await;
                drop(answered);
                response
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut watching = activity.subscribe();
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            () = idle(&mut watching, limits), if !closing => {
                if watching.borrow().requests == 0 {
                    // No request head in time: dropping the connection closes it.
                    tracing::debug!("connection closed: no request head in time");
                    break;
                }
                tracing::debug!("idle connection closed");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop_requested.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// What a connection is doing: requests in flight, requests so far, and since when it has had
/// none in flight.
struct Activity {
    in_flight: usize,
    requests: u64,
    idle_since: Instant,
}

/// Marks a request answered when dropped (its future may also be dropped unanswered).
struct AnswerGuard(Arc<watch::Sender<Activity>>);

impl Drop for AnswerGuard {
    fn drop(&mut self) {
        self.0.send_modify(|activity| {
            activity.in_flight -= 1;
            if activity.in_flight == 0 {
                activity.idle_since = Instant::now();
            }
        });
    }
}

/// Resolves once the connection has been idle for its limit: before its first request, the
/// header deadline; after, `idle_timeout` with no request in flight.
async fn idle(activity: &mut watch::Receiver<Activity>, limits: Limits) {
    loop {
        let deadline = {
            let now = activity.borrow_and_update();
            (now.in_flight == 0).then(|| {
                let limit = if now.requests == 0 {
                    limits.header_timeout
                } else {
                    limits.idle_timeout
                };
                now.idle_since + limit
            })
        };
        match deadline {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                changed = activity.changed() => if changed.is_err() { return std::future::pending().await },
            },
            None => {
                if activity.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Open connections per peer address, when a per-peer cap is configured.
#[derive(Clone, Default)]
struct PeerCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in its peer's count, given back when dropped.
struct PeerPlace(Option<(PeerCounts, IpAddr)>);

impl PeerCounts {
    /// A place for a connection from `peer`, or `None` when `cap` is reached.
    fn admit(&self, peer: IpAddr, cap: Option<usize>) -> Option<PeerPlace> {
        let Some(cap) = cap else {
            return Some(PeerPlace(None));
        };
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(peer).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(PeerPlace(Some((self.clone(), peer))))
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        if let Some((counts, peer)) = self.0.take() {
            let mut counts = counts.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_past_its_cap_is_refused_until_one_of_its_connections_closes() {
        let counts = PeerCounts::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = counts.admit(a, Some(2)).unwrap();
        let _second = counts.admit(a, Some(2)).unwrap();
        assert!(counts.admit(a, Some(2)).is_none());
        assert!(counts.admit(b, Some(2)).is_some());
        drop(first);
        assert!(counts.admit(a, Some(2)).is_some());
        // Without a cap, everyone is admitted and nothing is counted.
        assert!(counts.admit(a, None).is_some());
    }
}
