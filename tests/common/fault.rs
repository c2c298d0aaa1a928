//! Faults on demand: a TCP proxy between a server and its database that a test can `reset`
//! (every connection ends with a RST, as when the database restarts or a firewall drops its
//! state), `blackhole` (connections are accepted and kept, nothing is forwarded either way,
//! as in a network partition) and `heal`.

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the bytes it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Blackhole,
    /// Every connection, open or new, ends with a RST: the database is down.
    Down,
}

/// A proxy to `upstream`, listening on a port of its own until dropped.
pub struct FaultProxy {
    pub address: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped by `reset`: every connection open at that moment is ended with a RST.
    resets: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Forward);
        let (resets, _) = watch::channel(0u64);
        let (modes, generations) = (mode.clone(), resets.clone());
        let accept = tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                let (mode, reset) = (modes.subscribe(), generations.subscribe());
                tokio::spawn(relay(downstream, upstream, mode, reset));
            }
        });
        FaultProxy {
            address,
            mode,
            resets,
            accept,
        }
    }

    /// Ends every open connection with a RST; new ones are forwarded as before.
    pub fn reset(&self) {
        self.resets.send_modify(|generation| *generation += 1);
    }

    /// Stops forwarding on every connection, open or new, until `heal`.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Ends every connection with a RST, and every new one as soon as it is accepted, until
    /// `heal`: a database that is down.
    pub fn down(&self) {
        self.mode.send_replace(Mode::Down);
    }

    /// Forwards again: connections held during a blackhole resume where they stopped.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// `url` (a PostgreSQL URL whose host and port are those of the upstream) through the
    /// proxy.
    pub fn postgres_url(&self, url: &str, upstream: SocketAddr) -> String {
        let through = url.replacen(&upstream.to_string(), &self.address.to_string(), 1);
        assert_ne!(through, url, "the URL names {upstream}");
        through
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset();
    }
}

/// The address a PostgreSQL URL connects to.
pub fn postgres_address(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => panic!("a socket path: {path:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let ip = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!("{ip}:{port}").parse().expect("an IP address")
}

/// One connection: bytes are copied both ways while the mode is `Forward`, held while it is
/// `Blackhole`; a reset ends both sides with a RST.
async fn relay(
    mut downstream: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    mut reset: watch::Receiver<u64>,
) {
    reset.mark_unchanged();
    // A blackholed database does not even answer the connection's start.
    tokio::select! {
        forwarding = mode.wait_for(|mode| *mode != Mode::Blackhole) => {
            if forwarding.map_or(true, |mode| *mode == Mode::Down) {
                return abort(downstream);
            }
        }
        _ = reset.changed() => return abort(downstream),
    }
    let mut upstream = tokio::select! {
        connected = TcpStream::connect(upstream) => match connected {
            Ok(stream) => stream,
            Err(_) => return abort(downstream),
        },
        _ = reset.changed() => return abort(downstream),
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Down {
            break;
        }
        let forwarding = current == Mode::Forward;
        // Which side has bytes to give, unless blackholed (then only a change of mode or a
        // reset is awaited).
        let from_downstream = tokio::select! {
            ready = downstream.readable(), if forwarding => {
                if ready.is_err() { break; }
                true
            }
            ready = upstream.readable(), if forwarding => {
                if ready.is_err() { break; }
                false
            }
            changed = mode.changed() => {
                if changed.is_err() { break; }
                continue;
            }
            _ = reset.changed() => break,
        };
        let (from, to) = if from_downstream {
            (&mut downstream, &mut upstream)
        } else {
            (&mut upstream, &mut downstream)
        };
        let count = match from.try_read(&mut buffer) {
            Ok(0) => {
                // One side closed: close the other gracefully.
                let _ = to.shutdown().await;
                return;
            }
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        };
        tokio::select! {
            written = to.write_all(&buffer[..count]) => if written.is_err() { break; },
            _ = reset.changed() => break,
        }
    }
    abort(downstream);
    abort(upstream);
}

/// Closes `stream` with a RST rather than a FIN.
fn abort(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
