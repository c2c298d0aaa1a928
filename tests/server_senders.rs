//! A signed sender configured in the server's file (contract §8): a `webhook` trigger with the
//! `github` preset verifies GitHub's signature, takes GitHub's delivery id and event, and
//! recognises a redelivery. Through the real binary.
#![cfg(all(feature = "server", unix))]

use agent_trigger_testkit::server_process::*;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use http_body_util::Full;
use sha2::Sha256;

const SECRET: &str = "It's a Secret to Everybody";

fn github_delivery(server: &Server, body: &str, delivery: &str, key: &str) -> Request<Full<Bytes>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_A}")))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .header("x-github-delivery", delivery)
        .header("x-github-event", "issues")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_sender_is_verified_by_its_preset_from_the_configuration() {
    let workspace = Workspace::new("");
    let file = workspace.path().join("config.toml");
    let config = std::fs::read_to_string(&file).unwrap().replace(
        "source = \"webhook\"\n",
        &format!(
            "source = \"webhook\"\nsignature = \"github\"\n[[triggers.secrets]]\nid = \"2026-12\"\nvalue = {SECRET:?}\n"
        ),
    );
    std::fs::write(&file, config).unwrap();
    let server = Server::start(&workspace).await;
    let client = client();
    let body = r#"{"action":"opened","issue":{"number":7}}"#;

    let (status, _, json) = call(&client, github_delivery(&server, body, "d-1", SECRET))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{json}");
    let id = json["executionId"].as_str().unwrap().to_owned();
    let (_, _, execution) = call(&client, status_request(&server, Some(KEY_A), &id))
        .await
        .unwrap();
    assert_eq!(execution["action"], "issues.opened");

    // GitHub redelivers with the same delivery id.
    let (status, headers, json) = call(&client, github_delivery(&server, body, "d-1", SECRET))
        .await
        .unwrap();
    assert_eq!(
        (status, json["executionId"].as_str()),
        (StatusCode::OK, Some(&*id))
    );
    assert_eq!(headers["idempotent-replayed"], "true");

    // A wrong secret, and a trigger that does not exist, answer alike.
    let (status, wrong_headers, wrong) = call(
        &client,
        github_delivery(&server, body, "d-2", "not the secret"),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut unknown = github_delivery(&server, body, "d-3", SECRET);
    *unknown.uri_mut() = server
        .url(&format!("/api/trigger/webhook/{}", uuid::Uuid::now_v7()))
        .parse()
        .unwrap();
    let (status, unknown_headers, unknown) = call(&client, unknown).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    assert_eq!(
        wrong_headers.get("www-authenticate"),
        unknown_headers.get("www-authenticate")
    );
}
