//! When to flush: a pure function of the policy, the state and an injected clock (contract §2).
//!
//! | policy | at INVOKE | at SHUTDOWN |
//! |---|---|---|
//! | `end` | wait for this invoke's `platform.runtimeDone`, flush, then `/next` ([`FlushDecision::AtEnd`]) | final |
//! | `background` | if the interval has passed since the last flush and no flush is running, start one now and go straight to `/next` ([`FlushDecision::Background`]): it overlaps the function's own work | final |
//! | `adaptive` | `end` when the invoke is sparse (first invoke, or at least the interval since the previous invoke started), else `background` | final |
//! | `shutdown` | nothing | final |
//!
//! Why `adaptive`: in a frozen sandbox nothing runs, so with `background` a rarely invoked function
//! would hold its data until the next invoke, minutes or hours later. When invokes are sparse, the
//! few milliseconds of an end-of-invoke flush are worth it; when they are frequent, the next invoke
//! comes soon and the flush can ride along with it at no cost to the caller.

use crate::config::FlushPolicy;

/// What [`decide`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushState {
    /// When the last flush started (epoch ms); the process start before the first flush.
    pub last_flush_ms: i64,
    /// When the previous invoke started, if there was one.
    pub last_invoke_ms: Option<i64>,
    /// A flush is running.
    pub in_flight: bool,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushEvent {
    /// An INVOKE event arrived.
    Invoke,
    /// The SHUTDOWN event arrived.
    Shutdown,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDecision {
    /// Nothing now.
    Skip,
    /// Start a flush now, concurrently with the function, and call `/next` without waiting for it.
    Background,
    /// Wait for this invoke's `platform.runtimeDone`, flush, then call `/next`.
    AtEnd,
    /// Flush everything before the SHUTDOWN deadline.
    Final,
}

/// The flush decision. `interval_ms` is `PERFMON_FLUSH_INTERVAL_S` in milliseconds.
pub fn decide(
    policy: FlushPolicy,
    interval_ms: i64,
    state: &FlushState,
    event: FlushEvent,
    now_ms: i64,
) -> FlushDecision {
    if event == FlushEvent::Shutdown {
        return FlushDecision::Final;
    }
    let background = || {
        if !state.in_flight && now_ms - state.last_flush_ms >= interval_ms {
            FlushDecision::Background
        } else {
            FlushDecision::Skip
        }
    };
    match policy {
        FlushPolicy::Shutdown => FlushDecision::Skip,
        FlushPolicy::End => FlushDecision::AtEnd,
        FlushPolicy::Background => background(),
        FlushPolicy::Adaptive => {
            let sparse = state.last_invoke_ms.is_none_or(|prev| now_ms - prev >= interval_ms);
            if sparse {
                FlushDecision::AtEnd
            } else {
                background()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FlushDecision as D;
    use FlushPolicy as P;

    const I: i64 = 60_000;
    const T: i64 = 1_000_000;

    fn st(last_flush_ago: i64, last_invoke_ago: Option<i64>, in_flight: bool) -> FlushState {
        FlushState { last_flush_ms: T - last_flush_ago, last_invoke_ms: last_invoke_ago.map(|a| T - a), in_flight }
    }

    #[test]
    fn table() {
        #[rustfmt::skip]
        let rows: &[(FlushPolicy, FlushState, FlushEvent, FlushDecision, &str)] = &[
            // end: every invoke, whatever the timing.
            (P::End, st(0, Some(1), false), FlushEvent::Invoke, D::AtEnd, "end flushes every invoke"),
            (P::End, st(0, None, true), FlushEvent::Invoke, D::AtEnd, "end even with a flush running (they serialise)"),
            // background: only when the interval has passed, never two at once.
            (P::Background, st(I - 1, Some(5), false), FlushEvent::Invoke, D::Skip, "interval not reached"),
            (P::Background, st(I, Some(5), false), FlushEvent::Invoke, D::Background, "interval reached"),
            (P::Background, st(10 * I, None, false), FlushEvent::Invoke, D::Background, "first invoke after a long init"),
            (P::Background, st(10 * I, Some(5), true), FlushEvent::Invoke, D::Skip, "a flush is already running"),
            // adaptive: end while sparse, background while frequent.
            (P::Adaptive, st(0, None, false), FlushEvent::Invoke, D::AtEnd, "first invoke"),
            (P::Adaptive, st(I - 1, Some(I), false), FlushEvent::Invoke, D::AtEnd, "gap of one interval: sparse"),
            (P::Adaptive, st(I - 1, Some(I - 1), false), FlushEvent::Invoke, D::Skip, "frequent, nothing due"),
            (P::Adaptive, st(I, Some(10), false), FlushEvent::Invoke, D::Background, "frequent, flush due"),
            (P::Adaptive, st(I, Some(10), true), FlushEvent::Invoke, D::Skip, "frequent, flush due but one running"),
            // shutdown: never before SHUTDOWN.
            (P::Shutdown, st(100 * I, None, false), FlushEvent::Invoke, D::Skip, "shutdown policy"),
            // every policy flushes at SHUTDOWN.
            (P::Shutdown, st(0, Some(0), true), FlushEvent::Shutdown, D::Final, "final, shutdown"),
            (P::End, st(0, Some(0), false), FlushEvent::Shutdown, D::Final, "final, end"),
            (P::Background, st(0, None, false), FlushEvent::Shutdown, D::Final, "final, background"),
            (P::Adaptive, st(0, Some(0), true), FlushEvent::Shutdown, D::Final, "final, adaptive"),
        ];
        for (policy, state, event, want, why) in rows {
            assert_eq!(decide(*policy, I, state, *event, T), *want, "{policy:?} {why}");
        }
    }

    #[test]
    fn zero_interval_means_every_invoke() {
        let s = st(0, Some(0), false);
        assert_eq!(decide(P::Background, 0, &s, FlushEvent::Invoke, T), D::Background);
        assert_eq!(decide(P::Adaptive, 0, &s, FlushEvent::Invoke, T), D::AtEnd);
    }
}
