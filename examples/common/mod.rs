//! What the benchmarks share: an in-process server, percentiles, the machine's
//! description, and writing a table between markers in docs/PERFORMANCE.md.

use std::time::Duration;

/// The allocator the server binary runs on, so the benchmarks measure what runs.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(dead_code)] // the fan-out benchmark's
pub mod floor;

use synopticon::configuration::Settings;
use synopticon::startup::Application;

/// Starts the server on a free port in its own thread (own actix System) and returns the port.
#[allow(dead_code)] // each example uses one of the two
pub fn start_server() -> u16 {
    start_server_with(|_| {})
}

/// The same, with the settings adjusted first.
pub fn start_server_with(tweak: impl FnOnce(&mut Settings) + Send + 'static) -> u16 {
    synopticon_actors::distributor::http::install_crypto_provider();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut settings, _) = Settings::load_with_env(None, []).expect("embedded default");
        settings.server.port = 0;
        settings.server.max_body_bytes = 16 << 20;
        settings.store.url = "memory".into();
        // The fan-out bench gives its clients room for a second of frames at full rate.
        settings.sessions.max_queue_capacity = 1_000_000;
        settings.sessions.max_client_queue_capacity = 1_000_000;
        settings.log.level = "error".into();
        tweak(&mut settings);
        synopticon::telemetry::init_logging(&settings.log);
        actix_rt::System::new()
            .block_on(async move {
                let app = Application::build(settings).await?;
                tx.send(app.port()).expect("bench alive");
                app.run_until_stopped().await
            })
            .expect("server runs");
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server starts")
}

/// The `p` quantile of sorted microsecond samples, in milliseconds.
#[allow(dead_code)] // not every example measures latency
pub fn percentile_ms<T: Copy + Into<u64>>(sorted: &[T], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].into() as f64 / 1000.0
}

/// "Measured DATE on N cores (CPU)".
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Measured {} on {cores} cores ({cpu})",
        chrono::Utc::now().format("%Y-%m-%d")
    )
}

/// Replaces what stands between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
pub fn write_docs(name: &str, table: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PERFORMANCE.md");
    let doc = std::fs::read_to_string(path).expect("docs/PERFORMANCE.md");
    let (begin, end) = (
        format!("<!-- {name}:begin -->\n"),
        format!("<!-- {name}:end -->"),
    );
    let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("markers for {name} missing in {path}");
    };
    std::fs::write(path, format!("{}{begin}{table}{}", &doc[..b], &doc[e..])).expect("write docs");
    println!("wrote {path}");
}

/// `--name N` flags (numbers) and `--write-docs`, over the defaults given; `--bench`
/// (which `cargo bench` passes) is ignored.
/// The JSON answer of a GET (`null` when there is none).
#[allow(dead_code)] // not every example asks
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Creates a session from `body` on the server at `base`; panics with the answer unless
/// it is 201.
#[allow(dead_code)] // not every example makes sessions
pub async fn create_session(client: &reqwest::Client, base: &str, body: &serde_json::Value) {
    let made = client
        .post(format!("{base}/api/v1/sessions"))
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = made.status();
    assert_eq!(
        status,
        201,
        "POST /api/v1/sessions: {}",
        made.text().await.unwrap_or_default()
    );
}

#[allow(dead_code)] // not every example uses it
pub fn flags(defaults: &[(&str, u64)]) -> (std::collections::HashMap<String, u64>, bool) {
    let mut values: std::collections::HashMap<String, u64> =
        defaults.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let mut write_docs = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--write-docs" => write_docs = true,
            "--bench" => {}
            name if values.contains_key(name.trim_start_matches("--")) => {
                let v = it
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("a number after the flag");
                values.insert(name.trim_start_matches("--").to_string(), v);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    (values, write_docs)
}
