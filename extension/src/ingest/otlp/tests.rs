use super::*;
use crate::aggregate::Limits;
use crate::config::Config;
use crate::ingest::testing::VecSink;
use crate::ingest::{Bound, IngestConfig};
use crate::state::Shared;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use perfmon_protocol::otlp::ExportMetricsServiceRequest;
use prost::Message;

fn now() -> i64 {
    1_767_225_600_000
}
const NOW_NS: u64 = 1_767_225_600_000 * 1_000_000;

fn ctx(sink: Arc<dyn SampleSink>) -> Context {
    Context {
        sink,
        mapper: Mutex::new(Mapper::new()),
        options: MapOptions { resource_attributes: vec![], max_dimensions: 28 },
        clock: now,
        stats: Arc::new(Stats::default()),
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn counter(name: &str, v: f64, attrs: Vec<KeyValue>) -> Metric {
    Metric {
        name: name.into(),
        unit: "{request}".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: attrs,
                start_time_unix_nano: 1,
                time_unix_nano: NOW_NS,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn post(body: Vec<u8>, content_type: &str, encoding: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::post(METRICS_PATH).header(CONTENT_TYPE, content_type);
    if let Some(e) = encoding {
        b = b.header(CONTENT_ENCODING, e);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

async fn body(r: HttpResponse) -> (u16, String, Bytes) {
    let status = r.status().as_u16();
    let ct = r.headers().get(CONTENT_TYPE).unwrap().to_str().unwrap().to_owned();
    (status, ct, r.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn protobuf_json_and_gzip_are_answered_in_their_encoding() {
    let sink = Arc::new(VecSink::default());
    let c = ctx(sink.clone());
    let req = request(vec![counter("hits", 2.0, vec![kv("route", "/a")]), counter("refuse-me", 1.0, vec![])]);
    let (status, ct, b) = body(handle(post(req.encode_to_vec(), "application/x-protobuf", None), &c).await).await;
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    let r = ExportMetricsServiceResponse::decode(b).unwrap();
    assert_eq!(r.partial_success.unwrap().rejected_data_points, 1, "the sink refused one");

    let json = serde_json::to_vec(&request(vec![counter("hits", 3.0, vec![])])).unwrap();
    let (status, ct, b) = body(handle(post(json.clone(), "application/json; charset=utf-8", None), &c).await).await;
    assert_eq!((status, ct.as_str(), &b[..]), (200, "application/json", &b"{}"[..]));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &json).unwrap();
    let (status, _, _) = body(handle(post(gz.finish().unwrap(), "application/json", Some("gzip")), &c).await).await;
    assert_eq!(status, 200);

    let points = sink.points.lock().unwrap().clone();
    let got: Vec<(&str, f64, &str)> = points.iter().map(|p| (p.name.as_str(), p.values[0], p.unit)).collect();
    assert_eq!(got, [("hits", 2.0, "Count"), ("hits", 3.0, "Count"), ("hits", 3.0, "Count")]);
    assert_eq!(points[0].dimensions, [("route".to_owned(), "/a".to_owned())]);
    let s = c.stats.snapshot();
    assert_eq!((s.otlp_points_accepted, s.otlp_points_rejected), (3, 1));
    assert_eq!(s.otlp_responses.get(&200), Some(&3));
}

#[tokio::test]
async fn error_answers() {
    let c = ctx(Arc::new(VecSink::default()));
    let pb = request(vec![counter("hits", 2.0, vec![])]).encode_to_vec();
    let truncated = pb[..pb.len() - 4].to_vec();
    let (status, ct, b) = body(handle(post(truncated, "application/x-protobuf", None), &c).await).await;
    assert_eq!((status, ct.as_str()), (400, "application/x-protobuf"));
    assert!(otlp::Status::decode(b).unwrap().message.contains("does not decode"));
    let (status, _, b) = body(handle(post(b"{".to_vec(), "application/json", None), &c).await).await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["code"], 3);
    let (status, _, _) = body(handle(post(pb.clone(), "text/plain", None), &c).await).await;
    assert_eq!(status, 415);
    let (status, _, _) = body(handle(post(pb.clone(), "application/x-protobuf", Some("br")), &c).await).await;
    assert_eq!(status, 415);
    let big = vec![0u8; 5 * 1024 * 1024];
    let r = handle(post(big, "application/x-protobuf", None), &c).await;
    assert_eq!(r.headers().get(CONNECTION).unwrap(), "close");
    assert_eq!(r.status(), 413);
    let r = handle(Request::get(METRICS_PATH).body(Full::new(Bytes::new())).unwrap(), &c).await;
    assert_eq!(r.status(), 405);
    let r = handle(post(pb, "application/x-protobuf", None).map(|b| b), &c).await;
    assert_eq!(r.status(), 200, "the listener still takes good bodies");
    let s = c.stats.snapshot();
    assert_eq!(s.dropped.get("otlp_undecodable"), Some(&2));
    assert_eq!(s.dropped.get("otlp_unsupported_media_type"), Some(&2));
    assert_eq!(s.dropped.get("otlp_body_too_large"), Some(&1));
    assert_eq!(s.otlp_points_accepted, 1);
}

fn shared() -> Arc<Shared> {
    let (cfg, _) = Config::from_lookup(|k| match k {
        "AWS_LAMBDA_FUNCTION_NAME" => Some("fn".to_owned()),
        _ => None,
    });
    Arc::new(Shared::new(&cfg, None, Limits::default(), now()))
}

#[tokio::test]
async fn into_the_aggregator_histograms_with_exact_counts_and_sums() {
    let s = shared();
    let c = ctx(s.clone());
    let hist = |count: u64, sum: f64, counts: Vec<u64>, t: u64| Metric {
        name: "latency".into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: 1,
                time_unix_nano: t,
                count,
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: vec![0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0],
                min: Some(1.0),
                max: Some(90.0),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let gauge = Metric {
        name: "queue".into(),
        unit: "1".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: NOW_NS,
                value: Some(number_data_point::Value::AsInt(7)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    for req in [
        request(vec![hist(4, 60.0, vec![0, 1, 1, 1, 1, 0, 0, 0], NOW_NS - 2)]),
        request(vec![hist(1000, 30_000.0, vec![0, 100, 100, 200, 300, 200, 90, 10], NOW_NS - 1), gauge]),
    ] {
        assert_eq!(record(&req, &c), (0, String::new()));
    }
    let (datums, _) = s.take_for_flush();
    let d: Vec<_> = datums.iter().filter(|d| d.metric_name == "latency").collect();
    let count: f64 = d.iter().flat_map(|d| d.counts.iter()).sum();
    let sum: f64 = d.iter().flat_map(|d| d.values.iter().zip(&d.counts).map(|(v, c)| v * c)).sum();
    assert_eq!(count, 1000.0, "cumulative: the second export counts 996 more, 1000 in all");
    assert!((sum - 30_000.0).abs() < 1e-6, "{sum}");
    assert_eq!(d[0].unit.as_deref(), Some("Milliseconds"));
    let q = datums.iter().find(|d| d.metric_name == "queue").unwrap();
    assert_eq!((q.value, q.unit.as_deref()), (Some(7.0), Some("None")));
    let h = SampleSink::health(s.as_ref());
    assert_eq!(h["samples_recorded"], 1001);
}

#[tokio::test]
async fn ten_thousand_attribute_combinations_stay_within_the_budget_and_lose_nothing() {
    let s = shared();
    let c = ctx(s.clone());
    let metrics: Vec<Metric> = (0..10_000).map(|i| counter("wide", 1.0, vec![kv("user", &i.to_string())])).collect();
    let (rejected, _) = record(&request(metrics), &c);
    assert_eq!(rejected, 0);
    let (datums, _) = s.take_for_flush();
    let wide: Vec<_> = datums.iter().filter(|d| d.metric_name == "wide").collect();
    assert!(wide.len() <= 1_001, "{} series", wide.len());
    let total: f64 = wide.iter().map(|d| d.statistic_values.map(|v| v.sum).or(d.value).unwrap_or(0.0)).sum();
    assert_eq!(total, 10_000.0, "the overflow series keeps the total exact");
    assert!(wide.iter().any(|d| d.dimensions.iter().any(|x| x.value == "__overflow__")));
}

#[tokio::test]
async fn a_taken_port_is_logged_and_the_rest_works() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cfg = IngestConfig::new(0, None, ["FunctionName"]);
    cfg.otlp_port = Some(port);
    let bound = Bound::bind(cfg).await;
    assert!(bound.otlp_addr().is_none());
    let ingest = bound.serve(Arc::new(VecSink::default()));
    assert!(ingest.http_addr().is_some());
    let counters = ingest.counters();
    assert!(
        counters.otlp_listener.starts_with(&format!("bind failed on 127.0.0.1:{port}")),
        "{}",
        counters.otlp_listener
    );
}
