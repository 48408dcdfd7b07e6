//! The engine's bound on one attempt: its timeout and the execution's deadline (TMO-1, RET-7).
//!
//! Like `tokio::time::timeout_at`, but the timer is made only when the attempt first waits:
//! an attempt that is ready at its first poll (the common case of a note that hits a cache or
//! does no I/O) costs no read of tokio's clock, no timer and no runtime handle. The attempt's
//! timeout still counts from the attempt's start: the start is a reading of the run tree's
//! clock (the time-stamp counter, or tokio's clock when it is paused), and when the attempt
//! first waits, the time it already ran is taken off its timeout. So a first poll that blocks
//! the thread for longer than the timeout times out as soon as it returns `Pending`, as with
//! tokio's own timeout.
//!
//! An attempt that is ready when polled always completes, even past its bound (as with
//! `tokio::time::timeout`). When the attempt used up the task's coop budget, the timer is
//! polled unconstrained, so that a busy attempt cannot starve its own timeout (as tokio does).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::coop::has_budget_remaining;
use tokio::time::{Instant, Sleep};

use crate::clock::{RunTree, Stamp};

/// Which bound ended an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// The attempt's own timeout.
    Timeout,
    /// The deadline of the whole execution.
    Deadline,
    /// Neither: the attempt waited, and the runtime has no time driver to watch its bound
    /// with (see [`crate::timer`]).
    NoTimer,
}

/// What bounds one attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds<'t> {
    /// The run tree whose clock read the timeout's start.
    pub(crate) tree: &'t RunTree,
    /// The attempt's own timeout: when the attempt started, on `tree`'s clock, and how long
    /// it may take from then.
    pub(crate) timeout: Option<(Stamp, Duration)>,
    /// The execution's deadline, on tokio's clock.
    pub(crate) deadline: Option<Instant>,
}

impl Bounds<'_> {
    /// The instant the attempt must end by, and which bound that is. Reads the clocks.
    fn resolve(&self) -> (Instant, Hit) {
        let now = Instant::now();
        let end = self.timeout.map(|(start, after)| {
            let (ran, _) = self.tree.lap(Some(start));
            // Past what tokio can represent: as good as never (tokio does the same).
            crate::timer::after(now, after.saturating_sub(ran))
        });
        match (end, self.deadline) {
            (Some(end), Some(deadline)) if deadline <= end => (deadline, Hit::Deadline),
            (Some(end), _) => (end, Hit::Timeout),
            (None, Some(deadline)) => (deadline, Hit::Deadline),
            // Not made without a bound; a bound that is never reached if it were.
            (None, None) => (crate::timer::far_future(now), Hit::Timeout),
        }
    }
}

pin_project_lite::pin_project! {
    /// An attempt bounded by [`Bounds`]: `Ok` with its output, or `Err` with the bound that
    /// ended it (the attempt is then dropped with this future).
    pub(crate) struct Bounded<'t, F> {
        #[pin]
        attempt: F,
        bounds: Bounds<'t>,
        // Boxed: only an attempt that waits has one, and the future of every attempt that
        // does not is smaller for it.
        timer: Option<(Pin<Box<Sleep>>, Hit)>,
    }
}

impl<'t, F: Future> Bounded<'t, F> {
    pub(crate) fn new(attempt: F, bounds: Bounds<'t>) -> Self {
        Bounded {
            attempt,
            bounds,
            timer: None,
        }
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, Hit>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        // Only read once there is a timer to poll: the first poll, ready or not, skips it.
        let had_budget = me.timer.is_none() || has_budget_remaining();
        if let Poll::Ready(out) = me.attempt.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let (sleep, hit) = match me.timer {
            Some(timer) => timer,
            None => {
                let (at, hit) = me.bounds.resolve();
                let Ok(sleep) = crate::timer::sleep_until(at) else {
                    return Poll::Ready(Err(Hit::NoTimer));
                };
                me.timer.insert((Box::pin(sleep), hit))
            }
        };
        let fired = if had_budget && !has_budget_remaining() {
            // The attempt used up the budget: the timer still gets its say.
            pin!(tokio::task::unconstrained(sleep.as_mut())).poll(cx)
        } else {
            sleep.as_mut().poll(cx)
        };
        fired.map(|()| Err(*hit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(tree: &RunTree, timeout: Option<Duration>, deadline: Option<Instant>) -> Bounds<'_> {
        Bounds {
            tree,
            timeout: timeout.map(|after| (tree.now(), after)),
            deadline,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_attempt_completes_without_a_timer_even_past_its_bound() {
        // TMO-1: ready at the first poll means done, whatever the clock says.
        let tree = RunTree::default();
        let b = bounds(&tree, Some(Duration::from_millis(5)), None);
        tokio::time::advance(Duration::from_millis(50)).await;
        let mut f = pin!(Bounded::new(async { 7 }, b));
        let out = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
        assert_eq!(out, Poll::Ready(Ok(7)));
        assert!(
            f.timer.is_none(),
            "no timer for an attempt that never waited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_counts_from_the_start_not_from_the_first_wait() {
        // TMO-1: the time an attempt ran before it first waited is taken off its timeout.
        let tree = RunTree::default();
        let b = bounds(&tree, Some(Duration::from_millis(100)), None);
        let started = Instant::now();
        let attempt = async {
            // Runs 60 ms (of paused time) before it first waits, then waits long.
            tokio::time::advance(Duration::from_millis(60)).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        assert_eq!(Bounded::new(attempt, b).await, Err(Hit::Timeout));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_bound_ends_the_attempt_and_is_named() {
        // RET-7: the deadline wins when it comes first, the timeout otherwise.
        let tree = RunTree::default();
        let long = tokio::time::sleep(Duration::from_secs(10));
        let soon = Instant::now() + Duration::from_millis(30);
        let b = bounds(&tree, Some(Duration::from_millis(100)), Some(soon));
        assert_eq!(Bounded::new(long, b).await, Err(Hit::Deadline));
        assert_eq!(Instant::now(), soon);

        let late = Instant::now() + Duration::from_secs(5);
        let b = bounds(&tree, Some(Duration::from_millis(20)), Some(late));
        let long = tokio::time::sleep(Duration::from_secs(10));
        let started = Instant::now();
        assert_eq!(Bounded::new(long, b).await, Err(Hit::Timeout));
        assert_eq!(started.elapsed(), Duration::from_millis(20));

        let b = bounds(
            &tree,
            None,
            Some(Instant::now() + Duration::from_millis(10)),
        );
        let quick = tokio::time::sleep(Duration::from_millis(5));
        assert_eq!(Bounded::new(quick, b).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_beyond_what_tokio_represents_never_fires() {
        let tree = RunTree::default();
        let b = bounds(&tree, Some(Duration::MAX), None);
        let wait = tokio::time::sleep(Duration::from_secs(3600));
        assert_eq!(Bounded::new(wait, b).await, Ok(()));
    }

    #[tokio::test]
    async fn an_attempt_that_uses_up_the_budget_still_times_out() {
        // As tokio's timeout: the timer is polled unconstrained when the attempt exhausted
        // the task's coop budget, so a busy attempt cannot starve it.
        let tree = RunTree::default();
        let b = bounds(&tree, Some(Duration::from_millis(20)), None);
        let busy = async {
            loop {
                tokio::task::consume_budget().await;
            }
        };
        let bounded = Bounded::new(busy, b);
        let out = tokio::time::timeout(Duration::from_secs(5), bounded).await;
        assert_eq!(out, Ok(Err(Hit::Timeout)), "the attempt's own bound fired");
    }
}
