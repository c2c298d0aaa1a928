//! Keys that can only do what they are for (contract §7.4): `can = ["invoke", "read",
//! "operate"]` on every route, and replays as deliveries of the operator's key: attributed to
//! it, counted against the trigger's rate, refused for a disabled trigger. Through the binary.
#![cfg(all(feature = "server", unix))]

use std::time::Duration;

use agent_trigger::KeyDigest;
use agent_trigger_testkit::server_process::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

const SENDER: &str = "atk_sender_only_invokes_000000000000000000000";
const READER: &str = "atk_reader_only_reads_0000000000000000000000";
const OPERATOR: &str = "atk_operator_only_operates_000000000000000000";
const ADMIN: &str = "atk_admin_does_everything_0000000000000000000";

fn config(enabled: bool) -> String {
    let key = |id: &str, token: &str, can: &str| {
        format!(
            "[[keys]]\nid = \"{id}\"\ntenant = \"acme\"\nsha256 = \"{}\"\n{can}\n",
            KeyDigest::of_token(token).to_hex()
        )
    };
    format!(
        "database = \"executions.db\"\n{}{}{}{}\n[[triggers]]\nid = \"{TRIGGER_A}\"\ntenant = \"acme\"\nsource = \"webhook\"\nrate_limit = \"2/h\"\nenabled = {enabled}\n",
        key("sender", SENDER, "can = [\"invoke\"]"),
        key("reader", READER, "can = [\"read\"]"),
        key("operator", OPERATOR, "can = [\"operate\"]"),
        key("admin", ADMIN, ""),
    )
}

fn request(server: &Server, method: &str, path: &str, key: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(server.url(path))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::default())
        .unwrap()
}

async fn answer(server: &Server, method: &str, path: &str, key: &str) -> (StatusCode, Value) {
    let (status, _, json) = call(&client(), request(server, method, path, key))
        .await
        .unwrap();
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_does_only_what_it_can_and_replays_are_deliveries_of_the_operators_key() {
    let workspace = Workspace::new("");
    std::fs::write(workspace.path().join("config.toml"), config(true)).unwrap();
    let mut server = Server::start(&workspace).await;
    let client = client();

    // A sender's key invokes, and sees nothing else.
    let (status, _, json) = call(&client, delivery(&server, SENDER, r#"{"type":"a"}"#, None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
    let id = json["executionId"].as_str().unwrap().to_owned();
    let one = format!("/api/executions/{id}");
    for (method, path) in [
        ("GET", one.clone()),
        ("POST", format!("{one}/cancel")),
        ("POST", format!("{one}/replay")),
    ] {
        let (status, json) = answer(&server, method, &path, SENDER).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {json}");
        assert_eq!(json["error"], "execution not found");
    }
    let (status, json) = answer(&server, "GET", "/api/executions", SENDER).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(json["error"].is_string());

    // A reader reads, and neither invokes nor operates.
    let (status, json) = answer(&server, "GET", &one, READER).await;
    assert_eq!(
        (status, json["executionId"].as_str()),
        (StatusCode::OK, Some(&*id))
    );
    let (status, _) = answer(&server, "GET", "/api/executions", READER).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = answer(&server, "POST", &format!("{one}/replay"), READER).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, json) = call(&client, delivery(&server, READER, "{}", None))
        .await
        .unwrap();
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("trigger not found"))
    );

    // An operator replays (counted against the trigger's 2/h: the delivery was one) and
    // cancels; its answers carry no output, and the records name it.
    let (status, json) = answer(&server, "GET", &one, OPERATOR).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");
    let (status, json) = answer(&server, "POST", &format!("{one}/replay"), OPERATOR).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["replayOf"], id.as_str());
    let copy = json["executionId"].as_str().unwrap().to_owned();
    let (status, _, json) = call(
        &client,
        request(&server, "POST", &format!("{one}/replay"), OPERATOR),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    let (status, json) = answer(&server, "POST", &format!("{one}/cancel"), OPERATOR).await;
    assert_eq!(
        (status, &json["status"]),
        (StatusCode::OK, &Value::from("cancelled"))
    );
    assert!(json.get("output").is_none(), "{json}");

    let (_, original) = answer(&server, "GET", &one, ADMIN).await;
    assert_eq!(original["cancelledBy"], "operator");
    let (_, replayed) = answer(&server, "GET", &format!("/api/executions/{copy}"), ADMIN).await;
    assert_eq!(replayed["replayedBy"], "operator");
    assert_eq!(replayed["replayOf"], id.as_str());

    // A disabled trigger's executions are not replayed.
    std::fs::write(workspace.path().join("config.toml"), config(false)).unwrap();
    let pid = server.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let path = format!("/api/executions/{copy}/replay");
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..50 {
        last = answer(&server, "POST", &path, ADMIN).await;
        if last.0 == StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, StatusCode::CONFLICT, "{}", last.1);
    assert_eq!(last.1["error"], "the execution's trigger is disabled");
    server.child.kill().await.unwrap();
}
