//! §11 through the real `agent-trigger` binary: what the deliveries log records and what it
//! does not, tenant isolation, redaction (in every answer and in the database file), bodies
//! kept only for authenticated requests, the per-trigger bound, `GET /api/triggers`, and
//! redelivery with its `409`s.
#![cfg(all(feature = "server", unix))]

use std::time::Duration;

pub mod common;

use agent_trigger_testkit::server_process::{self, *};
use bytes::Bytes;
use common::postgres::TestSchema;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

/// A Jira trigger that signs with this secret (acme).
const SIGNED: &str = "1c3f6a0e-8f5b-4d2a-9c7e-2b1d0e9f8a71";
const SIGNING_SECRET: &str = "jira-signing-secret-value-0123456789";
/// A trigger that keeps 20 records, of them 2 refused (acme).
const SMALL: &str = "5e2a9b1c-3d4f-4a6b-8c7d-9e0f1a2b3c4d";
/// A disabled trigger (acme).
const DISABLED: &str = "7d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f3a";
/// A trigger that takes one delivery an hour (acme).
const RATED: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// Keys of acme that may only read, and only operate.
const READER: &str = "atk_reader_test_key_000000000000000000000000";
const OPERATOR: &str = "atk_operator_test_key_0000000000000000000000";

fn workspace() -> Workspace {
    let workspace = Workspace::new("");
    let config = format!(
        r#"
database = "executions.db"

[[keys]]
id = "a"
tenant = "acme"
env = "TEST_KEY_A"

[[keys]]
id = "b"
tenant = "globex"
env = "TEST_KEY_B"

[[keys]]
id = "reader"
tenant = "acme"
env = "TEST_KEY_READER"
can = ["read"]

[[keys]]
id = "operator"
tenant = "acme"
env = "TEST_KEY_OPERATOR"
can = ["operate"]

[[triggers]]
id = "{TRIGGER_A}"
tenant = "acme"
source = "webhook"

[[triggers]]
id = "{TRIGGER_B}"
tenant = "globex"
source = "jira-automation"

[[triggers]]
id = "{SIGNED}"
tenant = "acme"
source = "jira"
[[triggers.secrets]]
id = "s1"
value = "{SIGNING_SECRET}"

[[triggers]]
id = "{SMALL}"
tenant = "acme"
source = "webhook"
delivery_log_max = 20

[[triggers]]
id = "{DISABLED}"
tenant = "acme"
source = "webhook"
enabled = false

[[triggers]]
id = "{RATED}"
tenant = "acme"
source = "webhook"
rate_limit = "1/h"
"#
    );
    std::fs::write(workspace.path().join("config.toml"), config).unwrap();
    workspace
}

async fn start(workspace: &Workspace) -> Server {
    start_on(workspace, None).await
}

/// The server on the workspace's SQLite file, or on PostgreSQL in `schema`.
async fn start_on(workspace: &Workspace, schema: Option<&TestSchema>) -> Server {
    let mut env = vec![
        ("TEST_KEY_READER", READER.to_owned()),
        ("TEST_KEY_OPERATOR", OPERATOR.to_owned()),
    ];
    if let Some(schema) = schema {
        // The schema exists and is migrated before the server starts.
        drop(schema.store().await);
        env.push(("AGENT_TRIGGER_DATABASE_URL", schema.url_with_schema()));
    }
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    Server::start_with(workspace, &env).await
}

fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn get(server: &Server, path: &str, key: &str) -> Request<Full<Bytes>> {
    Request::get(server.url(path))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::default())
        .unwrap()
}

/// A delivery to `trigger` (a `webhook` one) with `key`.
fn deliver(server: &Server, trigger: &str, key: &str, body: &str) -> Request<Full<Bytes>> {
    let authorization = format!("Bearer {key}");
    post(
        server,
        &format!("/api/trigger/webhook/{trigger}"),
        &[
            ("authorization", &authorization),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// A delivery to the signed Jira trigger, signed with `secret`.
fn signed(server: &Server, secret: &str, body: &str) -> (Request<Full<Bytes>>, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let request = post(
        server,
        &format!("/api/trigger/jira/{SIGNED}"),
        &[
            ("x-hub-signature", &signature),
            ("content-type", "application/json"),
        ],
        body,
    );
    (request, signature)
}

/// The key's records, newest first, once `count` of them (at least) are written: the log may
/// trail the answers by a moment.
async fn records(
    client: &HttpClient,
    server: &Server,
    key: &str,
    query: &str,
    count: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = call(
            client,
            get(server, &format!("/api/deliveries?limit=100{query}"), key),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = body["deliveries"].as_array().unwrap().clone();
        if list.len() >= count || tokio::time::Instant::now() > deadline {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(list: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    list.iter()
        .filter(|record| record["outcome"] == outcome)
        .collect()
}

#[tokio::test]
async fn what_is_recorded_and_whose_it_is() {
    let workspace = workspace();
    recorded_and_whose(&start(&workspace).await).await;
}

#[tokio::test]
async fn what_is_recorded_and_whose_it_is_on_postgres() {
    let Some(schema) = TestSchema::new("what_is_recorded_and_whose_it_is_on_postgres").await else {
        return;
    };
    let workspace = workspace();
    recorded_and_whose(&start_on(&workspace, Some(&schema)).await).await;
}

async fn recorded_and_whose(server: &Server) {
    let client = server_process::client();

    let (status, _, started) = call(
        &client,
        deliver(server, TRIGGER_A, KEY_A, r#"{"type":"deploy"}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    // Not recorded: an invalid key, another tenant's trigger, an unknown trigger.
    let wrong_key = "atk_not_a_key_of_this_server_0000000000000000";
    let (status, _, _) = call(&client, deliver(server, TRIGGER_A, wrong_key, "{}"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let authorization = format!("Bearer {KEY_A}");
    let (status, _, _) = call(
        &client,
        post(
            server,
            &format!("/api/trigger/jira-automation/{TRIGGER_B}"),
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            "{}",
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = Uuid::now_v7().to_string();
    let (status, _, _) = call(&client, deliver(server, &unknown, KEY_A, "{}"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Recorded: a refusal of a valid key (invalid JSON), and globex's own delivery.
    let (status, _, _) = call(&client, deliver(server, TRIGGER_A, KEY_A, "{"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let authorization_b = format!("Bearer {KEY_B}");
    let (status, _, _) = call(
        &client,
        post(
            server,
            &format!("/api/trigger/jira-automation/{TRIGGER_B}"),
            &[
                ("authorization", &authorization_b),
                ("content-type", "application/json"),
            ],
            "{}",
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);

    let acme = records(&client, server, KEY_A, "", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acme_again = records(&client, server, KEY_A, "", 2).await;
    assert_eq!(acme.len(), 2, "{acme:?}");
    assert_eq!(acme_again.len(), 2, "nothing else arrives: {acme_again:?}");
    // Newest first, with the answer's status and outcome, the caller and the execution.
    assert_eq!(acme[0]["outcome"], "invalid_json");
    assert_eq!(acme[0]["status"], 400);
    assert!(acme[0]["reason"].as_str().unwrap().contains("JSON"));
    let first = &acme[1];
    assert_eq!(first["outcome"], "started");
    assert_eq!(first["status"], 200);
    assert_eq!(first["executionId"], started["executionId"]);
    assert_eq!(
        first["caller"],
        serde_json::json!({"kind": "key", "id": "a"})
    );
    assert_eq!(first["triggerId"], TRIGGER_A);
    assert_eq!(first["source"], "webhook");
    assert_eq!(first["action"], "deploy");
    assert_eq!(first["bodyBytes"], 17);
    assert!(first["durationMs"].as_f64().unwrap() >= 0.0);
    assert!(first.get("body").is_none(), "a list shows no body");

    // Filters.
    let only = records(&client, server, KEY_A, "&outcome=started", 1).await;
    assert_eq!(only.len(), 1);
    let paged = records(&client, server, KEY_A, "", 2).await;
    let (_, _, page) = call(&client, get(server, "/api/deliveries?limit=1", KEY_A))
        .await
        .unwrap();
    assert_eq!(page["deliveries"][0]["id"], paged[0]["id"]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, _, next) = call(
        &client,
        get(
            server,
            &format!("/api/deliveries?limit=1&cursor={cursor}"),
            KEY_A,
        ),
    )
    .await
    .unwrap();
    assert_eq!(next["deliveries"][0]["id"], paged[1]["id"]);
    for bad in ["limit=0", "limit=101", "outcome=Started", "cursor=nope"] {
        let (status, _, _) = call(
            &client,
            get(server, &format!("/api/deliveries?{bad}"), KEY_A),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Tenant isolation: globex sees its own record only, and acme's as unknown.
    let globex = records(&client, server, KEY_B, "", 1).await;
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0]["triggerId"], TRIGGER_B);
    let acme_id = first["id"].as_str().unwrap();
    for (request, what) in [
        (
            get(server, &format!("/api/deliveries/{acme_id}"), KEY_B),
            "show",
        ),
        (
            Request::post(server.url(&format!("/api/deliveries/{acme_id}/redeliver")))
                .header("authorization", format!("Bearer {KEY_B}"))
                .body(Full::default())
                .unwrap(),
            "redeliver",
        ),
        (
            get(
                server,
                &format!("/api/deliveries/{}", Uuid::now_v7()),
                KEY_A,
            ),
            "unknown",
        ),
    ] {
        let (status, _, body) = call(&client, request).await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
        assert_eq!(
            body,
            serde_json::json!({"error": "delivery not found"}),
            "{what}"
        );
    }
    let (_, _, listed) = call(
        &client,
        get(
            server,
            &format!("/api/deliveries?triggerId={TRIGGER_A}"),
            KEY_B,
        ),
    )
    .await
    .unwrap();
    assert_eq!(listed["deliveries"], serde_json::json!([]));

    // Rights: a reader reads, an operator-only key does not.
    let (status, _, _) = call(&client, get(server, "/api/deliveries", READER))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&client, get(server, "/api/deliveries", OPERATOR))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        &client,
        get(server, &format!("/api/deliveries/{acme_id}"), OPERATOR),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&client, get(server, "/api/triggers", OPERATOR))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The triggers, with counts by outcome over the last day.
    let (status, _, triggers) = call(&client, get(server, "/api/triggers", KEY_A))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let triggers = triggers["triggers"].as_array().unwrap();
    let ids: Vec<&str> = triggers.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(
        !ids.contains(&TRIGGER_B),
        "another tenant's trigger: {ids:?}"
    );
    assert_eq!(ids.len(), 5, "{ids:?}");
    let hook = triggers.iter().find(|t| t["id"] == TRIGGER_A).unwrap();
    assert_eq!(hook["source"], "webhook");
    assert_eq!(hook["enabled"], true);
    assert_eq!(
        hook["counts"],
        serde_json::json!({"started": 1, "invalid_json": 1})
    );
    let disabled = triggers.iter().find(|t| t["id"] == DISABLED).unwrap();
    assert_eq!(disabled["enabled"], false);
}

#[tokio::test]
async fn no_key_or_signature_value_is_kept_and_rejected_bodies_are_not() {
    let workspace = workspace();
    let server = start(&workspace).await;
    let client = server_process::client();

    let cookie = "session=cookie-value-that-must-not-be-kept";
    let authorization = format!("Bearer {KEY_A}");
    let (status, _, _) = call(
        &client,
        post(
            &server,
            &format!("/api/trigger/webhook/{TRIGGER_A}"),
            &[
                ("authorization", &authorization),
                ("cookie", cookie),
                ("content-type", "application/json"),
                ("x-request-note", "kept as it is"),
            ],
            r#"{"accepted":"body-of-a-keyed-request"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (request, good_signature) = signed(
        &server,
        SIGNING_SECRET,
        r#"{"webhookEvent":"jira:issue_created","n":"body-that-verified"}"#,
    );
    let (status, _, _) = call(&client, request).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (request, bad_signature) = signed(
        &server,
        "not-the-secret",
        r#"{"n":"body-of-a-forged-request"}"#,
    );
    let (status, _, _) = call(&client, request).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let list = records(&client, &server, KEY_A, "", 3).await;
    assert_eq!(list.len(), 3, "{list:?}");
    let mut everything = serde_json::to_string(&list).unwrap();
    let mut details = Vec::new();
    for record in &list {
        let id = record["id"].as_str().unwrap();
        let (status, _, detail) = call(
            &client,
            get(&server, &format!("/api/deliveries/{id}"), KEY_A),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        everything.push_str(&detail.to_string());
        details.push(detail);
    }
    let header = |detail: &Value, name: &str| -> Option<String> {
        detail["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|header| header["name"] == name)
            .map(|header| header["value"].as_str().unwrap().to_owned())
    };

    // The forged request: recorded with its outcome, its size, no caller and no body.
    let forged = details
        .iter()
        .find(|d| d["outcome"] == "invalid_signature")
        .unwrap();
    assert_eq!(forged["status"], 401);
    assert_eq!(forged["caller"]["kind"], "none");
    assert_eq!(forged["body"], Value::Null);
    assert!(forged["bodyBytes"].as_u64().unwrap() > 0);
    assert_eq!(
        header(forged, "x-hub-signature").as_deref(),
        Some("[redacted]")
    );
    // The verified one: its body, and the secret's id as its caller.
    let verified = details
        .iter()
        .find(|d| d["triggerId"] == SIGNED && d["outcome"] == "started")
        .unwrap();
    assert_eq!(
        verified["caller"],
        serde_json::json!({"kind": "signature", "id": "s1"})
    );
    assert!(
        verified["body"]
            .as_str()
            .unwrap()
            .contains("body-that-verified")
    );
    assert_eq!(
        header(verified, "x-hub-signature").as_deref(),
        Some("[redacted]")
    );
    // The keyed one: its body, credentials redacted, other headers as sent.
    let keyed = details
        .iter()
        .find(|d| d["triggerId"] == TRIGGER_A)
        .unwrap();
    assert_eq!(keyed["bodyEncoding"], "utf-8");
    assert!(
        keyed["body"]
            .as_str()
            .unwrap()
            .contains("body-of-a-keyed-request")
    );
    assert_eq!(
        header(keyed, "authorization").as_deref(),
        Some("[redacted]")
    );
    assert_eq!(header(keyed, "cookie").as_deref(), Some("[redacted]"));
    assert_eq!(
        header(keyed, "x-request-note").as_deref(),
        Some("kept as it is")
    );

    // Nowhere in the API's answers …
    for secret in [
        KEY_A,
        cookie,
        &good_signature,
        &bad_signature,
        "body-of-a-forged-request",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} in the API's answers"
        );
    }
    // … nor in the database, once the server has stopped and its WAL is checkpointed.
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(workspace.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("executions.db")
        {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("body-that-verified"),
        "the database was read"
    );
    for secret in [
        KEY_A,
        cookie,
        &good_signature,
        &bad_signature,
        "body-of-a-forged-request",
    ] {
        assert!(!stored.contains(secret), "{secret} in the database");
    }
}

#[tokio::test]
async fn each_trigger_keeps_its_newest_records_and_few_refusals() {
    let workspace = workspace();
    the_bound(&start(&workspace).await).await;
}

#[tokio::test]
async fn each_trigger_keeps_its_newest_records_and_few_refusals_on_postgres() {
    let Some(schema) = TestSchema::new("each_trigger_keeps_its_newest_records_on_postgres").await
    else {
        return;
    };
    let workspace = workspace();
    the_bound(&start_on(&workspace, Some(&schema)).await).await;
}

async fn the_bound(server: &Server) {
    let client = server_process::client();
    for index in 0..30 {
        let (status, _, _) = call(
            &client,
            deliver(server, SMALL, KEY_A, &format!(r#"{{"n":{index}}}"#)),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        if index % 3 == 0 {
            let (status, _, _) = call(&client, deliver(server, SMALL, KEY_A, "not json"))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }
    // One more delivery to another trigger, written after all of those.
    let (status, _, _) = call(&client, deliver(server, TRIGGER_A, KEY_A, "{}"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while records(
        &client,
        server,
        KEY_A,
        &format!("&triggerId={TRIGGER_A}"),
        1,
    )
    .await
    .is_empty()
        && tokio::time::Instant::now() < deadline
    {}
    let kept = records(&client, server, KEY_A, &format!("&triggerId={SMALL}"), 100).await;
    assert_eq!(kept.len(), 20, "delivery_log_max = 20");
    assert_eq!(
        of(&kept, "invalid_json").len(),
        2,
        "a tenth of them refused"
    );
    // The newest ones: the last delivery's body was {"n":29}.
    let newest = kept[0]["id"].as_str().unwrap();
    let (_, _, detail) = call(
        &client,
        get(server, &format!("/api/deliveries/{newest}"), KEY_A),
    )
    .await
    .unwrap();
    assert_eq!(detail["body"], r#"{"n":29}"#);
}

#[tokio::test]
async fn redeliver_runs_the_kept_body_again_as_the_operators_delivery() {
    let workspace = workspace();
    let server = start(&workspace).await;
    let client = server_process::client();
    let redeliver = |key: &str, id: &str| {
        Request::post(server.url(&format!("/api/deliveries/{id}/redeliver")))
            .header("authorization", format!("Bearer {key}"))
            .body(Full::default())
            .unwrap()
    };

    let authorization = format!("Bearer {KEY_A}");
    let (status, _, original) = call(
        &client,
        post(
            &server,
            &format!("/api/trigger/webhook/{TRIGGER_A}"),
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
                ("idempotency-key", "delivery-1"),
            ],
            r#"{"type":"deploy"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (request, _) = signed(&server, "not-the-secret", "{}");
    call(&client, request).await.unwrap();
    let (status, _, _) = call(&client, deliver(&server, DISABLED, KEY_A, "{}"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let list = records(&client, &server, KEY_A, "", 3).await;
    let find = |trigger: &str| {
        list.iter()
            .find(|record| record["triggerId"] == trigger)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (started, forged, disabled) = (find(TRIGGER_A), find(SIGNED), find(DISABLED));

    // Twice, by the operator-only key: two new executions, never the original's (the
    // delivery id is not taken along).
    let mut executions = Vec::new();
    for _ in 0..2 {
        let (status, _, answer) = call(&client, redeliver(OPERATOR, &started)).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        let id = answer["executionId"].as_str().unwrap().to_owned();
        assert_ne!(answer["executionId"], original["executionId"]);
        executions.push(id);
    }
    assert_ne!(executions[0], executions[1]);
    let (status, _, execution) = call(
        &client,
        status_request(&server, Some(KEY_A), &executions[0]),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["action"], "deploy");
    // The redeliveries are in the log, as the operator's.
    let list = records(&client, &server, KEY_A, "&outcome=started", 3).await;
    let redelivered = list
        .iter()
        .find(|record| record["executionId"] == executions[1].as_str())
        .unwrap();
    assert_eq!(
        redelivered["caller"],
        serde_json::json!({"kind": "key", "id": "operator"})
    );
    assert_eq!(redelivered["deliveryId"], Value::Null);

    // A body that was not kept, a disabled trigger: 409.
    for (id, why) in [(&forged, "not kept"), (&disabled, "disabled")] {
        let (status, _, answer) = call(&client, redeliver(KEY_A, id)).await.unwrap();
        assert_eq!(status, StatusCode::CONFLICT, "{why}: {answer}");
        assert!(answer["error"].is_string());
    }
    // A redelivery counts against the trigger's rate.
    let (status, _, _) = call(&client, deliver(&server, RATED, KEY_A, "{}"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let rated = records(&client, &server, KEY_A, &format!("&triggerId={RATED}"), 1).await;
    let rated = rated[0]["id"].as_str().unwrap();
    let (status, headers, _) = call(&client, redeliver(KEY_A, rated)).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));

    // A key that may only read: as unknown.
    let (status, _, _) = call(&client, redeliver(READER, &started)).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A removed trigger: 409, after a reload without it.
    let config = std::fs::read_to_string(workspace.path().join("config.toml")).unwrap();
    let without = config.replace(
        &format!("[[triggers]]\nid = \"{TRIGGER_A}\"\ntenant = \"acme\"\nsource = \"webhook\"\n"),
        "",
    );
    assert_ne!(config, without);
    std::fs::write(workspace.path().join("config.toml"), without).unwrap();
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, answer) = call(&client, redeliver(KEY_A, &started)).await.unwrap();
        if status == StatusCode::CONFLICT {
            assert_eq!(answer["error"], "the delivery's trigger was removed");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reloaded: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
