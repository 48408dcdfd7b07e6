//! `#[note]` end to end: the generated consts are `Note<S>` values that run in a cadence.

use std::fmt;

use cadence_core::{BoxError, Cadence, CadenceError, Control, Note, NoteContext, Outcome, note};

// Blocking notes need a `Default` (and, for timeouts, `Clone`) score (NOTE-6).
#[derive(Debug, Default, Clone)]
struct Order {
    items: Vec<u32>,
    total: u32,
    log: Vec<String>,
}

// NOTE-1: an async fn over `&mut S` only.
#[note]
async fn fetch_items(order: &mut Order) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    order.items = vec![20, 30];
    Ok(())
}

// NOTE-1: an async fn over `&mut S` and the context (NOTE-3).
#[note]
async fn total(order: &mut Order, cx: &NoteContext<'_>) -> Result<(), BoxError> {
    order.total = order.items.iter().sum();
    order
        .log
        .push(format!("{} attempt {}", cx.path(), cx.attempt()));
    Ok(())
}

/// A custom error type: anything `Into<BoxError>` will do (NOTE-1).
#[derive(Debug)]
struct OutOfStock(u32);

impl fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {} is out of stock", self.0)
    }
}

impl std::error::Error for OutOfStock {}

#[note]
async fn reserve(order: &mut Order) -> Result<(), OutOfStock> {
    match order.items.iter().find(|&&i| i > 25) {
        Some(&i) => Err(OutOfStock(i)),
        None => Ok(()),
    }
}

// NOTE-5 through NOTE-1's `Result<Control, E>`: a note that stops the run.
#[note]
async fn stop_when_free(order: &mut Order) -> Result<Control, OutOfStock> {
    order.log.push("checked".into());
    if order.total == 0 {
        Ok(Control::stop())
    } else {
        Ok(Control::Continue)
    }
}

#[note]
async fn never_reached(order: &mut Order) -> Result<(), BoxError> {
    order.log.push("never".into());
    Ok(())
}

// NOTE-2: an explicit name wins over the function name.
#[note(name = "charge")]
async fn charge_card(order: &mut Order, cx: &NoteContext<'_>) -> Result<(), BoxError> {
    order.log.push(cx.path().to_owned());
    Ok(())
}

// NOTE-8: policies given as options; durations parsed at compile time.
#[note(retry = 3, timeout = "250ms")]
async fn flaky(order: &mut Order) -> Result<(), BoxError> {
    order.log.push("flaky".into());
    Ok(())
}

#[note(deadline = "2m", retry = 1)]
async fn slow(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

/// Doc comments and lint attributes move to the const; the const keeps the fn's visibility.
/// Other attributes (`#[inline]` here, which a const would reject) stay on the function.
#[allow(clippy::unused_async)]
#[note]
#[inline]
pub async fn documented(_order: &mut Order) -> Result<(), BoxError> {
    Ok(())
}

#[tokio::test]
async fn async_note_without_and_with_context() {
    // NOTE-1, NOTE-3
    let cadence = Cadence::new("checkout")
        .then("fetch", fetch_items)
        .then("total", total)
        .build()
        .unwrap();
    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.items, [20, 30]);
    assert_eq!(order.total, 50);
    // The path of a `.then` note is the measure name (NOTE-2, GEN-2); first attempt is 1.
    assert_eq!(order.log, ["total attempt 1"]);
}

#[tokio::test]
async fn custom_error_type_fails_the_run() {
    // NOTE-1: `E: Into<BoxError>`.
    let cadence = Cadence::new("checkout")
        .then("fetch", fetch_items)
        .then("reserve", reserve)
        .build()
        .unwrap();
    let err = cadence.run(Order::default()).await.unwrap_err();
    match err {
        CadenceError::Note { path, source } => {
            assert_eq!(path, "reserve");
            let e = source.downcast_ref::<OutOfStock>().expect("our error type");
            assert_eq!(e.0, 30);
        }
        other => panic!("expected a note error, got {other:?}"),
    }
}

#[tokio::test]
async fn control_stop_ends_the_run() {
    // NOTE-1, NOTE-5: `Result<Control, E>`.
    let cadence = Cadence::new("free")
        .then("check", stop_when_free)
        .then("after", never_reached)
        .build()
        .unwrap();
    let report = cadence
        .run_with_report(Order::default(), Default::default())
        .await;
    assert_eq!(report.outcome, Outcome::Stopped);
    assert_eq!(report.score.log, ["checked"]);

    // The same note continues when there is something to pay.
    let order = Order {
        total: 5,
        ..Order::default()
    };
    let order = cadence.run(order).await.unwrap();
    assert_eq!(order.log, ["checked", "never"]);
}

fn note_names(cadence: &Cadence<Order>) -> Vec<Vec<String>> {
    cadence
        .describe()
        .measures
        .iter()
        .map(|m| m.notes.iter().map(|n| n.name.clone()).collect())
        .collect()
}

#[tokio::test]
async fn sequence_of_different_notes_with_default_and_explicit_names() {
    // The key ergonomic: every #[note] is a `Note<Order>`, so different ones share an array.
    let notes: [Note<Order>; 3] = [fetch_items, total, charge_card];
    let cadence = Cadence::new("checkout")
        .sequence("pay", notes)
        .build()
        .unwrap();

    // NOTE-2: the function name by default, `name = "…"` when given.
    assert_eq!(note_names(&cadence), [["fetch_items", "total", "charge"]]);
    assert_eq!(fetch_items.name(), Some("fetch_items"));
    assert_eq!(charge_card.name(), Some("charge"));

    // Member paths are `<measure>/<note>` (GEN-2), the explicit name included.
    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.total, 50);
    assert_eq!(order.log, ["pay/total attempt 1", "pay/charge"]);
}

#[test]
fn options_show_up_as_policies() {
    // NOTE-8: `retry`, `timeout`, `deadline` become the note's policies.
    let cadence = Cadence::new("policies")
        .sequence("s", [flaky, slow, documented])
        .build()
        .unwrap();
    let description = cadence.describe();
    // Sorted: the description lists them in composition order (RES-1), not ours.
    let policies: Vec<Vec<String>> = description.measures[0]
        .notes
        .iter()
        .map(|n| {
            let mut p = n.policies.clone();
            p.sort();
            p
        })
        .collect();
    assert_eq!(policies[0], ["retry(3)", "timeout(250ms)"]);
    assert_eq!(policies[1], ["deadline(2m)", "retry(1)"]);
    assert!(policies[2].is_empty());
}

// NOTE-8: `retry = 3` allows three attempts in all; the context counts them (NOTE-3).
#[note(retry = 3)]
async fn third_time_lucky(order: &mut Order, cx: &NoteContext<'_>) -> Result<(), BoxError> {
    order.log.push(format!("attempt {}", cx.attempt()));
    if cx.attempt() < 3 {
        return Err("not yet".into());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn retry_option_retries() {
    // NOTE-8
    let cadence = Cadence::new("retry")
        .then("lucky", third_time_lucky)
        .build()
        .unwrap();
    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.log, ["attempt 1", "attempt 2", "attempt 3"]);
}

// NOTE-8: `timeout = "250ms"` bounds each attempt.
#[note(timeout = "250ms")]
async fn too_slow(_order: &mut Order) -> Result<(), BoxError> {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn timeout_option_times_out() {
    // NOTE-8
    let cadence = Cadence::new("timeout")
        .then("slow", too_slow)
        .build()
        .unwrap();
    match cadence.run(Order::default()).await.unwrap_err() {
        CadenceError::Timeout { path, after, .. } => {
            assert_eq!(path, "slow");
            assert_eq!(after, std::time::Duration::from_millis(250));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn notes_with_policies_still_run() {
    // NOTE-8
    let cadence = Cadence::new("run").then("flaky", flaky).build().unwrap();
    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.log, ["flaky"]);
}

// NOTE-6: a plain fn makes a blocking note (the score must be `Default`).
#[note]
fn checksum(order: &mut Order) -> Result<(), BoxError> {
    order.total = order.items.iter().fold(17, |h, i| h * 31 + i);
    Ok(())
}

#[note(name = "audit", timeout = "5s")]
fn audit(order: &mut Order, cx: &NoteContext<'_>) -> Result<Control, BoxError> {
    order
        .log
        .push(format!("{} attempt {}", cx.path(), cx.attempt()));
    Ok(Control::Continue)
}

#[tokio::test]
async fn blocking_notes() {
    // NOTE-6
    assert!(checksum.is_blocking());
    assert!(!fetch_items.is_blocking());
    let cadence = Cadence::new("blocking")
        .then("fetch", fetch_items)
        .sequence("check", [checksum, audit])
        .build()
        .unwrap();
    let description = cadence.describe();
    let check = &description.measures[1];
    assert!(check.notes.iter().all(|n| n.blocking));
    assert_eq!(check.notes[1].name, "audit");
    assert_eq!(check.notes[1].policies, ["timeout(5s)"]);

    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.total, (17 * 31 + 20) * 31 + 30);
    assert_eq!(order.log, ["check/audit attempt 1"]);
}

/// A re-export of cadence_core under another name, as a facade crate would have.
mod re {
    pub(crate) use cadence_core as engine;
}

mod renamed {
    use super::Order;
    use super::re::engine::BoxError;

    // `crate = "…"` makes every generated path go through the re-export.
    #[super::note(crate = "crate::re::engine", name = "via_reexport", retry = 2)]
    pub(crate) async fn reexported(order: &mut Order) -> Result<(), BoxError> {
        order.log.push("reexported".into());
        Ok(())
    }

    #[super::note(crate = "crate::re::engine")]
    pub(crate) fn reexported_blocking(order: &mut Order) -> Result<(), BoxError> {
        order.log.push("reexported_blocking".into());
        Ok(())
    }
}

#[tokio::test]
async fn crate_option_uses_the_reexport() {
    let cadence = Cadence::new("renamed")
        .sequence("s", [renamed::reexported, renamed::reexported_blocking])
        .build()
        .unwrap();
    assert_eq!(
        note_names(&cadence),
        [["via_reexport", "reexported_blocking"]]
    );
    assert_eq!(
        cadence.describe().measures[0].notes[0].policies,
        ["retry(2)"]
    );
    let order = cadence.run(Order::default()).await.unwrap();
    assert_eq!(order.log, ["reexported", "reexported_blocking"]);
}

#[test]
fn raw_identifiers_name_the_note_without_prefix() {
    // NOTE-2: the function's name, as written without `r#`.
    mod inner {
        use super::{BoxError, Order, note};

        #[note]
        pub(super) async fn r#match(_order: &mut Order) -> Result<(), BoxError> {
            Ok(())
        }
    }
    assert_eq!(inner::r#match.name(), Some("match"));
}
