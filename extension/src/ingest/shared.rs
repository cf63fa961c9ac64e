//! The production [`SampleSink`]: the extension's shared state ([`crate::state::Shared`]), and the
//! listeners' settings from [`crate::config::Config`].
//!
//! One lock per request or datagram: the entries of a batch go into the aggregator together.
//! What the aggregator refuses it counts itself (`samples_dropped` in the health body); here it
//! becomes a [`Refusal`] for the HTTP answer.

use perfmon_protocol::contract::dimension;
use perfmon_protocol::custom::{self, MetricEntry};
use perfmon_protocol::otlp::{Point, PointKind};

use super::{IngestConfig, Refusal, SampleSink};
use crate::aggregate::{Kind, MetricSample, RecordError, Resolution};
use crate::config::Config;
use crate::state::Shared;

impl IngestConfig {
    /// Ports from `PERFMON_HTTP_PORT` / `PERFMON_STATSD_PORT`; default dimensions `FunctionName`
    /// and those of `PERFMON_DIMENSIONS`.
    pub fn from_config(cfg: &Config) -> Self {
        let names =
            std::iter::once(dimension::FUNCTION_NAME.to_owned()).chain(cfg.dimensions.iter().map(|(n, _)| n.clone()));
        let mut ic = IngestConfig::new(cfg.http_port, cfg.statsd_port, names);
        ic.otlp_port = cfg.otlp_port;
        ic.statsd_socket = cfg.statsd_socket.clone();
        ic.statsd_rcvbuf = cfg.statsd_rcvbuf;
        ic.otlp_options.resource_attributes = cfg.otlp_resource_attributes.clone();
        ic
    }
}

/// The aggregator's sample for an entry; no timestamp means `now_ms`.
pub fn sample(entry: MetricEntry, now_ms: i64) -> MetricSample {
    MetricSample {
        name: entry.name.into(),
        unit: entry.unit.into(),
        kind: match entry.kind {
            custom::Kind::Distribution => Kind::Distribution,
            custom::Kind::Counter => Kind::Counter,
            custom::Kind::Gauge => Kind::Gauge,
        },
        dimensions: entry.dimensions.into_iter().map(|d| (d.name, d.value)).collect(),
        values: entry.values,
        timestamp_ms: entry.timestamp_ms.unwrap_or(now_ms),
        resolution: match entry.resolution {
            custom::Resolution::Standard => Resolution::Standard,
            custom::Resolution::High => Resolution::High,
        },
    }
}

/// The aggregator's sample for an OTLP point, and the counts of its values.
pub fn point_sample(point: Point) -> (MetricSample, Vec<u64>) {
    let sample = MetricSample {
        name: point.name.into(),
        unit: point.unit.into(),
        kind: match point.kind {
            PointKind::Counter => Kind::Counter,
            PointKind::Gauge => Kind::Gauge,
            PointKind::Distribution => Kind::Distribution,
        },
        dimensions: point.dimensions,
        values: point.values,
        timestamp_ms: point.timestamp_ms,
        resolution: Resolution::Standard,
    };
    (sample, point.counts)
}

/// The HTTP answer's entry for the `index`-th sample, which the aggregator refused (and counted).
fn refusal(index: usize, e: RecordError) -> Refusal {
    match e {
        RecordError::Invalid(e) => Refusal { index, reason: "invalid", message: e.to_string() },
        e @ RecordError::Dropped { reason, .. } => Refusal { index, reason: reason.as_str(), message: e.to_string() },
    }
}

impl SampleSink for Shared {
    fn record_points(&self, points: Vec<Point>, now_ms: i64) -> Vec<Refusal> {
        let mut refused = Vec::new();
        let mut g = self.lock();
        for (index, point) in points.into_iter().enumerate() {
            let (sample, counts) = point_sample(point);
            if let Err(e) = g.agg.record_weighted(sample, &counts, now_ms) {
                refused.push(refusal(index, e));
            }
        }
        drop(g);
        self.snap_start_emf_at_once();
        refused
    }

    fn record(&self, entries: Vec<MetricEntry>, now_ms: i64) -> Vec<Refusal> {
        let mut refused = Vec::new();
        let mut g = self.lock();
        for (index, entry) in entries.into_iter().enumerate() {
            if let Err(e) = g.agg.record(sample(entry, now_ms), now_ms) {
                refused.push(refusal(index, e));
            }
        }
        drop(g);
        self.snap_start_emf_at_once();
        refused
    }

    fn health(&self) -> serde_json::Value {
        serde_json::to_value(Shared::health(self)).unwrap_or_else(|_| serde_json::json!({}))
    }

    fn attach_listener(&self, counters: std::sync::Arc<crate::listener::Counters>) {
        Shared::attach_listener(self, counters);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::aggregate::Limits;
    use crate::ingest::Ingest;

    fn shared(limits: Limits) -> Arc<Shared> {
        let (cfg, _) = Config::from_lookup(|k| match k {
            "PERFMON_DIMENSIONS" => Some("Env=test".to_owned()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some("fn".to_owned()),
            _ => None,
        });
        Arc::new(Shared::new(&cfg, None, limits, crate::state::now_ms()))
    }

    #[test]
    fn the_config_gives_ports_and_default_names() {
        let (cfg, _) = Config::from_lookup(|k| match k {
            "PERFMON_DIMENSIONS" => Some("Environment=prod,Service=chat".to_owned()),
            "PERFMON_STATSD_PORT" => Some("0".to_owned()),
            _ => None,
        });
        let ic = IngestConfig::from_config(&cfg);
        assert_eq!((ic.http_port, ic.statsd_port), (4280, None));
        assert_eq!(ic.validator.default_names(), ["Environment", "FunctionName", "Service"]);
    }

    #[test]
    fn entries_reach_the_aggregator_and_its_refusals_come_back() {
        let s = shared(Limits { max_series: 2, overflow_reserve: 0, ..Limits::default() });
        let v = custom::Validator::new(["FunctionName", "Env"]);
        let now = crate::state::now_ms();
        let batch = v
            .parse_metrics(
                br#"[{"name":"A","values":[1,2,3],"unit":"Milliseconds","dimensions":{"T":"x"}},
                     {"name":"B","value":5,"kind":"counter"},
                     {"name":"C","value":1}]"#,
                now,
            )
            .unwrap();
        let refused = SampleSink::record(s.as_ref(), batch.entries, now);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!((refused[0].index, refused[0].reason), (2, "series_cap"));
        let h = SampleSink::health(s.as_ref());
        assert_eq!(h["samples_held"], 4);
        assert_eq!(h["series_held"], 2);
        assert_eq!(h["samples_dropped"]["series_cap"], 1);
        let (datums, _) = s.take_for_flush();
        let a = datums.iter().find(|d| d.metric_name == "A").unwrap();
        let dims: Vec<(&str, &str)> = a.dimensions.iter().map(|d| (d.name.as_str(), d.value.as_str())).collect();
        assert!(
            dims.contains(&("T", "x")) && dims.contains(&("FunctionName", "fn")) && dims.contains(&("Env", "test"))
        );
        assert_eq!(a.unit.as_deref(), Some("Milliseconds"));
    }

    #[tokio::test]
    async fn end_to_end_over_http_and_statsd_into_the_shared_state() {
        use std::io::{Read, Write};
        let s = shared(Limits::default());
        let mut cfg = IngestConfig::new(0, Some(0), ["FunctionName", "Env"]);
        cfg.clock = crate::state::now_ms;
        let ingest = Ingest::start(cfg, s.clone()).await;
        let http = ingest.http_addr().unwrap();
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(b"q:12|ms|#route:/a\nhits:1|c|@0.5\nbad", ingest.statsd_addr().unwrap()).await.unwrap();
        let body = r#"{"operation":"op","durationMs":7,"success":false,"errorType":"Boom"}"#;
        let status = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(http).unwrap();
            write!(
                c,
                "POST /v1/operations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(status.starts_with("HTTP/1.1 202"), "{status}");
        for _ in 0..200 {
            if ingest.counters().statsd_datagrams == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (datums, _) = s.take_for_flush();
        let mut names: Vec<&str> = datums.iter().map(|d| d.metric_name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["OperationCount", "OperationDuration", "OperationErrors", "OperationErrors", "hits", "q"]);
        let hits = datums.iter().find(|d| d.metric_name == "hits").unwrap();
        let total = hits.statistic_values.map(|v| v.sum).or(hits.value).unwrap_or_else(|| hits.values.iter().sum());
        assert_eq!(total, 2.0, "a counter at rate 0.5 counts double: {hits:?}");
        assert_eq!(ingest.counters().dropped.get("statsd_missing_value"), Some(&1));
    }
}
