//! `example-metrics`: a small, deterministic order workload with the Prometheus hook attached,
//! its metrics served on `http://127.0.0.1:<port>/metrics` by a plain actix-web server.
//!
//! ```text
//! cargo run -p example-metrics -- [--port <port>] [--once]
//!   --port <port>  port on 127.0.0.1 (default: $METRICS_PORT, else 0 = any free port)
//!   --once         exit after answering one /metrics request (for smoke tests)
//! ```
//!
//! It prints `listening on http://127.0.0.1:<port>` once the socket is bound, then serves until
//! killed. The workload runs before that, so the exposition is known in advance: 30 orders of
//! the `orders` cadence; every third order's `reserve` note fails once and is retried (10
//! retries); every fifth order's `charge` note is declined (6 failed runs); the 24 others
//! succeed, each running the `shipping` child cadence once (24 `shipping` runs). So:
//!
//! ```text
//! cadence_runs_total{cadence="orders",outcome="success"} 24
//! cadence_runs_total{cadence="orders",outcome="failure"} 6
//! cadence_runs_total{cadence="shipping",outcome="success"} 24
//! cadence_note_retries_total{cadence="orders",note="reserve"} 10
//! cadence_runs_in_flight{cadence="orders"} 0
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use cadence_core::event::EventEmitter;
use cadence_core::retry::{Backoff, Jitter, Permanent, Retry};
use cadence_core::{BoxError, Cadence};
use cadence_prometheus::{MetricsHandle, PrometheusHook};
use futures_util::future::join_all;
use tokio::sync::Notify;

/// Orders in the workload.
const ORDERS: u32 = 30;

/// The score: one order.
#[derive(Debug, Default, Clone)]
struct Order {
    id: u32,
    reserve_attempts: u32,
    label: Option<String>,
}

/// The `shipping` child cadence's score.
#[derive(Debug, Default, Clone)]
struct Parcel {
    order: u32,
    label: Option<String>,
}

#[cadence_core::note]
async fn validate(order: &mut Order) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    if order.id >= ORDERS {
        return Err(Permanent::new("unknown order").into());
    }
    Ok(())
}

/// Every third order finds the inventory busy on its first attempt.
#[cadence_core::note]
async fn reserve(order: &mut Order) -> Result<(), BoxError> {
    order.reserve_attempts += 1;
    if order.id.is_multiple_of(3) && order.reserve_attempts == 1 {
        return Err("inventory busy".into());
    }
    Ok(())
}

/// Every fifth order is declined, for good.
#[cadence_core::note]
async fn charge(order: &mut Order) -> Result<(), BoxError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if order.id.is_multiple_of(5) {
        return Err(Permanent::new("card declined").into());
    }
    Ok(())
}

#[cadence_core::note]
async fn print_label(parcel: &mut Parcel) -> Result<(), BoxError> {
    parcel.label = Some(format!("PARCEL-{:04}", parcel.order));
    Ok(())
}

/// The cadences, with the hook attached once, at the root (it sees the child runs too).
fn orders_cadence(hook: PrometheusHook, emitter: EventEmitter) -> Cadence<Order> {
    let shipping = Cadence::new("shipping")
        .then("label", print_label)
        .build()
        .expect("a valid cadence");
    let retry = Retry::new(3)
        .with_backoff(Backoff::fixed(Duration::from_millis(1)))
        .with_jitter(Jitter::None);
    Cadence::new("orders")
        .then("validate", validate)
        .then("reserve", reserve.with_retry(retry))
        .then("charge", charge)
        .child(
            "ship",
            shipping,
            |o: &Order| Parcel {
                order: o.id,
                label: None,
            },
            |o: &mut Order, p: Parcel| o.label = p.label,
        )
        .with_hooks((hook, emitter))
        .build()
        .expect("a valid cadence")
}

/// Runs the workload: every order, four at a time. Returns (succeeded, failed).
async fn workload(cadence: &Cadence<Order>) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    for batch in (0..ORDERS).collect::<Vec<_>>().chunks(4) {
        let runs = batch.iter().map(|&id| {
            cadence.run(Order {
                id,
                ..Order::default()
            })
        });
        for result in join_all(runs).await {
            match result {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
    }
    (ok, failed)
}

/// What the handlers share.
#[derive(Clone)]
struct State {
    metrics: MetricsHandle,
    /// Notified after a `/metrics` answer when `--once` was given.
    served: Option<Arc<Notify>>,
}

/// `GET /metrics`: the text exposition.
async fn metrics(state: web::Data<State>) -> HttpResponse {
    let body = state.metrics.render();
    if let Some(served) = &state.served {
        served.notify_one();
    }
    HttpResponse::Ok()
        .content_type(state.metrics.content_type())
        .body(body)
}

/// `GET /`: where to look.
async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("cadence example: metrics at /metrics\n")
}

/// The command line.
struct Args {
    port: u16,
    once: bool,
}

const USAGE: &str = "usage: example-metrics [--port <port>] [--once]
  --port <port>  port on 127.0.0.1 (default: $METRICS_PORT, else 0 = any free port)
  --once         exit after answering one /metrics request";

fn parse_args() -> Result<Args, String> {
    let env_port = std::env::var("METRICS_PORT").ok();
    let mut args = Args {
        port: match env_port.as_deref() {
            Some(p) => p
                .parse()
                .map_err(|_| format!("METRICS_PORT={p} is not a port number"))?,
            None => 0,
        },
        once: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let p = it.next().ok_or("--port needs a value")?;
                args.port = p
                    .parse()
                    .map_err(|_| format!("`{p}` is not a port number"))?;
            }
            "--once" => args.once = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };

    let emitter = EventEmitter::new();
    let (hook, metrics_handle) = PrometheusHook::builder()
        .with_emitter(&emitter)
        .build()
        .map_err(std::io::Error::other)?;
    let cadence = orders_cadence(hook, emitter);
    let (ok, failed) = workload(&cadence).await;
    println!("workload: {ORDERS} orders, {ok} succeeded, {failed} failed");

    let served = args.once.then(|| Arc::new(Notify::new()));
    let state = State {
        metrics: metrics_handle,
        served: served.clone(),
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/", web::get().to(index))
    })
    .workers(1)
    .bind(("127.0.0.1", args.port))?;
    let addr = server.addrs()[0];
    println!("listening on http://{addr}");
    let server = server.run();
    if let Some(served) = served {
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            served.notified().await;
            // Graceful: the answer that woke us is still written out.
            handle.stop(true).await;
        });
    }
    server.await
}
