//! Slow and hostile clients against the real server: trickled bodies and headers are cut off
//! in bounded time, bodies with no length stop at the limit, many oversize bodies at once keep
//! memory bounded, deep nesting is refused, and raw header bytes are never echoed.
#![cfg(all(feature = "server", target_os = "linux"))]

use std::time::{Duration, Instant};

use agent_trigger_testkit::server_process::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIGHT: &[(&str, &str)] = &[
    ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "2"),
    ("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", "2"),
];

/// Writes `head` and then reads whatever the server answers until it closes, with a bound.
async fn exchange(stream: &mut TcpStream, bound: Duration) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(bound, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(server: &Server, extra: &str) -> String {
    format!(
        "POST /api/trigger/webhook/{TRIGGER_A} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\n{extra}\r\n",
        server.address
    )
}

/// The server's peak resident memory, in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id().unwrap())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_request_deadline() {
    let workspace = Workspace::new("");
    let server = Server::start_with(&workspace, TIGHT).await;
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    stream
        .write_all(head(&server, "Content-Length: 1000\r\n").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        for _ in 0..1000 {
            if stream.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
    };
    trickle.await;
    let answer = exchange(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(
        answer.contains(r#"{"error":"the request was not completed within 2 s"}"#),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn headers_trickled_a_line_at_a_time_are_cut_off() {
    let workspace = Workspace::new("");
    let server = Server::start_with(&workspace, TIGHT).await;
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /api/trigger/webhook/x HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stream
            .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection stayed open for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_with_no_length_stops_at_the_limit() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    stream
        .write_all(head(&server, "Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "7".repeat(64 * 1024));
    for _ in 0..40 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let answer = exchange(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(answer.contains("larger than the limit of 1048576 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_oversize_bodies_at_once_keep_memory_bounded() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let before = peak_rss_kib(&server);
    let mut senders = Vec::new();
    for _ in 0..64 {
        let address = server.address.clone();
        let head = head(&server, "Transfer-Encoding: chunked\r\n");
        senders.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&address).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "7".repeat(64 * 1024));
            // 4 MiB each, four times the limit.
            for _ in 0..64 {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
            exchange(&mut stream, Duration::from_secs(20)).await
        }));
    }
    let mut refused = 0;
    for sender in senders {
        refused += usize::from(sender.await.unwrap().starts_with("HTTP/1.1 413"));
    }
    let peak = peak_rss_kib(&server);
    println!(
        "peak RSS before {before} KiB, after 64 concurrent 4 MiB bodies {peak} KiB ({refused} got 413)"
    );
    assert!(refused >= 60, "{refused} of 64 were answered 413");
    assert!(
        peak - before < 160 * 1024,
        "peak RSS grew by {} KiB",
        peak - before
    );
}

#[tokio::test]
async fn nesting_ten_thousand_deep_is_refused() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let client = client();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, _, json) = call(&client, delivery(&server, KEY_A, &deep, None))
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(json["issues"][0]["code"], "invalid_json");
    assert_eq!(
        json["issues"][0]["message"],
        "Invalid JSON: nesting deeper than 128"
    );
}

#[tokio::test]
async fn raw_header_bytes_are_never_echoed() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let cases = [
        // Invalid UTF-8 (obs-text bytes, valid in HTTP) in the bearer token.
        format!(
            "POST /api/trigger/webhook/{TRIGGER_A} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u{80}\u{81}\r\n"
        ),
        format!(
            "POST /api/trigger/webhook/{TRIGGER_A} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ECHO-ME-\u{ff}\r\n"
        ),
        // A malformed signature with bytes that must not come back.
        format!(
            "POST /api/trigger/webhook/{TRIGGER_A} HTTP/1.1\r\nHost: x\r\nwebhook-id: ECHO-ME\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,ECHO-ME-\u{fe}\r\n"
        ),
        format!(
            "POST /api/trigger/jira/{TRIGGER_B} HTTP/1.1\r\nHost: x\r\nX-Hub-Signature: sha256=ECHO-ME\r\n"
        ),
    ];
    for case in cases {
        let mut stream = TcpStream::connect(&server.address).await.unwrap();
        // Write the head as raw bytes, Latin-1 style, so 0xFF and 0xFE go out as single bytes.
        let mut raw: Vec<u8> = case.chars().map(|c| c as u32 as u8).collect();
        raw.extend_from_slice(b"Content-Length: 2\r\nConnection: close\r\n\r\n{}");
        stream.write_all(&raw).await.unwrap();
        let answer = exchange(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(!body.contains("ECHO-ME"), "{answer}");
        assert!(!body.contains('\u{fffd}'), "{answer}");
        assert!(
            serde_json::from_str::<serde_json::Value>(body).is_ok(),
            "{answer}"
        );
    }
}

/// Whether the server closed `stream` (end of file or reset) within `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(bound, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_cap_cannot_keep_a_delivery_out() {
    let workspace = Workspace::new("");
    let server = Server::start_with(
        &workspace,
        &[
            ("AGENT_TRIGGER_MAX_CONNECTIONS", "4"),
            ("AGENT_TRIGGER_HEADER_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    // Three times the cap, sending nothing; one of them sends the first byte of the HTTP/2
    // preface and stalls inside protocol detection.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(&server.address).await.unwrap());
    }
    idle[0].write_all(b"P").await.unwrap();
    let started = Instant::now();

    // A real delivery gets its 200 once the idle ones have been closed.
    let client = client();
    let answer = loop {
        match call(
            &client,
            delivery(&server, KEY_A, r#"{"type":"real"}"#, None),
        )
        .await
        {
            Ok(answer) => break answer,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no delivery got through: {error}"),
        }
    };
    assert_eq!(answer.0, http::StatusCode::OK, "{}", answer.2);
    // Every idle connection was closed: at accept past the cap, or at the first-head deadline.
    for (n, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "idle connection {n} is still open after {:?}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn limits_past_their_bounds_are_refused_at_start_without_a_panic() {
    let workspace = Workspace::new("");
    for (name, value) in [
        ("AGENT_TRIGGER_REQUEST_TIMEOUT_SECS", "18446744073709551615"),
        ("AGENT_TRIGGER_MAX_IN_FLIGHT", "18446744073709551615"),
        ("AGENT_TRIGGER_MAX_CONNECTIONS", "0"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-trigger"))
            .args(["serve", "--config"])
            .arg(workspace.path().join("config.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .env("TEST_KEY_A", KEY_A)
            .env("TEST_KEY_B", KEY_B)
            .env(name, value)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("a whole number from 1 to"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn one_request_past_the_in_flight_cap_is_shed_at_once_with_retry_after() {
    let workspace = Workspace::new("");
    let server = Server::start_with(&workspace, &[("AGENT_TRIGGER_MAX_IN_FLIGHT", "1")]).await;
    // The one place is taken by a request whose body never comes.
    let mut holder = TcpStream::connect(&server.address).await.unwrap();
    holder
        .write_all(head(&server, "Content-Length: 100\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(&server.address).await.unwrap();
    stream
        .write_all(format!("{}{{}}", head(&server, "Content-Length: 2\r\n")).as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too many requests in flight"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_with_no_open_stream_is_closed_after_the_idle_timeout_though_it_answers_pings()
 {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let workspace = Workspace::new("[limits]\nidle_timeout_secs = 1");
    let server = Server::start(&workspace).await;
    let stream = TcpStream::connect(&server.address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let id = uuid::Uuid::now_v7().to_string();
    let response = sender
        .send_request(status_request(&server, Some(KEY_A), &id))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
    drop(response);
    // Pinging all along, the connection is still closed (GOAWAY) once idle for a second.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection is still open");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
}
