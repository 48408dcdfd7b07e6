//! The Prometheus hook end to end: registry and exposition (PROM-1), metrics (PROM-2),
//! labels (PROM-3), buckets (PROM-5). The in-flight gauge (PROM-4) has `tests/in_flight.rs`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cadence_core::circuit_breaker::CircuitBreaker;
use cadence_core::event::EventEmitter;
use cadence_core::fallback::Fallback;
use cadence_core::retry::{Backoff, Jitter, Retry};
use cadence_core::{BoxError, Cadence, CadenceError, Control, Note, OnError, RunOptions, note};
use cadence_prometheus::{BuildError, MetricsHandle, PrometheusHook};
use common::{label_names, promtool_check, sample, samples, value};
use prometheus::{IntCounter, Registry};

/// The score of these tests: what the notes did.
#[derive(Debug, Default, Clone)]
struct Order {
    attempts: u32,
    fail: bool,
    stop: bool,
    price: Option<u32>,
}

fn ok() -> Note<Order> {
    note::from_fn(|_: &mut Order| Box::pin(async { Ok::<_, BoxError>(()) }))
}

/// Fails on its first attempt of each run, then succeeds.
fn flaky() -> Note<Order> {
    note::from_fn(|o: &mut Order| {
        Box::pin(async move {
            o.attempts += 1;
            if o.attempts == 1 {
                Err::<(), BoxError>("busy".into())
            } else {
                Ok(())
            }
        })
    })
}

/// Fails when the score says so; stops when the score says so.
fn decide() -> Note<Order> {
    note::from_fn(|o: &mut Order| {
        Box::pin(async move {
            if o.fail {
                Err::<Control, BoxError>("declined".into())
            } else if o.stop {
                Ok(Control::stop_because("nothing to do"))
            } else {
                Ok(Control::Continue)
            }
        })
    })
}

fn zero_delay(attempts: u32) -> Retry {
    Retry::new(attempts)
        .with_backoff(Backoff::fixed(Duration::ZERO))
        .with_jitter(Jitter::None)
}

/// A cadence exercising every per-note metric: sequence members, a retried note, a fallback.
fn orders(hook: &PrometheusHook) -> Cadence<Order> {
    Cadence::new("orders")
        .then("validate", ok())
        .sequence(
            "enrich",
            [
                flaky().named("profile").with_retry(zero_delay(3)),
                ok().named("prefs"),
            ],
        )
        .then(
            "quote",
            note::from_fn(|_: &mut Order| Box::pin(async { Err::<(), BoxError>("down".into()) }))
                .with_fallback(Fallback::set(|o: &mut Order, _: &CadenceError| {
                    o.price = Some(100)
                })),
        )
        .then("decide", decide())
        .with_hooks(hook.clone())
        .build()
        .unwrap()
}

fn built() -> (PrometheusHook, MetricsHandle) {
    PrometheusHook::builder().build().unwrap()
}

/// The metric family names with a `# TYPE` line, and their types.
fn types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn own_registry_renders_help_and_type_for_every_family() {
    // PROM-1
    let (hook, metrics) = built();
    let cadence = orders(&hook);
    cadence.run(Order::default()).await.unwrap();
    let text = metrics.render();
    let families = types(&text);
    let expected = [
        ("cadence_circuit_state", "gauge"), // no breaker in this cadence: no sample yet
        ("cadence_events_dropped_total", "counter"),
        ("cadence_fallbacks_total", "counter"),
        ("cadence_note_duration_seconds", "histogram"),
        ("cadence_note_retries_total", "counter"),
        ("cadence_run_duration_seconds", "histogram"),
        ("cadence_runs_in_flight", "gauge"),
        ("cadence_runs_total", "counter"),
    ];
    for (name, kind) in expected {
        if name == "cadence_circuit_state" {
            assert!(!text.contains(name), "an empty family is not rendered");
            continue;
        }
        assert!(
            families.iter().any(|(n, k)| n == name && k == kind),
            "{name} {kind} in {families:?}"
        );
        assert!(text.contains(&format!("# HELP {name} ")), "HELP for {name}");
    }
    // Every sample belongs to a declared family.
    for line in samples(&text) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            families.iter().any(|(n, _)| name == n
                || name.strip_suffix("_bucket") == Some(n)
                || name.strip_suffix("_sum") == Some(n)
                || name.strip_suffix("_count") == Some(n)),
            "{line}"
        );
    }
    assert_eq!(metrics.content_type(), prometheus::TEXT_FORMAT);
}

#[tokio::test]
async fn a_user_registry_holds_the_application_metrics_too() {
    // PROM-1: records into a user-supplied registry; render serves all of it.
    let registry = Registry::new();
    let requests = IntCounter::new("app_requests_total", "Requests served.").unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    requests.inc_by(3);

    let (hook, metrics) = PrometheusHook::builder()
        .with_registry(registry.clone())
        .build()
        .unwrap();
    orders(&hook).run(Order::default()).await.unwrap();

    let text = metrics.render();
    assert_eq!(value(&text, "app_requests_total"), 3.0);
    assert_eq!(
        value(
            &text,
            r#"cadence_runs_total{cadence="orders",outcome="success"}"#
        ),
        1.0
    );
    // The same registry, gathered by the application itself, holds the cadence metrics.
    let names: BTreeSet<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert!(names.contains("cadence_runs_total"), "{names:?}");

    // A second hook on the same registry is refused with advice.
    let err = PrometheusHook::builder()
        .with_registry(registry)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Register(_)), "{err:?}");
    assert!(
        err.to_string().contains("one PrometheusHook per registry"),
        "{err}"
    );
}

#[tokio::test]
async fn exposition_passes_promtool() {
    // PROM-1: every family populated (breaker, fallback, retries, emitter), then promtool.
    let emitter = EventEmitter::new();
    let (hook, metrics) = PrometheusHook::builder()
        .with_emitter(&emitter)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::builder("inventory")
        .consecutive_failures(1)
        .build()
        .unwrap();
    let guarded = Cadence::<Order>::new("guarded")
        .then(
            "reserve",
            note::from_fn(|_: &mut Order| Box::pin(async { Err::<(), BoxError>("no".into()) }))
                .with_circuit_breaker(breaker),
        )
        .on_error(|_: &mut Order, _: &CadenceError| (), OnError::Continue)
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    guarded.run(Order::default()).await.unwrap();
    let cadence = orders(&hook);
    cadence.run(Order::default()).await.unwrap();
    let text = metrics.render();
    for family in [
        "cadence_circuit_state{",
        "cadence_fallbacks_total{",
        "cadence_note_retries_total{",
        "cadence_runs_total{",
        "cadence_events_dropped_total ",
    ] {
        assert!(text.contains(family), "{family} in\n{text}");
    }
    if let Some(Err(out)) = promtool_check(&text) {
        panic!("promtool check metrics failed:\n{out}\nexposition:\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn run_and_note_metrics_for_a_known_workload() {
    // PROM-2: 4 runs: success, stopped, failure, and a partial one through `on_error`.
    let (hook, metrics) = built();
    let cadence = orders(&hook);
    cadence.run(Order::default()).await.unwrap();
    cadence
        .run(Order {
            stop: true,
            ..Order::default()
        })
        .await
        .unwrap();
    cadence
        .run(Order {
            fail: true,
            ..Order::default()
        })
        .await
        .unwrap_err();
    let lenient = Cadence::<Order>::new("lenient")
        .then("decide", decide())
        .then("after", ok())
        .on_error(|_: &mut Order, _: &CadenceError| (), OnError::Continue)
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    lenient
        .run(Order {
            fail: true,
            ..Order::default()
        })
        .await
        .unwrap();

    let text = metrics.render();
    let runs = |c: &str, o: &str| {
        value(
            &text,
            &format!(r#"cadence_runs_total{{cadence="{c}",outcome="{o}"}}"#),
        )
    };
    assert_eq!(runs("orders", "success"), 1.0);
    assert_eq!(runs("orders", "stopped"), 1.0);
    assert_eq!(runs("orders", "failure"), 1.0);
    assert_eq!(runs("orders", "partial"), 0.0); // all five outcomes exist from the start
    assert_eq!(runs("orders", "cancelled"), 0.0);
    assert_eq!(runs("lenient", "partial"), 1.0);
    assert_eq!(
        value(
            &text,
            r#"cadence_run_duration_seconds_count{cadence="orders"}"#
        ),
        3.0
    );
    assert_eq!(
        value(&text, r#"cadence_runs_in_flight{cadence="orders"}"#),
        0.0
    );

    let note = |n: &str, o: &str| {
        sample(
            &text,
            &format!(
                r#"cadence_note_duration_seconds_count{{cadence="orders",note="{n}",outcome="{o}"}}"#
            ),
        )
    };
    // Per attempt: the flaky member failed once per run (retry), then succeeded.
    assert_eq!(note("enrich/profile", "retry"), Some(3.0));
    assert_eq!(note("enrich/profile", "success"), Some(3.0));
    assert_eq!(note("enrich/prefs", "success"), Some(3.0));
    // The fallback rescued `quote`: its attempt failed, the fallback acted.
    assert_eq!(note("quote", "failure"), Some(3.0));
    assert_eq!(note("decide", "success"), Some(1.0));
    assert_eq!(note("decide", "stopped"), Some(1.0));
    assert_eq!(note("decide", "failure"), Some(1.0));
    assert_eq!(
        note("validate", "cancelled"),
        None,
        "series appear when they happen"
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_note_retries_total{cadence="orders",note="enrich/profile"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_fallbacks_total{cadence="orders",note="quote"}"#
        ),
        3.0
    );
    assert_eq!(value(&text, "cadence_events_dropped_total"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn durations_are_in_seconds() {
    // PROM-2: base units; paused time makes the durations exact.
    let (hook, metrics) = built();
    let cadence = Cadence::<()>::new("slow")
        .then(
            "wait",
            note::from_fn(|_: &mut ()| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(hook)
        .build()
        .unwrap();
    cadence.run(()).await.unwrap();
    let text = metrics.render();
    let sum = value(
        &text,
        r#"cadence_note_duration_seconds_sum{cadence="slow",note="wait",outcome="success"}"#,
    );
    assert!((1.5..1.51).contains(&sum), "{sum}");
    let run = value(&text, r#"cadence_run_duration_seconds_sum{cadence="slow"}"#);
    assert!((1.5..1.51).contains(&run), "{run}");
    // In the 2.5 s bucket, not in the 1 s one.
    assert_eq!(
        value(
            &text,
            r#"cadence_run_duration_seconds_bucket{cadence="slow",le="1"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_run_duration_seconds_bucket{cadence="slow",le="2.5"}"#
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn circuit_state_follows_the_breaker() {
    // PROM-2: cadence_circuit_state{circuit} = 0 closed, 1 half-open, 2 open.
    let (hook, metrics) = built();
    let fail = Arc::new(AtomicU32::new(1));
    let f = fail.clone();
    let breaker = CircuitBreaker::builder("inventory")
        .consecutive_failures(1)
        .recovery_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let cadence = Cadence::<()>::new("stock")
        .then(
            "reserve",
            note::from_fn(move |_: &mut ()| {
                let failing = f.load(Ordering::Relaxed) == 1;
                Box::pin(async move {
                    if failing {
                        Err::<(), BoxError>("inventory down".into())
                    } else {
                        Ok(())
                    }
                })
            })
            .with_circuit_breaker(breaker.clone()),
        )
        .with_hooks(hook)
        .build()
        .unwrap();
    let state =
        |m: &MetricsHandle| sample(&m.render(), r#"cadence_circuit_state{circuit="inventory"}"#);
    assert_eq!(state(&metrics), None);
    cadence.run(()).await.unwrap_err();
    assert_eq!(state(&metrics), Some(2.0));
    cadence.run(()).await.unwrap_err(); // rejected while open
    assert_eq!(state(&metrics), Some(2.0));

    fail.store(0, Ordering::Relaxed);
    tokio::time::advance(Duration::from_secs(11)).await;
    cadence.run(()).await.unwrap(); // the probe passes: half-open, then closed
    assert_eq!(state(&metrics), Some(0.0));

    // Half-open shows as 1: a failing probe goes half-open → open, so catch the middle step
    // with a recording of the transitions instead.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let (hook2, metrics2) = built();
    let watcher = WatchCircuit(hook2, s);
    let breaker2 = CircuitBreaker::builder("payments")
        .consecutive_failures(1)
        .recovery_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let failing = Cadence::<()>::new("pay")
        .then(
            "charge",
            note::from_fn(|_: &mut ()| Box::pin(async { Err::<(), BoxError>("no".into()) }))
                .with_circuit_breaker(breaker2),
        )
        .with_hooks(watcher)
        .build()
        .unwrap();
    failing.run(()).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(2)).await;
    failing.run(()).await.unwrap_err();
    assert_eq!(*seen.lock().unwrap(), [2, 1, 2]);
    assert_eq!(
        sample(
            &metrics2.render(),
            r#"cadence_circuit_state{circuit="payments"}"#
        ),
        Some(2.0)
    );
}

/// Forwards to a [`PrometheusHook`] and records the gauge after every circuit change.
struct WatchCircuit(PrometheusHook, Arc<std::sync::Mutex<Vec<i64>>>);

impl<S> cadence_core::Hook<S> for WatchCircuit {
    fn on_circuit_state_change(
        &self,
        cx: &cadence_core::HookContext<'_>,
        circuit: &str,
        from: cadence_core::circuit_breaker::CircuitState,
        to: cadence_core::circuit_breaker::CircuitState,
    ) {
        cadence_core::Hook::<S>::on_circuit_state_change(&self.0, cx, circuit, from, to);
        self.1.lock().unwrap().push(to.as_gauge());
    }
}

#[tokio::test]
async fn events_dropped_are_read_from_the_emitters_at_render_time() {
    // PROM-2: cadence_events_dropped_total = the emitters' dropped() sum, read when rendered.
    let emitter = EventEmitter::with_capacity(1);
    emitter.on_async("*", |_| async {});
    let quiet = EventEmitter::new();
    let (hook, metrics) = PrometheusHook::builder()
        .with_emitter(&emitter)
        .with_emitter(&quiet)
        .build()
        .unwrap();
    assert_eq!(
        value(&metrics.render(), "cadence_events_dropped_total"),
        0.0
    );
    let cadence = Cadence::<Order>::new("noisy")
        .then("a", ok())
        .then("b", ok())
        .with_hooks((emitter.clone(), hook))
        .build()
        .unwrap();
    // The notes never yield, so the dispatcher cannot drain the queue of one during the run.
    cadence.run(Order::default()).await.unwrap();
    let dropped = emitter.dropped();
    assert!(dropped > 0, "the workload overflows a queue of one");
    assert_eq!(
        value(&metrics.render(), "cadence_events_dropped_total"),
        dropped as f64
    );
    cadence.run(Order::default()).await.unwrap();
    assert!(emitter.dropped() > dropped);
    assert_eq!(
        value(&metrics.render(), "cadence_events_dropped_total"),
        emitter.dropped() as f64
    );
}

#[tokio::test]
async fn note_label_is_the_path_within_its_cadence_and_children_count_under_their_name() {
    // PROM-3
    let (hook, metrics) = built();
    let payment = Cadence::<Order>::new("payment")
        .sequence("charge", [ok().named("authorize"), ok().named("capture")])
        .build()
        .unwrap();
    let checkout = Cadence::<Order>::new("checkout")
        .then("validate", ok())
        .child("pay", payment, |o: &Order| o.clone(), |_: &mut Order, _| ())
        .with_hooks(hook)
        .build()
        .unwrap();
    for _ in 0..2 {
        checkout.run(Order::default()).await.unwrap();
    }
    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            r#"cadence_runs_total{cadence="checkout",outcome="success"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_runs_total{cadence="payment",outcome="success"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_note_duration_seconds_count{cadence="payment",note="charge/capture",outcome="success"}"#
        ),
        2.0
    );
    // Never the full path from the root, never the child's notes under the parent's name.
    assert!(!text.contains("pay/charge"), "{text}");
    assert!(
        !text.contains(r#"cadence="checkout",note="charge"#),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"cadence_runs_in_flight{cadence="payment"}"#),
        0.0
    );
}

#[tokio::test]
async fn no_label_carries_a_run_id() {
    // PROM-3: run ids (given and generated) appear nowhere; label names are a fixed set.
    let (hook, metrics) = built();
    let payment = Cadence::<Order>::new("payment")
        .then("charge", flaky().with_retry(zero_delay(2)))
        .build()
        .unwrap();
    let checkout = Cadence::<Order>::new("checkout")
        .then("validate", ok())
        .child(
            "pay",
            payment,
            |_: &Order| Order::default(),
            |_: &mut Order, _| (),
        )
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let opts = if i % 2 == 0 {
            RunOptions::default().with_run_id(format!("order-{i:04}-7f3a"))
        } else {
            RunOptions::default()
        };
        let report = checkout.run_with_report(Order::default(), opts).await;
        ids.push(report.run_id);
    }
    let text = metrics.render();
    for id in &ids {
        assert!(!text.contains(id.as_str()), "run id {id} in the exposition");
    }
    assert!(!text.contains("order-"), "{text}");
    let allowed = ["cadence", "outcome", "note", "circuit", "le"];
    let mut series = 0;
    for line in samples(&text) {
        for name in label_names(line) {
            assert!(allowed.contains(&name), "label {name} in {line}");
        }
        series += 1;
    }
    // Twenty runs make no more series than one would.
    let (hook1, metrics1) = built();
    let payment1 = Cadence::<Order>::new("payment")
        .then("charge", flaky().with_retry(zero_delay(2)))
        .build()
        .unwrap();
    let checkout1 = Cadence::<Order>::new("checkout")
        .then("validate", ok())
        .child(
            "pay",
            payment1,
            |_: &Order| Order::default(),
            |_: &mut Order, _| (),
        )
        .with_hooks(hook1)
        .build()
        .unwrap();
    checkout1.run(Order::default()).await.unwrap();
    assert_eq!(samples(&metrics1.render()).count(), series);
}

#[tokio::test]
async fn a_hook_on_parent_and_child_counts_each_child_occurrence_once() {
    // PROM-3 with CHILD-3: the engine hands child occurrences to the parent's hooks and then
    // to the child's own; one hook attached to both must not count twice.
    let (hook, metrics) = built();
    let (root_only, root_metrics) = built();
    let payment = Cadence::<Order>::new("payment")
        .then("charge", flaky().with_retry(zero_delay(3)))
        .with_hooks(hook.clone())
        .build()
        .unwrap();
    let checkout = Cadence::<Order>::new("checkout")
        .then("validate", ok())
        .child(
            "pay",
            payment.clone(),
            |_: &Order| Order::default(),
            |_: &mut Order, _| (),
        )
        .with_hooks((hook.clone(), root_only))
        .build()
        .unwrap();
    for _ in 0..3 {
        checkout.run(Order::default()).await.unwrap();
    }
    // The child run on its own is seen once too.
    payment.run(Order::default()).await.unwrap();

    let text = metrics.render();
    assert_eq!(
        value(
            &text,
            r#"cadence_runs_total{cadence="payment",outcome="success"}"#
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_note_retries_total{cadence="payment",note="charge"}"#
        ),
        4.0
    );
    assert_eq!(
        value(&text, r#"cadence_runs_in_flight{cadence="payment"}"#),
        0.0
    );
    // The same counts as a hook attached at the root only (minus the standalone run).
    let root = root_metrics.render();
    assert_eq!(
        value(
            &root,
            r#"cadence_runs_total{cadence="payment",outcome="success"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &root,
            r#"cadence_note_duration_seconds_count{cadence="payment",note="charge",outcome="retry"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            r#"cadence_note_duration_seconds_count{cadence="payment",note="charge",outcome="retry"}"#
        ),
        4.0
    );
}

#[tokio::test(start_paused = true)]
async fn buckets_are_configurable_per_histogram() {
    // PROM-5
    let (hook, metrics) = PrometheusHook::builder()
        .with_run_buckets([0.1, 1.0, 10.0])
        .with_note_buckets([0.5, 2.0])
        .build()
        .unwrap();
    let cadence = Cadence::<Order>::new("b")
        .then("n", ok())
        .with_hooks(hook)
        .build()
        .unwrap();
    cadence.run(Order::default()).await.unwrap();
    let text = metrics.render();
    let les = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                let le = l.split("le=\"").nth(1).unwrap();
                le[..le.find('"').unwrap()].to_owned()
            })
            .collect()
    };
    assert_eq!(
        les("cadence_run_duration_seconds_bucket"),
        ["0.1", "1", "10", "+Inf"]
    );
    assert_eq!(
        les("cadence_note_duration_seconds_bucket"),
        ["0.5", "2", "+Inf"]
    );

    // Defaults: PROM-5's lists.
    let (hook, metrics) = built();
    let cadence = Cadence::<Order>::new("d")
        .then("n", ok())
        .with_hooks(hook)
        .build()
        .unwrap();
    cadence.run(Order::default()).await.unwrap();
    let text = metrics.render();
    let le_of = |prefix: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1).unwrap();
                let le = &le[..le.find('"').unwrap()];
                (le != "+Inf").then(|| le.parse().unwrap())
            })
            .collect()
    };
    assert_eq!(
        le_of("cadence_run_duration_seconds_bucket"),
        cadence_prometheus::DEFAULT_RUN_BUCKETS
    );
    assert_eq!(
        le_of("cadence_note_duration_seconds_bucket"),
        [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
        ]
    );

    // Unusable buckets are refused.
    let err = PrometheusHook::builder()
        .with_note_buckets([1.0, 0.5])
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::InvalidBuckets {
                histogram: "cadence_note_duration_seconds",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("strictly increasing"), "{err}");
}
