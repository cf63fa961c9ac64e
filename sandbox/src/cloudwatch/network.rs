//! A simulated network path to CloudWatch: a round trip added to every answer, a setup
//! delay on every new connection (DNS, TCP, TLS), uniform jitter, and optionally no keep-alive
//! (every request on a new connection, as after an idle gap longer than the server's idle timeout).
//!
//! [`Network::IN_REGION`] holds the defaults, from published figures for a Lambda function calling
//! an AWS API in its own region (sources in README, "What perfmon costs your function"):
//! PutMetricData from a function "around 60 ms per service call" (AWS Serverless Observability
//! Workshop), warm SDK calls in the 20 ms range and a new connection's DNS + TCP of about 8 ms
//! before the TLS handshake (an AWS solutions architect's breakdown from a 128 MB function).

use std::time::Duration;

/// The network between the extension and the embedded CloudWatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Added to every answer (request out, answer back, server time).
    pub rtt: Duration,
    /// Added once per new connection, before its first request is read (DNS, TCP, TLS handshake).
    pub connect: Duration,
    /// Up to this much more per answer, uniform, deterministic per request.
    pub jitter: Duration,
    /// `false`: the endpoint closes every connection after one answer, so every request pays
    /// `connect` (a sparse function's flushes, minutes apart, find their pooled connection gone).
    pub keep_alive: bool,
}

impl Network {
    /// Loopback as it is: no delay.
    pub const NONE: Network =
        Network { rtt: Duration::ZERO, connect: Duration::ZERO, jitter: Duration::ZERO, keep_alive: true };

    /// In-region defaults: 25 ms round trip + up to 35 ms jitter (25–60 ms per call), 15 ms per new
    /// connection (DNS + TCP ≈ 8 ms, one more round trip for the TLS 1.3 handshake, not its CPU).
    pub const IN_REGION: Network = Network {
        rtt: Duration::from_millis(25),
        connect: Duration::from_millis(15),
        jitter: Duration::from_millis(35),
        keep_alive: true,
    };

    /// Whether anything is added at all.
    pub fn is_none(&self) -> bool {
        self.rtt.is_zero() && self.connect.is_zero() && self.jitter.is_zero() && self.keep_alive
    }

    /// The delay added to the answer of request `seq`: `rtt` plus a jitter drawn from `seed ^ seq`.
    pub fn answer_delay(&self, seed: u64, seq: u64) -> Duration {
        let jitter_us = self.jitter.as_micros() as u64;
        let extra = if jitter_us == 0 { 0 } else { splitmix64(seed ^ seq) % (jitter_us + 1) };
        self.rtt + Duration::from_micros(extra)
    }

    /// Parses `none`, `in-region`, or `RTT_MS,CONNECT_MS,JITTER_MS[,close]`.
    pub fn parse(s: &str) -> Result<Network, String> {
        match s {
            "none" => return Ok(Network::NONE),
            "in-region" => return Ok(Network::IN_REGION),
            _ => {}
        }
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let ms = |p: &str| {
            p.parse::<u64>().map(Duration::from_millis).map_err(|_| format!("not a number of ms: {p:?} in {s:?}"))
        };
        match parts.as_slice() {
            [rtt, connect, jitter] => {
                Ok(Network { rtt: ms(rtt)?, connect: ms(connect)?, jitter: ms(jitter)?, keep_alive: true })
            }
            [rtt, connect, jitter, "close"] => {
                Ok(Network { rtt: ms(rtt)?, connect: ms(connect)?, jitter: ms(jitter)?, keep_alive: false })
            }
            _ => Err(format!("expected none, in-region or RTT_MS,CONNECT_MS,JITTER_MS[,close]; got {s:?}")),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::NONE
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a well-mixed 64-bit hash of one word.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(Network::parse("none"), Ok(Network::NONE));
        assert_eq!(Network::parse("in-region"), Ok(Network::IN_REGION));
        let n = Network::parse("10, 20,5").unwrap();
        assert_eq!((n.rtt.as_millis(), n.connect.as_millis(), n.jitter.as_millis(), n.keep_alive), (10, 20, 5, true));
        assert!(!Network::parse("10,20,5,close").unwrap().keep_alive);
        assert!(Network::parse("10,20").is_err());
        assert!(Network::parse("a,b,c").is_err());
        assert!(Network::parse("1,2,3,open").is_err());
    }

    #[test]
    fn jitter_stays_in_range_and_spreads() {
        let n = Network::IN_REGION;
        let d: Vec<Duration> = (0..2000).map(|i| n.answer_delay(42, i)).collect();
        assert!(d.iter().all(|x| *x >= n.rtt && *x <= n.rtt + n.jitter));
        let mean_ms = d.iter().map(|x| x.as_secs_f64() * 1e3).sum::<f64>() / d.len() as f64;
        // Uniform over [25, 60] ms: the mean is near 42.5 ms.
        assert!((mean_ms - 42.5).abs() < 2.0, "mean {mean_ms}");
        assert_eq!(Network::NONE.answer_delay(1, 2), Duration::ZERO);
    }
}
