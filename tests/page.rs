//! The page at `GET /` (CONTRACT §11): its headers through HTTP, and the page itself in
//! headless Chromium driven over WebDriver against the real binary: the key entered once,
//! deliveries arriving live, a delivery, an execution's output growing, cancel, replay and
//! redeliver, caller markup shown as text and never run, and no request leaving the server.
//!
//! The browser test needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`): without them it says so and passes, except under
//! `CI=true`, where it fails. It keeps a screenshot of each view in
//! `target/tmp/page-screenshots/`, and copies them to `docs/images/` when
//! `AGENT_TRIGGER_UPDATE_SCREENSHOTS=1`.
#![cfg(all(feature = "server", unix))]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agent_trigger_testkit::server_process::*;
use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what the API already has (it polls every 2 s).
const PATIENCE: Duration = Duration::from_secs(20);

/// The command the executor runs: `slow` prints a numbered line every quarter second for half
/// a minute; anything else prints its input back, markup included.
const AGENT: &str = r#"#!/bin/sh
input=$(cat)
case "$AGENT_TRIGGER_ACTION" in
  slow)
    i=1
    while [ $i -le 120 ]; do echo "line $i"; i=$((i + 1)); sleep 0.25; done
    ;;
  *) printf '%s\n' "$input" ;;
esac
"#;

/// Markup a caller could send: if any of it ran, the title would change and `__pwned` be set.
const HOSTILE: &str = r#"<img src=x onerror="document.title='pwned';window.__pwned=1"><script>window.__pwned=2;document.title='pwned'</script>"#;

// ------------------------------------------------------------------------------ headers

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary_under_a_strict_content_security_policy() {
    let workspace = Workspace::new("");
    let server = Server::start(&workspace).await;
    let client = client();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/page.js", "text/javascript; charset=utf-8"),
        ("/page.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let response = client
            .request(
                Request::get(server.url(path))
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        // Nothing is loaded from, or sent to, anywhere else; no inline script or handler.
        for outside in [
            "http://",
            "https://",
            "//cdn",
            "innerHTML",
            "outerHTML",
            "eval(",
        ] {
            let allowed = path == "/icon.svg" && outside == "http://"; // its XML namespace
            assert!(allowed || !text.contains(outside), "{path} holds {outside}");
        }
        if path == "/" {
            let handler = text
                .split(|c: char| c.is_whitespace() || c == '<')
                .any(|word| word.starts_with("on") && word.contains('='));
            assert!(!text.contains("<script>") && !handler, "{text}");
            assert!(text.contains(r#"<script src="/page.js" defer></script>"#));
        }
    }
    // The page needs no key; the API behind it does.
    let response = client
        .request(
            Request::get(server.url("/api/executions"))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

// ------------------------------------------------------------------------------ the browser

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_deliveries_and_executions_live_operates_them_and_runs_no_caller_markup() {
    let Some(browser) =
        Browser::start("the_page_follows_deliveries_and_executions_live_operates_them").await
    else {
        return;
    };
    let probe = Workspace::new("");
    let script = probe.path().join("agent.sh");
    std::fs::write(&script, AGENT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let workspace = Workspace::new(&format!(
        "[executor]\ncommand = [\"{}\"]\nworkers = 3\n",
        script.display()
    ));
    with_prompt(&workspace, "Handle {{ body.type }}: {{ body.text }}");
    let server = Server::start(&workspace).await;
    let page = &browser.client;
    let shots = Screenshots::new();

    // The key, entered once with the keyboard.
    page.goto(&server.url("/")).await.unwrap();
    script_value(
        page,
        "performance.setResourceTimingBufferSize(100000); return true",
    )
    .await;
    let input = page
        .wait()
        .for_element(Locator::Css("#key-input"))
        .await
        .unwrap();
    shots.take(page, "key").await;
    input.send_keys(&format!("{KEY_A}\n")).await.unwrap();
    wait_text(page, "#view-title", "Deliveries").await;
    script_value(page, "window.__sameDocument = true; return true").await;

    // Focus is visible when moving with the keyboard.
    page.active_element()
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let outline = script_value(
        page,
        "const e = document.activeElement; return [e.tagName, getComputedStyle(e).outlineStyle]",
    )
    .await;
    assert!(
        matches!(
            outline[0].as_str(),
            Some("A" | "BUTTON" | "SELECT" | "INPUT")
        ),
        "{outline}"
    );
    assert_ne!(outline[1], "none", "the focused control shows no outline");

    // A delivery arrives while the page is open, and shows without a reload; before it, one
    // the endpoint refused, which the log keeps too.
    let refused = Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_A}")))
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"type\": \"note\",")))
        .unwrap();
    let (status, _, _) = call(&client(), refused).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let slow = deliver(
        &server,
        json!({"type": "slow", "text": "count to a hundred and twenty"}),
    )
    .await;
    let row = format!("tr[data-id]:has(a[href='#/executions/{slow}'])");
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&row))
        .await
        .expect("the new delivery appears in the list without a reload");
    assert_eq!(
        script_value(page, "return window.__sameDocument === true").await,
        true
    );
    wait_text(page, "#view tbody", "invalid_json").await;
    shots.take(page, "deliveries").await;

    // The delivery: its outcome, headers (the key redacted) and body.
    page.find(Locator::Css(&format!("{row} td[data-label='Delivery'] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#delivery-outcome", "started").await;
    let delivery_id = fragment(page)
        .await
        .strip_prefix("/deliveries/")
        .expect("the delivery's own address")
        .to_owned();
    let headers = page
        .find(Locator::Css("#delivery-headers"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(headers.contains("[redacted]"), "{headers}");
    assert!(
        !page.source().await.unwrap().contains(KEY_A),
        "the key shows on the page"
    );
    wait_text(page, "#delivery-body", "count to a hundred and twenty").await;
    shots.take(page, "delivery").await;

    // Its execution: the output grows while the page watches.
    page.find(Locator::Css(&format!("dd a[href='#/executions/{slow}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#execution-output", "line 3").await;
    let early = text(page, "#execution-output").await.lines().count();
    eventually("the output to grow", || async {
        (text(page, "#execution-output").await.lines().count() >= early + 4).then_some(())
    })
    .await;
    assert!(
        text(page, "#execution-prompt")
            .await
            .contains("Handle slow: count to a hundred and twenty")
    );
    shots.take(page, "execution").await;

    // Cancel it.
    page.find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#execution-status", "cancelled").await;
    assert!(!is_enabled(page, "#cancel").await);

    // Replay it: the page moves to the new execution, which names the one it copies.
    page.find(Locator::Css("#replay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let replay = eventually("the replay's page", || async {
        let here = fragment(page).await;
        let id = here.strip_prefix("/executions/")?.to_owned();
        (id != slow).then_some(id)
    })
    .await;
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&format!("dd a[href='#/executions/{slow}']")))
        .await
        .expect("the replay links to the execution it copies");
    wait_text(page, "#execution-output", "line 2").await;
    page.find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#execution-status", "cancelled").await;
    assert_ne!(replay, slow);

    // Redeliver the delivery: a new execution, linked from the answer.
    navigate(page, &format!("#/deliveries/{delivery_id}")).await;
    wait_text(page, "#delivery-outcome", "started").await;
    page.find(Locator::Css("#redeliver"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let redelivered = page
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#redeliver-result a.id"))
        .await
        .expect("the redelivery names its execution")
        .text()
        .await
        .unwrap();
    assert!(
        redelivered != slow && redelivered != replay,
        "{redelivered}"
    );

    // Markup in a body, a header, a prompt and an output is shown as text and runs nothing.
    navigate(page, "#/deliveries").await;
    let hostile = deliver_with(
        &server,
        json!({"type": "note", "text": HOSTILE}),
        &[("x-note", HOSTILE)],
    )
    .await;
    let row = format!("tr[data-id]:has(a[href='#/executions/{hostile}'])");
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&row))
        .await
        .expect("the hostile delivery appears");
    page.find(Locator::Css(&format!("{row} td[data-label='Delivery'] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(page, "#delivery-body", "<img src=x onerror=").await;
    assert!(text(page, "#delivery-body").await.contains("<script>"));
    assert!(text(page, "#delivery-headers").await.contains("<img src=x"));
    assert_nothing_ran(page).await;
    shots.take(page, "delivery-markup").await;
    navigate(page, &format!("#/executions/{hostile}")).await;
    wait_text(page, "#execution-output", "<script>").await;
    assert!(text(page, "#execution-prompt").await.contains("<img src=x"));
    assert_nothing_ran(page).await;

    // The triggers, with their counts, and the executions list.
    page.find(Locator::Css("#nav a[data-view='triggers']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&format!("tr[data-id='{TRIGGER_A}']")))
        .await
        .expect("the key's trigger is listed");
    wait_text(page, &format!("tr[data-id='{TRIGGER_A}']"), "started").await;
    assert!(
        page.find(Locator::Css(&format!("tr[data-id='{TRIGGER_B}']")))
            .await
            .is_err(),
        "another tenant's trigger is listed"
    );
    shots.take(page, "triggers").await;
    page.find(Locator::Css("#nav a[data-view='executions']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for id in [&slow, &replay, &redelivered, &hostile] {
        page.wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(&format!("tr[data-id='{id}']")))
            .await
            .expect("every execution is listed");
    }
    shots.take(page, "executions").await;

    // A phone's width: the lists become cards.
    page.set_window_size(390, 844).await.unwrap();
    navigate(page, "#/deliveries").await;
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("tr[data-id]"))
        .await
        .unwrap();
    let wider = script_value(
        page,
        "return [...document.querySelectorAll('body *')]
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map((e) => `${e.tagName}#${e.id}.${e.className}`)",
    )
    .await;
    assert_eq!(wider, json!([]), "wider than a phone's screen");
    shots.take(page, "deliveries-phone").await;
    navigate(page, &format!("#/executions/{slow}")).await;
    wait_text(page, "#execution-status", "cancelled").await;
    shots.take(page, "execution-phone").await;

    // Not one request went anywhere but the server, and none carried the key in its URL.
    let origin = server.url("/");
    let resources = script_value(
        page,
        "return performance.getEntriesByType('resource').map((entry) => entry.name)",
    )
    .await;
    let resources = resources.as_array().unwrap();
    assert!(resources.len() > 10, "{resources:?}");
    for url in resources {
        let url = url.as_str().unwrap();
        assert!(url.starts_with(&origin), "a request left the origin: {url}");
        assert!(!url.contains(KEY_A), "the key went in a URL: {url}");
    }
    assert_nothing_ran(page).await;

    // The key outlives a reload of the tab; forgotten, it is gone; a wrong one is refused.
    page.refresh().await.unwrap();
    wait_text(page, "#view-title", "Execution").await;
    page.find(Locator::Css("#forget"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = page
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#key-input"))
        .await
        .unwrap();
    assert_eq!(
        script_value(page, "return sessionStorage.length").await,
        0,
        "the key stays in the tab after Forget key"
    );
    input
        .send_keys("atk_not_a_key_of_this_server_000000000000000\n")
        .await
        .unwrap();
    wait_text(page, "#status", "refused this key").await;
    assert!(
        page.find(Locator::Css("#login"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    browser.close().await;
}

/// No caller markup ran: the title and globals are untouched, no element came from a body,
/// nothing was fetched from `x`, and the page counted no policy violation.
async fn assert_nothing_ran(page: &Client) {
    let state = script_value(
        page,
        "return {
            title: document.title,
            pwned: window.__pwned === undefined ? null : String(window.__pwned),
            markup: document.querySelectorAll('#view img, #view script').length,
            fetchedX: performance.getEntriesByType('resource')
                .filter((entry) => new URL(entry.name).pathname === '/x').length,
            violations: document.documentElement.dataset.cspViolations || '0',
        }",
    )
    .await;
    assert_eq!(
        state,
        json!({"title": "agent-trigger", "pwned": null, "markup": 0, "fetchedX": 0, "violations": "0"})
    );
}

// ------------------------------------------------------------------------------ helpers

/// Headless Chromium behind its WebDriver, both ended when dropped.
struct Browser {
    client: Client,
    _driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// The browser, or `None` with a line saying why when it is not installed (a failure under
    /// `CI=true`).
    async fn start(test: &str) -> Option<Browser> {
        if !(Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()) {
            if std::env::var("CI").is_ok_and(|value| value == "true") {
                panic!("{test}: {CHROMIUM} and {CHROMEDRIVER} are required under CI=true");
            }
            eprintln!(
                "SKIPPED {test}: no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile =
            std::env::temp_dir().join(format!("agent-trigger-page-{}", uuid::Uuid::now_v7()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests run as root in CI, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let address = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to start a session", || {
            let capabilities = capabilities.clone();
            let address = address.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&address)
                    .await
                    .ok()
            }
        })
        .await;
        Some(Browser {
            client,
            _driver: driver,
            profile,
        })
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where screenshots go: `target/tmp/page-screenshots/`, and `docs/images/` on request.
struct Screenshots {
    kept: PathBuf,
    docs: Option<PathBuf>,
}

impl Screenshots {
    fn new() -> Self {
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
        std::fs::create_dir_all(&kept).unwrap();
        let docs = std::env::var("AGENT_TRIGGER_UPDATE_SCREENSHOTS")
            .is_ok_and(|value| value == "1")
            .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images"));
        Screenshots { kept, docs }
    }

    async fn take(&self, page: &Client, view: &str) {
        // Let the last poll's rows and the fonts settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = page.screenshot().await.unwrap();
        let name = format!("page-{view}.png");
        std::fs::write(self.kept.join(&name), &png).unwrap();
        if let Some(docs) = &self.docs {
            std::fs::create_dir_all(docs).unwrap();
            std::fs::write(docs.join(&name), &png).unwrap();
        }
    }
}

/// `what` within [`PATIENCE`]: `check` is tried every 100 ms until it answers `Some`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn script_value(page: &Client, script: &str) -> Value {
    page.execute(script, Vec::new()).await.unwrap()
}

/// The text of the element `css`, or "" while there is none.
async fn text(page: &Client, css: &str) -> String {
    match page.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits for the element `css` to show `wanted`; past [`PATIENCE`], fails with what the page
/// shows instead, and a screenshot of it in `target/tmp/page-screenshots/failure.png`.
async fn wait_text(page: &Client, css: &str, wanted: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !text(page, css).await.contains(wanted) {
        if tokio::time::Instant::now() >= deadline {
            let png = page.screenshot().await.unwrap_or_default();
            let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
            let _ = std::fs::create_dir_all(&shots);
            let _ = std::fs::write(shots.join("failure.png"), png);
            panic!(
                "waited {PATIENCE:?} for {css} to show {wanted:?}; the page shows {:?} and says {:?}",
                text(page, "#main").await,
                text(page, "#status").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn is_enabled(page: &Client, css: &str) -> bool {
    page.find(Locator::Css(css))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap()
}

/// The page's address after `#`.
async fn fragment(page: &Client) -> String {
    page.current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap_or_default()
        .to_owned()
}

/// Moves the page to `hash` as a link would: the same document, no reload.
async fn navigate(page: &Client, hash: &str) {
    page.execute("location.hash = arguments[0]", vec![json!(hash)])
        .await
        .unwrap();
}

/// Adds `prompt` to the configuration's first trigger (the tenant `acme`'s, `TRIGGER_A`).
fn with_prompt(workspace: &Workspace, prompt: &str) {
    let path = workspace.path().join("config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config.replacen(
        "source = \"webhook\"\n",
        &format!("source = \"webhook\"\nprompt = {}\n", json!(prompt)),
        1,
    );
    std::fs::write(&path, config).unwrap();
}

async fn deliver(server: &Server, body: Value) -> String {
    deliver_with(server, body, &[]).await
}

/// A delivery to `TRIGGER_A` with `KEY_A` and extra headers; its execution id.
async fn deliver_with(server: &Server, body: Value, headers: &[(&str, &str)]) -> String {
    let mut request = Request::post(server.url(&format!("/api/trigger/webhook/{TRIGGER_A}")))
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _, answer) = call(&client(), request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["executionId"].as_str().unwrap().to_owned()
}
