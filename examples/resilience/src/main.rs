//! Resilience policies against a flaky, simulated payment service (no network; its replies
//! follow a fixed script, so every run prints the same story):
//!
//! - **retry**: exponential backoff with seeded full jitter and a per-attempt timeout rides
//!   out a 503 and a hung call; a small custom [`Hook`] prints each retry and its delay;
//! - **circuit breaker**: three failures in a row open the circuit, calls are then rejected
//!   at once with `CircuitOpen` and its `retry_after`; after the recovery timeout one probe
//!   is let through (half-open), succeeds, and closes the circuit again;
//! - **fallback**: when the service stays down, the payment is marked "queued for later"
//!   instead of failing, both after exhausted retries and when the open circuit rejects it.
//!
//! Run it with `cargo run -p example-resilience` (about half a second of real time).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cadence_core::circuit_breaker::{CircuitBreaker, CircuitState};
use cadence_core::fallback::Fallback;
use cadence_core::retry::{Backoff, Jitter, Retry};
use cadence_core::{
    BoxError, Cadence, CadenceError, ErrorKind, Hook, HookContext, Note, NoteContext, note,
};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// The simulated payment service.

/// What one call to the bank does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Charges the card.
    Ok,
    /// Answers 503 Service Unavailable.
    Unavailable,
    /// Hangs for a second (longer than any caller waits).
    Hang,
}

/// The bank's error.
#[derive(Debug)]
struct Unavailable;

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bank answered 503 Service Unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// A payment provider whose replies follow a script: call *n* gets the *n*-th reply, every call
/// after the script gets `then`. Deterministic: it depends on nothing but its call counter.
#[derive(Debug)]
struct FlakyBank {
    script: Mutex<VecDeque<Reply>>,
    then: Reply,
    calls: AtomicUsize,
}

impl FlakyBank {
    /// `script`: one character per call, `.` ok, `x` 503, `h` hang.
    fn new(script: &str, then: Reply) -> Arc<Self> {
        let script = script
            .chars()
            .map(|c| match c {
                '.' => Reply::Ok,
                'x' => Reply::Unavailable,
                'h' => Reply::Hang,
                other => panic!("unknown script character {other:?}"),
            })
            .collect();
        Arc::new(FlakyBank {
            script: Mutex::new(script),
            then,
            calls: AtomicUsize::new(0),
        })
    }

    /// How many calls reached the bank.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Charges `amount_cents`; returns a receipt.
    async fn charge(&self, payment_id: &str, amount_cents: u32) -> Result<String, Unavailable> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let reply = self.script.lock().unwrap().pop_front().unwrap_or(self.then);
        // Network latency.
        tokio::time::sleep(Duration::from_millis(20)).await;
        match reply {
            Reply::Ok => Ok(format!("rcpt-{payment_id}-{amount_cents}-call{n}")),
            Reply::Unavailable => Err(Unavailable),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(format!("rcpt-{payment_id}-{amount_cents}-late"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The score and the charge note.

/// Where a payment stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Status {
    #[default]
    Pending,
    Charged,
    /// The bank stayed down: the payment waits in a queue for a later attempt.
    QueuedForLater,
}

/// The score of one payment run.
#[derive(Debug, Clone, Default)]
struct Payment {
    id: String,
    amount_cents: u32,
    status: Status,
    receipt: Option<String>,
    /// The attempt that charged the card.
    attempts: u32,
    /// Why the payment was queued.
    detail: String,
}

impl Payment {
    fn new(id: &str, amount_cents: u32) -> Self {
        Payment {
            id: id.to_owned(),
            amount_cents,
            ..Payment::default()
        }
    }
}

/// The note calling `bank`; the policies are added by each scenario.
fn charge(bank: &Arc<FlakyBank>) -> Note<Payment> {
    let bank = bank.clone();
    note::from_fn_with_context(move |p: &mut Payment, cx: &NoteContext<'_>| {
        let bank = bank.clone();
        Box::pin(async move {
            let receipt = bank.charge(&p.id, p.amount_cents).await?;
            p.receipt = Some(receipt);
            p.status = Status::Charged;
            p.attempts = cx.attempt();
            Ok::<_, BoxError>(())
        })
    })
}

/// A one-note payment cadence, observed by `console`.
fn payment_cadence(charge: Note<Payment>, console: &Console) -> Cadence<Payment> {
    Cadence::new("payment")
        .then("charge", charge)
        .with_hooks(console.clone())
        .build()
        .expect("a valid cadence")
}

// ---------------------------------------------------------------------------------------------
// A small custom hook: prints retries, circuit changes and fallbacks, and records them.

/// One thing the [`Console`] saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Retry {
        attempt: u32,
        delay: Duration,
        error: ErrorKind,
    },
    Circuit {
        circuit: String,
        from: CircuitState,
        to: CircuitState,
    },
    Fallback {
        error: ErrorKind,
    },
}

/// Prints what happens, stamped with the time since it was created, and keeps a record for
/// the tests. Cheap to clone (clones share the record).
#[derive(Clone)]
struct Console {
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Console {
    fn new() -> Self {
        Console {
            start: Instant::now(),
            seen: Arc::default(),
        }
    }

    fn say(&self, line: impl fmt::Display) {
        println!("  {:>7.3}s  {line}", self.start.elapsed().as_secs_f64());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The circuit transitions seen so far, as `(from, to)`.
    fn transitions(&self) -> Vec<(CircuitState, CircuitState)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Circuit { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect()
    }
}

impl<S> Hook<S> for Console {
    fn on_retry(
        &self,
        _cx: &HookContext<'_>,
        path: &str,
        attempt: u32,
        delay: Duration,
        error: &CadenceError,
    ) {
        self.say(format_args!(
            "retry: {path} attempt {attempt} failed ({}); attempt {} in {delay:.1?}",
            error.kind(),
            attempt + 1
        ));
        self.seen.lock().unwrap().push(Seen::Retry {
            attempt,
            delay,
            error: error.kind(),
        });
    }

    fn on_circuit_state_change(
        &self,
        _cx: &HookContext<'_>,
        circuit: &str,
        from: CircuitState,
        to: CircuitState,
    ) {
        self.say(format_args!(
            "circuit '{circuit}': {} -> {}",
            from.as_str(),
            to.as_str()
        ));
        self.seen.lock().unwrap().push(Seen::Circuit {
            circuit: circuit.to_owned(),
            from,
            to,
        });
    }

    fn on_fallback(&self, _cx: &HookContext<'_>, path: &str, error: &CadenceError) {
        self.say(format_args!("fallback: {path} gave up ({})", error.kind()));
        self.seen.lock().unwrap().push(Seen::Fallback {
            error: error.kind(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios. Each returns what the tests check.

/// How one payment run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Charged on this attempt.
    Charged { attempt: u32 },
    /// Queued for later by the fallback.
    Queued,
    /// The run failed with an error of this kind.
    Failed(ErrorKind),
}

/// Runs one payment and prints how it ended.
async fn pay(cadence: &Cadence<Payment>, console: &Console, id: &str, cents: u32) -> Outcome {
    match cadence.run(Payment::new(id, cents)).await {
        Ok(p) if p.status == Status::Charged => {
            console.say(format_args!(
                "{id}: charged on attempt {}, receipt {}",
                p.attempts,
                p.receipt.as_deref().unwrap_or("-")
            ));
            Outcome::Charged {
                attempt: p.attempts,
            }
        }
        Ok(p) => {
            console.say(format_args!("{id}: queued for later ({})", p.detail));
            Outcome::Queued
        }
        Err(e) => {
            match e.retry_after() {
                Some(after) => console.say(format_args!(
                    "{id}: rejected, retry_after = {after:.1?}: {e}"
                )),
                None => console.say(format_args!("{id}: failed: {e}")),
            }
            Outcome::Failed(e.kind())
        }
    }
}

/// What a scenario did.
#[derive(Debug)]
struct Report {
    outcomes: Vec<Outcome>,
    bank_calls: usize,
    seen: Vec<Seen>,
    transitions: Vec<(CircuitState, CircuitState)>,
}

impl Report {
    /// Prints the outcomes, the bank's call count and what the hook saw.
    fn summary(&self) {
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Charged { attempt } => format!("charged@{attempt}"),
                Outcome::Queued => "queued".to_owned(),
                Outcome::Failed(kind) => kind.to_string(),
            })
            .collect();
        let count = |f: fn(&Seen) -> bool| self.seen.iter().filter(|s| f(s)).count();
        println!("    outcomes : {}", outcomes.join(", "));
        println!(
            "    bank     : {} calls for {} payments",
            self.bank_calls,
            self.outcomes.len()
        );
        println!(
            "    hook saw : {} retries, {} circuit changes, {} fallbacks\n",
            count(|s| matches!(s, Seen::Retry { .. })),
            count(|s| matches!(s, Seen::Circuit { .. })),
            count(|s| matches!(s, Seen::Fallback { .. })),
        );
    }

    fn new(outcomes: Vec<Outcome>, bank: &FlakyBank, console: &Console) -> Self {
        Report {
            outcomes,
            bank_calls: bank.calls(),
            seen: console.seen(),
            transitions: console.transitions(),
        }
    }
}

/// (a) Retry with exponential backoff and jitter: the bank answers 503, then hangs (the
/// 150 ms per-attempt timeout cuts the call), then charges.
async fn retry_scenario() -> Report {
    let console = Console::new();
    let bank = FlakyBank::new("xh", Reply::Ok);
    let policy = Retry::new(4)
        .with_backoff(Backoff::exponential(Duration::from_millis(50), 2.0))
        .with_jitter(Jitter::Full)
        .with_jitter_seed(7);
    let cadence = payment_cadence(
        charge(&bank)
            .with_retry(policy)
            .with_timeout(Duration::from_millis(150)),
        &console,
    );
    let outcomes = vec![
        pay(&cadence, &console, "p1", 42_00).await,
        pay(&cadence, &console, "p2", 7_50).await,
    ];
    Report::new(outcomes, &bank, &console)
}

/// (b) A circuit breaker: the bank is down for three calls, which opens the circuit; two
/// payments are rejected without reaching the bank; after the recovery timeout a probe
/// (half-open) succeeds and closes the circuit.
async fn breaker_scenario() -> Report {
    let console = Console::new();
    let bank = FlakyBank::new("xxx", Reply::Ok);
    let breaker = CircuitBreaker::builder("bank")
        .consecutive_failures(3)
        .recovery_timeout(Duration::from_millis(300))
        .build()
        .expect("a valid breaker");
    let cadence = payment_cadence(charge(&bank).with_circuit_breaker(breaker), &console);
    let mut outcomes = Vec::new();
    for id in ["p1", "p2", "p3", "p4"] {
        outcomes.push(pay(&cadence, &console, id, 10_00).await);
    }
    // Rejected calls carry the time left until a probe is admitted: wait exactly that long.
    let wait = match cadence.run(Payment::new("p5", 10_00)).await {
        Err(e) => {
            console.say(format_args!(
                "p5: rejected too; the circuit admits a probe in {:.1?}",
                e.retry_after().unwrap_or_default()
            ));
            outcomes.push(Outcome::Failed(e.kind()));
            e.retry_after().unwrap_or_default()
        }
        Ok(_) => Duration::ZERO,
    };
    tokio::time::sleep(wait).await;
    for id in ["p6", "p7"] {
        outcomes.push(pay(&cadence, &console, id, 10_00).await);
    }
    Report::new(outcomes, &bank, &console)
}

/// (c) A fallback: the bank stays down. The first payment retries, opens the circuit and is
/// queued; the second is rejected by the open circuit (the bank is not called) and is queued
/// too.
async fn fallback_scenario() -> Report {
    let console = Console::new();
    let bank = FlakyBank::new("", Reply::Unavailable);
    let breaker = CircuitBreaker::builder("bank")
        .consecutive_failures(2)
        .recovery_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid breaker");
    let queue = Fallback::set(|p: &mut Payment, e: &CadenceError| {
        p.status = Status::QueuedForLater;
        p.detail = format!("{}: will retry from the queue", e.kind());
    });
    let cadence = payment_cadence(
        charge(&bank)
            .with_retry(
                Retry::new(2)
                    .with_backoff(Backoff::exponential(Duration::from_millis(50), 2.0))
                    .with_jitter(Jitter::Full)
                    .with_jitter_seed(7),
            )
            .with_circuit_breaker(breaker)
            .with_fallback(queue),
        &console,
    );
    let outcomes = vec![
        pay(&cadence, &console, "p1", 99_00).await,
        pay(&cadence, &console, "p2", 5_00).await,
    ];
    Report::new(outcomes, &bank, &console)
}

#[tokio::main]
async fn main() {
    let t0 = Instant::now();

    println!("(a) retry with exponential backoff and full jitter (seeded)");
    let a = retry_scenario().await;
    a.summary();

    println!("(b) circuit breaker: 3 failures open it, 300 ms to recover");
    let b = breaker_scenario().await;
    let states: Vec<&str> = std::iter::once(CircuitState::Closed)
        .chain(b.transitions.iter().map(|t| t.1))
        .map(CircuitState::as_str)
        .collect();
    println!("    states   : {}", states.join(" -> "));
    b.summary();

    println!("(c) fallback: the bank stays down, payments are queued");
    let c = fallback_scenario().await;
    c.summary();

    println!("total: {:.3}s", t0.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use CircuitState::{Closed, HalfOpen, Open};

    #[tokio::test(start_paused = true)]
    async fn retries_ride_out_a_503_and_a_hang() {
        let started = Instant::now();
        let r = retry_scenario().await;
        let elapsed = started.elapsed();
        assert_eq!(
            r.outcomes,
            [
                Outcome::Charged { attempt: 3 },
                Outcome::Charged { attempt: 1 }
            ]
        );
        assert_eq!(r.bank_calls, 4);
        // Attempt 1: a 503 (a note error); attempt 2: the per-attempt timeout.
        let retries: Vec<(u32, ErrorKind)> = r
            .seen
            .iter()
            .map(|s| match s {
                Seen::Retry { attempt, error, .. } => (*attempt, *error),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(retries, [(1, ErrorKind::Note), (2, ErrorKind::Timeout)]);
        // Full jitter keeps each delay within its exponential cap (50 ms, then 100 ms) and,
        // seeded, the same on every run.
        let delays: Vec<Duration> = r
            .seen
            .iter()
            .filter_map(|s| match s {
                Seen::Retry { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect();
        assert!(delays[0] <= Duration::from_millis(50));
        assert!(delays[1] <= Duration::from_millis(100));
        assert_eq!(delays, retry_scenario().await.retry_delays());
        // 20 ms (503) + wait + 150 ms (timeout) + wait + 20 ms, then 20 ms for p2 (tokio's
        // timers have millisecond resolution, so each wait may end up to 1 ms late).
        let expected = Duration::from_millis(20 + 150 + 20 + 20) + delays[0] + delays[1];
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(2),
            "{elapsed:?} vs {expected:?}"
        );
    }

    impl Report {
        fn retry_delays(&self) -> Vec<Duration> {
            self.seen
                .iter()
                .filter_map(|s| match s {
                    Seen::Retry { delay, .. } => Some(*delay),
                    _ => None,
                })
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_rejects_and_recovers_through_half_open() {
        let r = breaker_scenario().await;
        assert_eq!(
            r.transitions,
            [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
        assert!(r.seen.iter().all(|s| matches!(
            s,
            Seen::Circuit { circuit, .. } if circuit == "bank"
        )));
        assert_eq!(
            r.outcomes,
            [
                Outcome::Failed(ErrorKind::Note),
                Outcome::Failed(ErrorKind::Note),
                Outcome::Failed(ErrorKind::Note),
                Outcome::Failed(ErrorKind::CircuitOpen),
                Outcome::Failed(ErrorKind::CircuitOpen),
                Outcome::Charged { attempt: 1 },
                Outcome::Charged { attempt: 1 },
            ]
        );
        // The two rejected payments never reached the bank.
        assert_eq!(r.bank_calls, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn rejection_reports_the_time_left_until_a_probe() {
        let bank = FlakyBank::new("xxx", Reply::Ok);
        let breaker = CircuitBreaker::builder("bank")
            .consecutive_failures(3)
            .recovery_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let cadence = payment_cadence(charge(&bank).with_circuit_breaker(breaker), &Console::new());
        for _ in 0..3 {
            cadence.run(Payment::new("p", 1)).await.unwrap_err();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let e = cadence.run(Payment::new("p", 1)).await.unwrap_err();
        assert!(e.is_circuit_open());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_queues_payments_while_the_bank_is_down() {
        let r = fallback_scenario().await;
        assert_eq!(r.outcomes, [Outcome::Queued, Outcome::Queued]);
        // p1 called twice (both failed, the second opened the circuit); p2 never called.
        assert_eq!(r.bank_calls, 2);
        assert_eq!(r.transitions, [(Closed, Open)]);
        let kinds: Vec<&Seen> = r
            .seen
            .iter()
            .filter(|s| !matches!(s, Seen::Circuit { .. }))
            .collect();
        assert!(matches!(
            kinds.as_slice(),
            [
                Seen::Retry {
                    attempt: 1,
                    error: ErrorKind::Note,
                    ..
                },
                Seen::Fallback {
                    error: ErrorKind::RetryExhausted
                },
                Seen::Fallback {
                    error: ErrorKind::CircuitOpen
                },
            ]
        ));
    }
}
