//! When a subscriber's queue becomes a batch (docs/reference.md §16.2.2): when it holds `maxItems` events, or
//! `maxBytes` bytes, or `timeoutMs` has passed since its oldest event; never while frozen; at
//! once when the sandbox flushes (shutdown). Pure: the delivery task supplies the clock.

use std::time::{Duration, Instant};

/// Buffering of one subscription, validated and defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_items: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// What the delivery task should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing to send (empty queue, or frozen): wait for a change.
    Idle,
    /// Not yet: wake up at this instant (or on a change).
    WaitUntil(Instant),
    /// Send the first `n` queued events now.
    Send(usize),
}

/// `queue` holds (encoded size, enqueue time) of each waiting event, oldest first.
pub(crate) fn decide(queue: &[(usize, Instant)], limits: Limits, frozen: bool, flush: bool, now: Instant) -> Decision {
    let Some(&(_, oldest)) = queue.first() else { return Decision::Idle };
    if frozen {
        return Decision::Idle;
    }
    let total: usize = queue.iter().map(|(b, _)| b).sum();
    let due = oldest + limits.timeout;
    if queue.len() >= limits.max_items || total >= limits.max_bytes || flush || now >= due {
        Decision::Send(batch_len(queue, limits))
    } else {
        Decision::WaitUntil(due)
    }
}

/// How many events of the queue go in one batch: at most `max_items`, and at most `max_bytes`
/// unless a single event is larger (then it goes alone).
pub(crate) fn batch_len(queue: &[(usize, Instant)], limits: Limits) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for (b, _) in queue {
        if n >= limits.max_items || (n > 0 && bytes + b > limits.max_bytes) {
            break;
        }
        n += 1;
        bytes += b;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_items: 3, max_bytes: 100, timeout: Duration::from_millis(25) }
    }

    #[test]
    fn waits_for_the_timeout_then_sends_everything() {
        let t0 = Instant::now();
        let q = [(10, t0), (10, t0 + Duration::from_millis(5))];
        assert_eq!(decide(&q, limits(), false, false, t0), Decision::WaitUntil(t0 + Duration::from_millis(25)));
        assert_eq!(decide(&q, limits(), false, false, t0 + Duration::from_millis(25)), Decision::Send(2));
        assert_eq!(decide(&[], limits(), false, false, t0), Decision::Idle);
    }

    #[test]
    fn frozen_never_sends_and_flush_sends_at_once() {
        let t0 = Instant::now();
        let q = [(10, t0)];
        assert_eq!(decide(&q, limits(), true, true, t0 + Duration::from_secs(9)), Decision::Idle);
        assert_eq!(decide(&q, limits(), false, true, t0), Decision::Send(1));
    }

    #[test]
    fn max_items_and_max_bytes_cut_batches() {
        let t0 = Instant::now();
        let q = [(10, t0); 5];
        assert_eq!(decide(&q, limits(), false, false, t0), Decision::Send(3));
        let big = [(60, t0), (60, t0), (10, t0)];
        assert_eq!(decide(&big, limits(), false, false, t0), Decision::Send(1));
        let huge = [(500, t0), (10, t0)];
        assert_eq!(batch_len(&huge, limits()), 1);
    }
}
