//! The parts of `benches/scripts/time_to_agent.sh`: how long after a webhook arrives its
//! command is running, against the floor of spawning the same command from a warm runtime.
//!
//! ```text
//! time-to-agent probe STARTS                          # the command: appends "ID NANOS" to STARTS
//! time-to-agent load URL RATE SECONDS SENT            # POSTs at RATE/s (API_KEY), writes "ID NANOS"
//! time-to-agent floor PROBE STARTS RATE SECONDS SENT  # spawns PROBE STARTS at RATE/s
//! time-to-agent report SENT STARTS [WAITS]            # joins them: percentiles, starts/s, each wait
//! ```
//!
//! Times are nanoseconds of the system clock, read in each process on one machine, so that the
//! sender's and the command's clocks are the same clock.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["probe", starts] => probe(starts),
        ["load", url, rate, seconds, sent] => runtime().block_on(load(url, rate, seconds, sent)),
        ["floor", probe, starts, rate, seconds, sent] => {
            runtime().block_on(floor(probe, starts, rate, seconds, sent))
        }
        ["report", sent, starts] => report(sent, starts, None),
        ["report", sent, starts, waits] => report(sent, starts, Some(waits)),
        _ => Err("usage: time-to-agent probe|load|floor|report … (see the file's docs)".into()),
    };
    if let Err(error) = result {
        eprintln!("time-to-agent: {error}");
        std::process::exit(1);
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The command: its first act is to record when it started. One `write` of a short line to a
/// file opened for appending, so concurrent probes never interleave.
fn probe(starts: &str) -> Result {
    let nanos = now_nanos();
    let id = std::env::var("AGENT_TRIGGER_EXECUTION_ID")?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(starts)?;
    file.write_all(format!("{id} {nanos}\n").as_bytes())?;
    Ok(())
}

/// The ticks of an open-loop schedule: `rate` per second for `seconds`, each task started on
/// time whether or not the ones before it finished.
async fn every_tick<F, Fut>(rate: &str, seconds: &str, mut task: F) -> Result
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let count = (rate * seconds).round() as u64;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        interval.tick().await;
        tasks.spawn(task(n));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn load(url: &str, rate: &str, seconds: &str, sent: &str) -> Result {
    let key = std::env::var("API_KEY")?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let lines = Arc::new(Mutex::new(String::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url: http::Uri = url.parse()?;
    every_tick(rate, seconds, |n| {
        let (client, lines, refused) = (client.clone(), lines.clone(), refused.clone());
        let request = Request::post(url.clone())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(format!(r#"{{"n":{n}}}"#))))
            .expect("a request");
        async move {
            let sent_at = now_nanos();
            let answer = match client.request(request).await {
                Ok(response) if response.status() == StatusCode::OK => {
                    response.into_body().collect().await.ok()
                }
                _ => None,
            };
            let id = answer
                .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body.to_bytes()).ok())
                .and_then(|json| json["executionId"].as_str().map(str::to_owned));
            match id {
                Some(id) => lines.lock().await.push_str(&format!("{id} {sent_at}\n")),
                None => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    })
    .await?;
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    if refused > 0 {
        eprintln!("time-to-agent: {refused} requests were not answered 200 with an id");
    }
    std::fs::write(sent, lines.lock().await.as_bytes())?;
    Ok(())
}

async fn floor(probe: &str, starts: &str, rate: &str, seconds: &str, sent: &str) -> Result {
    let lines = Arc::new(Mutex::new(String::new()));
    let (probe, starts) = (probe.to_owned(), starts.to_owned());
    every_tick(rate, seconds, |n| {
        let lines = lines.clone();
        let mut command = tokio::process::Command::new(&probe);
        command
            .args(["probe", &starts])
            .env("AGENT_TRIGGER_EXECUTION_ID", n.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        async move {
            let sent_at = now_nanos();
            match command.status().await {
                Ok(status) if status.success() => {
                    lines.lock().await.push_str(&format!("{n} {sent_at}\n"));
                }
                other => eprintln!("time-to-agent: the probe failed: {other:?}"),
            }
        }
    })
    .await?;
    std::fs::write(sent, lines.lock().await.as_bytes())?;
    Ok(())
}

/// Reads "ID NANOS" lines.
fn read_times(path: &str) -> Result<HashMap<String, u128>> {
    let text = std::fs::read_to_string(path)?;
    let mut times = HashMap::new();
    for line in text.lines() {
        let (id, nanos) = line
            .split_once(' ')
            .ok_or_else(|| format!("{path}: a line without a time: {line:?}"))?;
        times.insert(id.to_owned(), nanos.parse()?);
    }
    Ok(times)
}

/// Prints `sent started p50_ms p99_ms max_ms starts_per_s` for the executions both files name;
/// with `waits_file`, writes each one's time to agent there (ms, one a line, sorted).
fn report(sent: &str, starts: &str, waits_file: Option<&str>) -> Result {
    let sent = read_times(sent)?;
    let starts = read_times(starts)?;
    let mut waits: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            let started = starts.get(id)?;
            Some(started.saturating_sub(*at) as f64 / 1e6)
        })
        .collect();
    if waits.is_empty() {
        return Err("no execution was both sent and started".into());
    }
    waits.sort_by(f64::total_cmp);
    let at = |quantile: f64| waits[((waits.len() - 1) as f64 * quantile).round() as usize];
    let (first, last) = starts
        .values()
        .fold((u128::MAX, 0), |(lo, hi), at| (lo.min(*at), hi.max(*at)));
    let span = (last.saturating_sub(first)) as f64 / 1e9;
    let per_second = if span > 0.0 {
        (starts.len() - 1) as f64 / span
    } else {
        f64::NAN
    };
    println!(
        "{} {} {:.2} {:.2} {:.2} {:.0}",
        sent.len(),
        waits.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        per_second
    );
    if let Some(waits_file) = waits_file {
        let lines: Vec<String> = waits.iter().map(|wait| format!("{wait:.3}")).collect();
        std::fs::write(waits_file, lines.join("\n") + "\n")?;
    }
    Ok(())
}
