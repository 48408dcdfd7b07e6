//! An audit log: every event of a checkout cadence goes to a JSON-lines file through an
//! `EventEmitter` with a `JsonLinesSink`; after the runs, the emitter is shut down (draining
//! its queue and flushing the file), the file is read back as `Event`s and summarised: events
//! per type, runs and how they ended, notes and their durations.
//!
//! ```text
//! cargo run -p example-audit-log [-- <file.jsonl>]
//! ```
//!
//! Without an argument the log goes to a temporary file, removed at the end. The clock is
//! paused (tokio's `test-util`), so the simulated service latencies, hence the durations in
//! the summary, are exact and the output is the same on every run (timestamps aside, which
//! are wall-clock time and not printed).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cadence_core::event::{EventEmitter, EventKind, JsonLinesSink, read_events};
use cadence_core::{BoxError, Cadence, CadenceError, Event, OnError, RunOptions, note};

/// The score: one order.
#[derive(Debug, Default)]
struct Order {
    items: Vec<(&'static str, u32)>,
    total_cents: u32,
    premium: bool,
    shipping: &'static str,
    reserved: bool,
    problems: Vec<String>,
}

/// A note that simulates a service call taking `ms` milliseconds, then applies `f`.
fn call(
    ms: u64,
    f: impl Fn(&mut Order) -> Result<(), BoxError> + Send + Sync + 'static,
) -> cadence_core::Note<Order> {
    let f = std::sync::Arc::new(f);
    note::from_fn(move |o: &mut Order| {
        let f = f.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            f(o)
        })
    })
}

/// validate → price → shipping (split on premium) → reserve_stock (may fail; the failure is
/// recorded and the run goes on) → notify.
fn checkout(emitter: &EventEmitter) -> Result<Cadence<Order>, CadenceError> {
    Cadence::new("checkout")
        .then(
            "validate",
            call(1, |o| {
                if o.items.is_empty() {
                    return Err("an order needs items".into());
                }
                Ok(())
            }),
        )
        .then(
            "price",
            call(20, |o| {
                o.total_cents = o.items.iter().map(|(_, c)| c).sum();
                o.premium = o.total_cents >= 5_000;
                Ok(())
            }),
        )
        .split(
            "shipping",
            |o: &Order| o.premium,
            [note::named(
                "express",
                call(3, |o| {
                    o.shipping = "express";
                    Ok(())
                }),
            )],
            [note::named(
                "standard",
                call(2, |o| {
                    o.shipping = "standard";
                    Ok(())
                }),
            )],
        )
        .then(
            "reserve_stock",
            call(8, |o| {
                if o.items.iter().any(|(name, _)| *name == "unicorn") {
                    return Err("unicorn is out of stock".into());
                }
                o.reserved = true;
                Ok(())
            }),
        )
        .then("notify", call(5, |_| Ok(())))
        .on_error(
            |o: &mut Order, e: &CadenceError| o.problems.push(e.to_string()),
            OnError::Continue,
        )
        .with_hooks(emitter.clone())
        .build()
}

/// What the audit log says.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    events: usize,
    dropped: u64,
    by_type: BTreeMap<String, usize>,
    /// Run id → how it ended.
    runs: BTreeMap<String, String>,
    /// (run id, note path) → (duration, failure if any), in log order.
    notes: Vec<(String, String, Duration, Option<String>)>,
}

fn summarise(events: &[Event]) -> Summary {
    let mut s = Summary {
        events: events.len(),
        ..Summary::default()
    };
    for e in events {
        *s.by_type.entry(e.name().to_owned()).or_default() += 1;
        let run = e.run_id.to_string();
        match &e.kind {
            EventKind::CadenceCompleted {
                duration,
                failed_measures,
                ..
            } => {
                let how = if failed_measures.is_empty() {
                    "completed".to_owned()
                } else {
                    format!("completed, failed: {}", failed_measures.join(", "))
                };
                s.runs.insert(run, format!("{how} in {}", ms(*duration)));
            }
            EventKind::CadenceFailed {
                duration, error, ..
            } => {
                s.runs
                    .insert(run, format!("failed ({error}) in {}", ms(*duration)));
            }
            EventKind::NoteCompleted { path, duration, .. } => {
                s.notes.push((run, path.to_string(), *duration, None));
            }
            EventKind::NoteFailed {
                path,
                duration,
                error,
                ..
            } => {
                let why = Some(error.message.clone());
                s.notes.push((run, path.to_string(), *duration, why));
            }
            EventKind::EventsDropped { count } => s.dropped += count,
            _ => {}
        }
    }
    s
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} events, {} dropped", self.events, self.dropped)?;
        writeln!(f, "\nruns:")?;
        for (run, how) in &self.runs {
            writeln!(f, "  {run:<10} {how}")?;
        }
        writeln!(f, "\nevents by type:")?;
        for (name, n) in &self.by_type {
            writeln!(f, "  {name:<20} {n:>3}")?;
        }
        writeln!(f, "\nnotes:")?;
        for (run, path, d, failure) in &self.notes {
            write!(f, "  {run:<10} {path:<24} {:>10}", ms(*d))?;
            match failure {
                Some(why) => writeln!(f, "  FAILED: {why}")?,
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// Runs two orders with their events logged to `path`, then reads the log back.
async fn audit(path: &Path) -> Result<Summary, BoxError> {
    let emitter = EventEmitter::new().with_sink(JsonLinesSink::open(path)?);
    let cadence = checkout(&emitter)?;

    let big = Order {
        items: vec![("espresso machine", 45_000), ("beans", 1_800)],
        ..Order::default()
    };
    let order = cadence
        .run_with(big, RunOptions::default().with_run_id("order-1"))
        .await?;
    println!(
        "order-1: {} cents, {} shipping, reserved: {}",
        order.total_cents, order.shipping, order.reserved
    );

    let odd = Order {
        items: vec![("unicorn", 999), ("hay", 150)],
        ..Order::default()
    };
    let order = cadence
        .run_with(odd, RunOptions::default().with_run_id("order-2"))
        .await?;
    println!(
        "order-2: {} cents, {} shipping, problems: {:?}",
        order.total_cents, order.shipping, order.problems
    );

    // Drain the queue and flush the file before reading it.
    if !emitter.shutdown().await {
        return Err("the event log could not be flushed in time".into());
    }
    let events = read_events(path)?;
    let summary = summarise(&events);
    debug_assert_eq!(
        summary.dropped,
        emitter.dropped(),
        "every drop is reported in the log"
    );
    Ok(summary)
}

fn main() -> Result<(), BoxError> {
    let (path, temporary) = match std::env::args_os().nth(1) {
        Some(p) => (PathBuf::from(p), false),
        None => {
            let p = std::env::temp_dir().join(format!("audit-log-{}.jsonl", std::process::id()));
            let _ = std::fs::remove_file(&p);
            (p, true)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let summary = rt.block_on(audit(&path))?;
    println!("\naudit log {}:\n{summary}", path.display());
    if temporary {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_log_reads_back_into_a_summary() {
        let path =
            std::env::temp_dir().join(format!("audit-log-test-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let s = audit(&path).await.unwrap();
        std::fs::remove_file(&path).unwrap();

        assert_eq!(s.dropped, 0);
        assert_eq!(s.by_type["cadence.started"], 2);
        assert_eq!(s.by_type["cadence.completed"], 2);
        assert_eq!(s.by_type["branch.taken"], 2);
        assert_eq!(s.by_type["note.failed"], 1);
        assert_eq!(s.by_type["note.completed"], 9);
        assert_eq!(s.events, s.by_type.values().sum::<usize>());
        assert_eq!(s.runs["order-1"], "completed in 37.000 ms");
        assert_eq!(
            s.runs["order-2"],
            "completed, failed: reserve_stock in 36.000 ms"
        );
        let order1: Vec<(&str, Duration)> = s
            .notes
            .iter()
            .filter(|n| n.0 == "order-1")
            .map(|n| (n.1.as_str(), n.2))
            .collect();
        assert_eq!(
            order1,
            [
                ("validate", Duration::from_millis(1)),
                ("price", Duration::from_millis(20)),
                ("shipping/true/express", Duration::from_millis(3)),
                ("reserve_stock", Duration::from_millis(8)),
                ("notify", Duration::from_millis(5)),
            ]
        );
        let failed = s.notes.iter().find(|n| n.3.is_some()).unwrap();
        assert_eq!(
            (failed.0.as_str(), failed.1.as_str()),
            ("order-2", "reserve_stock")
        );
        assert!(
            failed
                .3
                .as_deref()
                .unwrap()
                .contains("unicorn is out of stock")
        );
        assert!(s.to_string().contains("note.completed"));
    }
}
