//! When to flush: a pure function of the policy, the state and an injected clock (docs/reference.md §2).
//!
//! | policy | at INVOKE | at SHUTDOWN |
//! |---|---|---|
//! | `end` | wait for this invoke's `platform.runtimeDone`, flush, then `/next` ([`FlushDecision::AtEnd`]) | final |
//! | `background` | if the interval has passed since the last flush and no flush is running, start one now and go straight to `/next` ([`FlushDecision::Background`]): it overlaps the function's own work | final |
//! | `adaptive` | when the invoke is sparse (first invoke, or at least the interval since the previous invoke started), by `PERFMON_SPARSE_FLUSH`: `auto` (default) with the runtime talking through perfmon's Runtime API proxy: wait for Lambda to take the runtime's `/response` (or `/error`), write everything pending as EMF, `/next` ([`FlushDecision::AtResponseEmf`]), without the proxy as `emf`; `end` as `end`, `emf` as `end` but written as EMF ([`FlushDecision::AtEndEmf`]), `defer` as `background`; else `background` | final |
//! | `shutdown` | nothing | final |
//!
//! During a long invoke ([`FlushEvent::Tick`], every policy but `shutdown`, only where INVOKE
//! events arrive): once the running invoke is at least one interval old and the last flush started
//! at least one interval ago, with no flush running, start a flush in the background
//! ([`FlushDecision::Background`]). Lambda freezes a sandbox only once the runtime and every
//! extension wait in `/next`, so perfmon's threads run while the function does (Lambda Extensions
//! API, "Invoke phase"): a one-hour batch job's progress metrics reach CloudWatch every interval,
//! not at its end. The invoke's platform metrics still come from its report; nothing at the end of
//! the invoke changes.
//!
//! Why `adaptive`: in a frozen sandbox nothing runs, so with `background` a rarely invoked function
//! would hold its data until the next invoke, minutes or hours later. When invokes are sparse, the
//! few milliseconds of an end-of-invoke flush are worth it; when they are frequent, the next invoke
//! comes soon and the flush can ride along with it at no cost to the caller.
//!
//! What a sparse invoke pays (`perfmon-bench run --only network`, "sparse" figures, README "What
//! perfmon costs your function"): an end-of-invoke flush waits for `platform.runtimeDone`, which the
//! Telemetry API buffers for at least 25 ms, then for PutMetricData's round trip (25–60 ms in a
//! region, more on a new connection). `emf` removes the round trip but not the wait; `defer` removes
//! both and delays the data until the next invoke (the gap) or SHUTDOWN. That is why `auto` without
//! the proxy is `emf`: the Telemetry API's wait and nothing more, and EMF lines in the function's log
//! group, the same sink `auto` uses through the proxy.

use crate::config::{FlushPolicy, SparseFlush};

/// What [`decide`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushState {
    /// When the last flush started (epoch ms); the process start before the first flush.
    pub last_flush_ms: i64,
    /// When the previous invoke started, if there was one.
    pub last_invoke_ms: Option<i64>,
    /// A flush is running.
    pub in_flight: bool,
    /// The runtime talks through perfmon's Runtime API proxy (`/opt/perfmon-wrapper`).
    pub runtime_proxied: bool,
    /// When the invoke now running started (its INVOKE event), until its `platform.runtimeDone`.
    pub invoke_running_since_ms: Option<i64>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushEvent {
    /// An INVOKE event arrived.
    Invoke,
    /// The SHUTDOWN event arrived.
    Shutdown,
    /// A clock tick while perfmon waits in `/next` (where INVOKE events arrive): a long invoke may
    /// be running.
    Tick,
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
    /// As [`FlushDecision::AtEnd`], but everything goes out as EMF lines (no network).
    AtEndEmf,
    /// Wait until Lambda took the runtime's `/response` or `/error` (seen by the Runtime API proxy),
    /// write everything pending as EMF lines, then call `/next`. This invoke's own platform metrics
    /// (from `platform.runtimeDone`, still buffered by the Telemetry API) go with the next flush.
    AtResponseEmf,
    /// Flush everything before the SHUTDOWN deadline.
    Final,
}

/// The flush decision. `interval_ms` is `PERFMON_FLUSH_INTERVAL_S` in milliseconds.
pub fn decide(
    policy: FlushPolicy,
    sparse_flush: SparseFlush,
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
    if event == FlushEvent::Tick {
        let long_invoke = state.invoke_running_since_ms.is_some_and(|since| now_ms - since >= interval_ms);
        return match policy {
            FlushPolicy::Shutdown => FlushDecision::Skip,
            _ if long_invoke => background(),
            _ => FlushDecision::Skip,
        };
    }
    match policy {
        FlushPolicy::Shutdown => FlushDecision::Skip,
        FlushPolicy::End => FlushDecision::AtEnd,
        FlushPolicy::Background => background(),
        FlushPolicy::Adaptive => {
            let sparse = state.last_invoke_ms.is_none_or(|prev| now_ms - prev >= interval_ms);
            match (sparse, sparse_flush) {
                (true, SparseFlush::Auto) if state.runtime_proxied => FlushDecision::AtResponseEmf,
                (true, SparseFlush::End) => FlushDecision::AtEnd,
                (true, SparseFlush::Auto | SparseFlush::Emf) => FlushDecision::AtEndEmf,
                (true, SparseFlush::Defer) | (false, _) => background(),
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
        FlushState {
            last_flush_ms: T - last_flush_ago,
            last_invoke_ms: last_invoke_ago.map(|a| T - a),
            in_flight,
            runtime_proxied: false,
            invoke_running_since_ms: None,
        }
    }

    /// [`st`] with an invoke running for `running_for` ms.
    fn running(last_flush_ago: i64, running_for: i64, in_flight: bool) -> FlushState {
        FlushState {
            invoke_running_since_ms: Some(T - running_for),
            ..st(last_flush_ago, Some(running_for), in_flight)
        }
    }

    #[test]
    fn long_invokes_flush_on_the_interval_in_the_background() {
        use SparseFlush as S;
        let tick = FlushEvent::Tick;
        for s in [S::Auto, S::End, S::Emf, S::Defer] {
            for p in [P::End, P::Background, P::Adaptive] {
                let d = |state: FlushState| decide(p, s, I, &state, tick, T);
                // The invoke is one interval old and so is the last flush: send what is pending.
                assert_eq!(d(running(I, I, false)), D::Background, "{p:?} {s:?}");
                assert_eq!(d(running(10 * I, 3 * I + 1, false)), D::Background, "{p:?} {s:?}");
                // Younger than one interval: the end-of-invoke rules apply as before.
                assert_eq!(d(running(10 * I, I - 1, false)), D::Skip, "{p:?} {s:?} young invoke");
                // Flushed less than an interval ago (the previous tick's flush): wait.
                assert_eq!(d(running(I - 1, 5 * I, false)), D::Skip, "{p:?} {s:?} flushed recently");
                // Never two flushes at once.
                assert_eq!(d(running(5 * I, 5 * I, true)), D::Skip, "{p:?} {s:?} one running");
                // No invoke running (its runtimeDone seen): ticks do nothing.
                assert_eq!(d(st(10 * I, Some(10 * I), false)), D::Skip, "{p:?} {s:?} idle");
            }
            // `shutdown` sends nothing before SHUTDOWN, however long the invoke.
            assert_eq!(decide(P::Shutdown, s, I, &running(10 * I, 10 * I, false), tick, T), D::Skip);
        }
        // A tick is not an INVOKE: it never makes the next invoke wait, and SHUTDOWN is unchanged.
        let r = running(10 * I, 10 * I, false);
        assert_eq!(decide(P::Adaptive, S::Auto, I, &r, FlushEvent::Shutdown, T), D::Final);
    }

    #[test]
    fn a_long_invoke_flushes_once_per_interval() {
        // A 60 s invoke, interval 5 s, ticks every 0.5 s, each flush taking 0.3 s: flushes start at
        // 5, 10, ..., 55 s after the invoke's start (11 of them), never closer than one interval.
        let i = 5_000;
        let start = T;
        let mut state = FlushState {
            last_flush_ms: start - 100,
            last_invoke_ms: Some(start),
            in_flight: false,
            runtime_proxied: false,
            invoke_running_since_ms: Some(start),
        };
        let mut flushes = Vec::new();
        let mut in_flight_until = None;
        for now in (start..start + 60_000).step_by(500) {
            if in_flight_until.is_some_and(|until| now >= until) {
                state.in_flight = false;
            }
            if decide(P::Adaptive, SparseFlush::Auto, i, &state, FlushEvent::Tick, now) == D::Background {
                state.in_flight = true;
                state.last_flush_ms = now;
                in_flight_until = Some(now + 300);
                flushes.push(now - start);
            }
        }
        assert_eq!(flushes, (1..12).map(|k| k * i).collect::<Vec<_>>());
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
            assert_eq!(decide(*policy, SparseFlush::End, I, state, *event, T), *want, "{policy:?} {why}");
        }
    }

    #[test]
    fn sparse_flush_changes_only_sparse_adaptive_invokes() {
        use SparseFlush as S;
        let sparse = st(I, Some(I), false);
        let first = st(0, None, false);
        let frequent_due = st(I, Some(10), false);
        let e = FlushEvent::Invoke;
        assert_eq!(decide(P::Adaptive, S::Emf, I, &sparse, e, T), D::AtEndEmf);
        assert_eq!(decide(P::Adaptive, S::Emf, I, &first, e, T), D::AtEndEmf);
        assert_eq!(decide(P::Adaptive, S::Defer, I, &sparse, e, T), D::Background);
        // First invoke right after init: nothing due yet, nothing at the end either.
        assert_eq!(decide(P::Adaptive, S::Defer, I, &first, e, T), D::Skip);
        for s in [S::End, S::Emf, S::Defer] {
            assert_eq!(decide(P::Adaptive, s, I, &frequent_due, e, T), D::Background, "{s:?}");
            assert_eq!(decide(P::End, s, I, &sparse, e, T), D::AtEnd, "{s:?}");
            assert_eq!(decide(P::Background, s, I, &sparse, e, T), D::Background, "{s:?}");
            assert_eq!(decide(P::Adaptive, s, I, &sparse, FlushEvent::Shutdown, T), D::Final, "{s:?}");
        }
    }

    #[test]
    fn auto_uses_the_response_only_through_the_proxy() {
        use SparseFlush as S;
        let e = FlushEvent::Invoke;
        let proxied = |s: FlushState| FlushState { runtime_proxied: true, ..s };
        for s in [st(I, Some(I), false), st(0, None, false)] {
            assert_eq!(decide(P::Adaptive, S::Auto, I, &s, e, T), D::AtEndEmf, "no proxy: as emf");
            assert_eq!(decide(P::Adaptive, S::End, I, &s, e, T), D::AtEnd, "end stays end without the proxy");
            assert_eq!(decide(P::Adaptive, S::Auto, I, &proxied(s), e, T), D::AtResponseEmf);
            // An explicit choice is kept with the proxy.
            assert_eq!(decide(P::Adaptive, S::End, I, &proxied(s), e, T), D::AtEnd);
            assert_eq!(decide(P::Adaptive, S::Emf, I, &proxied(s), e, T), D::AtEndEmf);
            assert_eq!(decide(P::End, S::Auto, I, &proxied(s), e, T), D::AtEnd);
        }
        // Frequent traffic: background as before (PutMetricData), proxy or not.
        let frequent_due = proxied(st(I, Some(10), false));
        assert_eq!(decide(P::Adaptive, S::Auto, I, &frequent_due, e, T), D::Background);
        assert_eq!(decide(P::Adaptive, S::Auto, I, &frequent_due, FlushEvent::Shutdown, T), D::Final);
    }

    #[test]
    fn zero_interval_means_every_invoke() {
        let s = st(0, Some(0), false);
        assert_eq!(decide(P::Background, SparseFlush::End, 0, &s, FlushEvent::Invoke, T), D::Background);
        assert_eq!(decide(P::Adaptive, SparseFlush::End, 0, &s, FlushEvent::Invoke, T), D::AtEnd);
    }
}
