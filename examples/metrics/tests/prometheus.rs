//! The example against the real components: `promtool check metrics` on what it serves
//! (PROM-1), and a real Prometheus server scraping it, whose HTTP API must return the
//! workload's known counts (PROM-2, PROM-3, PROM-4).
//!
//! The binaries come from `CADENCE_PROMETHEUS_BIN` and `CADENCE_PROMTOOL_BIN`, which
//! `cargo xtask test` sets. Unset, the tests fail under CI or `CADENCE_SERVICES_REQUIRED`,
//! and are skipped with a notice otherwise.

#[path = "../../../cadence-prometheus/tests/common/mod.rs"]
mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{promtool_check, service_bin, value};
use serde_json::Value;

/// How long Prometheus may take to start and scrape the first samples.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) when dropped, on success and failure alike.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Starts the example on a free port; returns it and its `host:port`.
fn start_example() -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-metrics"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting example-metrics");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("example-metrics exited before listening")
            .expect("reading its output");
        if let Some(url) = line.strip_prefix("listening on http://") {
            break url.trim().to_owned();
        }
    };
    (child, addr)
}

/// A plain HTTP/1.1 GET; returns the status code and the body (chunked bodies decoded).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers in {raw:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// Percent-encodes a query parameter value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A free port on 127.0.0.1 (free when asked; the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// A Prometheus server scraping `target` every second through `file_sd_configs`.
struct Prometheus {
    _child: Killed,
    addr: String,
    dir: TempDir,
}

impl Prometheus {
    fn start(bin: &str, target: &str) -> Self {
        let dir = TempDir::new("cadence-prometheus-test");
        let targets = dir.0.join("targets.json");
        fs::write(&targets, format!(r#"[{{"targets":["{target}"]}}]"#)).unwrap();
        let config = dir.0.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: cadence-example\n    scrape_interval: 1s\n    \
                 file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                targets.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        Prometheus {
            _child: Killed(child),
            addr,
            dir,
        }
    }

    /// The result vector of an instant query, or an error (server not up yet, bad answer).
    fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", encode(q)))
            .map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match v["data"]["result"].as_array() {
            Some(r) if v["status"] == "success" => Ok(r.clone()),
            _ => Err(format!("unexpected answer: {body}")),
        }
    }

    /// Polls `q` until it returns at least `n` series; panics with the server's log after
    /// [`SCRAPE_TIMEOUT`].
    fn wait_for(&self, q: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        loop {
            let last = match self.query(q) {
                Ok(r) if r.len() >= n => return r,
                Ok(r) => format!("{} series: {r:?}", r.len()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default();
                panic!(
                    "Prometheus did not return {n} series for `{q}` within {SCRAPE_TIMEOUT:?}: \
                     {last}\nits log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The value of the series in `result` whose labels include every `(name, value)` pair.
fn series_value(result: &[Value], labels: &[(&str, &str)]) -> f64 {
    let series = result
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
        .unwrap_or_else(|| panic!("no series with {labels:?} in {result:#?}"));
    series["value"][1]
        .as_str()
        .expect("a sample value")
        .parse()
        .expect("a number")
}

#[test]
fn the_served_exposition_passes_promtool() {
    // PROM-1
    let (_example, addr) = start_example();
    let (status, body) = http_get(&addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &body,
            r#"cadence_runs_total{cadence="orders",outcome="success"}"#
        ),
        24.0
    );
    if let Some(Err(out)) = promtool_check(&body) {
        panic!("promtool check metrics failed:\n{out}\nexposition:\n{body}");
    }
}

#[test]
fn once_serves_one_scrape_and_exits() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-metrics"))
        .arg("--once")
        .env("METRICS_PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting example-metrics");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("listening on http://")
                .map(str::to_owned)
        })
        .expect("a listening line");
    let mut child = Killed(child);
    let (status, _) = http_get(&addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its one scrape"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_real_prometheus_scrapes_the_known_counts() {
    // PROM-2, PROM-3, PROM-4 through a real server's HTTP API.
    let Some(bin) = service_bin("CADENCE_PROMETHEUS_BIN") else {
        return;
    };
    let (_example, addr) = start_example();
    let prometheus = Prometheus::start(&bin, &addr);

    let up = prometheus.wait_for(r#"up{job="cadence-example"}"#, 1);
    assert_eq!(series_value(&up, &[]), 1.0, "the target is up: {up:?}");

    // The example's documented workload: 30 orders, 24 succeed (each with one shipping
    // child run), 6 are declined, 10 reserve attempts are retried.
    let runs = prometheus.wait_for("cadence_runs_total", 10);
    let run = |cadence: &str, outcome: &str| {
        series_value(&runs, &[("cadence", cadence), ("outcome", outcome)])
    };
    assert_eq!(run("orders", "success"), 24.0);
    assert_eq!(run("orders", "failure"), 6.0);
    assert_eq!(run("orders", "partial"), 0.0);
    assert_eq!(run("orders", "stopped"), 0.0);
    assert_eq!(run("orders", "cancelled"), 0.0);
    assert_eq!(run("shipping", "success"), 24.0);
    assert_eq!(run("shipping", "failure"), 0.0);

    let retries = prometheus.wait_for("cadence_note_retries_total", 1);
    assert_eq!(
        series_value(&retries, &[("cadence", "orders"), ("note", "reserve")]),
        10.0
    );
    let in_flight = prometheus.wait_for("cadence_runs_in_flight", 2);
    for series in &in_flight {
        assert_eq!(series["value"][1], "0", "{series}");
    }
    let attempts = prometheus.wait_for(
        r#"sum by (outcome) (cadence_note_duration_seconds_count{cadence="orders",note="reserve"})"#,
        2,
    );
    assert_eq!(series_value(&attempts, &[("outcome", "retry")]), 10.0);
    assert_eq!(series_value(&attempts, &[("outcome", "success")]), 30.0);
    let shipped = prometheus.wait_for(
        r#"cadence_note_duration_seconds_count{cadence="shipping",note="label"}"#,
        1,
    );
    assert_eq!(series_value(&shipped, &[("outcome", "success")]), 24.0);

    // PROM-3: the label names Prometheus stored are the fixed set, no run id among them.
    let all = prometheus.wait_for(r#"{__name__=~"cadence_.*"}"#, 10);
    for series in &all {
        for (name, v) in series["metric"].as_object().unwrap() {
            assert!(
                [
                    "__name__", "job", "instance", "cadence", "outcome", "note", "le", "circuit"
                ]
                .contains(&name.as_str()),
                "label {name}={v} in {series}"
            );
        }
    }
}
