use super::*;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const NOW_MS: i64 = 1_767_225_600_000;
const NOW_NS: u64 = NOW_MS as u64 * 1_000_000;

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
            resource: Some(Resource { attributes: vec![kv("service.name", "checkout")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "app".into(), ..Default::default() }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric { name: name.into(), unit: unit.into(), data: Some(data), ..Default::default() }
}

fn number(v: f64, start: u64, time: u64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, monotonic: bool, temporality: AggregationTemporality) -> metric::Data {
    metric::Data::Sum(Sum { data_points: points, aggregation_temporality: temporality as i32, is_monotonic: monotonic })
}

fn opts() -> MapOptions {
    MapOptions { resource_attributes: vec![], max_dimensions: 29 }
}

fn counter_values(m: &Mapped) -> Vec<f64> {
    m.points.iter().flat_map(|p| p.values.clone()).collect()
}

#[test]
fn content_types() {
    assert_eq!(Encoding::from_content_type("application/x-protobuf"), Some(Encoding::Protobuf));
    assert_eq!(Encoding::from_content_type("Application/JSON; charset=utf-8"), Some(Encoding::Json));
    assert_eq!(Encoding::from_content_type("text/plain"), None);
}

#[test]
fn protobuf_json_and_gzip_decode_to_the_same_request() {
    let req = request(vec![metric(
        "hits",
        "{request}",
        sum(vec![number(3.0, NOW_NS - 1, NOW_NS, vec![kv("route", "/a")])], true, AggregationTemporality::Delta),
    )]);
    let pb = req.encode_to_vec();
    assert_eq!(decode(&pb, Encoding::Protobuf, false).unwrap(), req);
    let json = serde_json::to_vec(&req).unwrap();
    assert_eq!(decode(&json, Encoding::Json, false).unwrap(), req);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &pb).unwrap();
    assert_eq!(decode(&gz.finish().unwrap(), Encoding::Protobuf, true).unwrap(), req);
}

#[test]
fn json_as_the_otlp_spec_writes_it() {
    // Example shaped like the OTLP spec's metrics.json: 64-bit integers as strings, enums as numbers.
    let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
      "scopeMetrics":[{"scope":{"name":"s"},"metrics":[
        {"name":"my.counter","unit":"1","sum":{"aggregationTemporality":1,"isMonotonic":true,
          "dataPoints":[{"asInt":"5","startTimeUnixNano":"1767225500000000000","timeUnixNano":"1767225600000000000",
            "attributes":[{"key":"my.attr","value":{"stringValue":"x"}}]}]}},
        {"name":"my.gauge","unit":"ms","gauge":{"dataPoints":[{"asDouble":2.5,"timeUnixNano":"1767225600000000000"}]}},
        {"name":"my.histogram","unit":"ms","histogram":{"aggregationTemporality":1,"dataPoints":[{"startTimeUnixNano":"1767225500000000000",
          "timeUnixNano":"1767225600000000000","count":"3","sum":12,"bucketCounts":["1","1","1"],"explicitBounds":[1,5],"min":0.5,"max":8}]}}
      ]}]}]}"#;
    let req = decode(body, Encoding::Json, false).unwrap();
    let m = Mapper::new().map(&req, &opts(), NOW_MS);
    assert_eq!(m.rejected_total(), 0, "{m:?}");
    assert_eq!(m.data_points, 3);
    let c = &m.points[0];
    assert_eq!((c.kind, c.unit, c.values.clone()), (PointKind::Counter, "None", vec![5.0]));
    assert_eq!(c.dimensions, vec![("my.attr".to_owned(), "x".to_owned())]);
    assert_eq!(m.points[1].kind, PointKind::Gauge);
    assert_eq!(m.points[1].unit, "Milliseconds");
    let h = &m.points[2];
    assert_eq!(h.counts.iter().sum::<u64>(), 3);
    let placed: f64 = h.values.iter().zip(&h.counts).map(|(v, c)| v * *c as f64).sum();
    assert!((placed - 12.0).abs() < 1e-9, "{h:?}");
}

#[test]
fn undecodable_bodies() {
    let req = request(vec![metric(
        "g",
        "",
        metric::Data::Gauge(Gauge { data_points: vec![number(1.0, 0, NOW_NS, vec![])] }),
    )]);
    let pb = req.encode_to_vec();
    let e = decode(&pb[..pb.len() - 3], Encoding::Protobuf, false).unwrap_err();
    assert_eq!((e.status(), e.reason()), (400, "otlp_undecodable"));
    assert_eq!(decode(b"{not json", Encoding::Json, false).unwrap_err().status(), 400);
    assert_eq!(decode(b"\x1f\x8b garbage", Encoding::Protobuf, true).unwrap_err().reason(), "otlp_bad_gzip");
    // A negative count does not decode as the unsigned field it is; serde's flattened oneof turns
    // that into a metric without data, which the mapper rejects (counted, in the partial success).
    let neg =
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{"dataPoints":[{"count":"-1"}]}},
        {"name":"g","gauge":{"dataPoints":[{"asDouble":1}]}}]}]}]}"#;
    let m = Mapper::new().map(&decode(neg, Encoding::Json, false).unwrap(), &opts(), NOW_MS);
    assert_eq!(m.rejected, BTreeMap::from([("otlp_no_data", 1)]));
    assert!(m.first_error.unwrap().starts_with("h: "));
    assert_eq!(m.points.len(), 1, "the other metric is kept");
}

#[test]
fn too_large_bodies_also_after_gzip() {
    assert_eq!(decode(&vec![0u8; MAX_BODY_BYTES + 1], Encoding::Protobuf, false).unwrap_err().status(), 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; MAX_BODY_BYTES + 10]).unwrap();
    let small = gz.finish().unwrap();
    assert!(small.len() < 100_000);
    assert_eq!(decode(&small, Encoding::Protobuf, true).unwrap_err().status(), 413);
}

#[test]
fn cumulative_counters_become_deltas_with_resets_and_duplicates() {
    let mut mapper = Mapper::new();
    let start = NOW_NS - 10_000_000_000;
    let mut send = |v: f64, start: u64, t: u64| {
        let req = request(vec![metric(
            "c",
            "1",
            sum(vec![number(v, start, t, vec![kv("k", "v")])], true, AggregationTemporality::Cumulative),
        )]);
        counter_values(&mapper.map(&req, &opts(), NOW_MS))
    };
    assert_eq!(send(5.0, start, NOW_NS - 4_000), vec![5.0], "first point counts whole");
    assert_eq!(send(8.0, start, NOW_NS - 3_000), vec![3.0]);
    assert_eq!(send(8.0, start, NOW_NS - 3_000), Vec::<f64>::new(), "a repeated point adds nothing");
    assert_eq!(send(8.0, start, NOW_NS - 2_000), vec![0.0]);
    assert_eq!(send(2.0, start, NOW_NS - 1_000), vec![2.0], "a drop is a reset");
    assert_eq!(send(4.0, start + 1, NOW_NS), vec![4.0], "a new start time is a reset");
    assert_eq!(mapper.streams(), 1);
}

#[test]
fn streams_differ_by_attributes_and_resource() {
    let mut mapper = Mapper::new();
    let p = |attr: &str, v: f64| number(v, 1, NOW_NS, vec![kv("k", attr)]);
    let req =
        request(vec![metric("c", "", sum(vec![p("a", 1.0), p("b", 2.0)], true, AggregationTemporality::Cumulative))]);
    assert_eq!(counter_values(&mapper.map(&req, &opts(), NOW_MS)), vec![1.0, 2.0]);
    let mut other = req.clone();
    other.resource_metrics[0].resource =
        Some(Resource { attributes: vec![kv("service.name", "other")], ..Default::default() });
    assert_eq!(counter_values(&mapper.map(&other, &opts(), NOW_MS)), vec![1.0, 2.0]);
    assert_eq!(mapper.streams(), 4);
}

#[test]
fn delta_counters_gauges_and_up_down_counters() {
    let mut mapper = Mapper::new();
    let req = request(vec![
        metric(
            "d",
            "ms",
            sum(
                vec![number(2.0, 0, NOW_NS, vec![]), number(-1.0, 0, NOW_NS, vec![])],
                true,
                AggregationTemporality::Delta,
            ),
        ),
        metric("ud", "{item}", sum(vec![number(-3.0, 1, NOW_NS, vec![])], false, AggregationTemporality::Cumulative)),
        metric(
            "g",
            "%",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(f64::NAN, 0, NOW_NS, vec![]), number(42.0, 0, NOW_NS, vec![])],
            }),
        ),
    ]);
    let m = mapper.map(&req, &opts(), NOW_MS);
    assert_eq!(m.data_points, 5);
    assert_eq!(m.rejected, BTreeMap::from([("otlp_invalid_value", 2)]));
    let got: Vec<(&str, PointKind, &str, f64)> =
        m.points.iter().map(|p| (p.name.as_str(), p.kind, p.unit, p.values[0])).collect();
    assert_eq!(
        got,
        [
            ("d", PointKind::Counter, "Milliseconds", 2.0),
            ("ud", PointKind::Gauge, "Count", -3.0),
            ("g", PointKind::Gauge, "Percent", 42.0)
        ]
    );
    assert!(m.first_error.unwrap().contains("negative"));
    assert_eq!(mapper.streams(), 0, "only monotonic cumulative sums are remembered");
}

#[test]
fn timestamps_outside_cloudwatchs_window_are_rejected() {
    let req = request(vec![metric(
        "g",
        "",
        metric::Data::Gauge(Gauge {
            data_points: vec![
                number(1.0, 0, 1, vec![]),
                number(1.0, 0, NOW_NS + 3 * 3_600_000_000_000, vec![]),
                number(1.0, 0, 0, vec![]),
            ],
        }),
    )]);
    let m = Mapper::new().map(&req, &opts(), NOW_MS);
    assert_eq!(m.rejected, BTreeMap::from([("otlp_timestamp", 2)]));
    assert_eq!(m.points.len(), 1);
    assert_eq!(m.points[0].timestamp_ms, NOW_MS, "no time: now");
}

#[test]
fn attributes_within_the_dimension_limit_and_resource_attributes_by_setting() {
    let attrs: Vec<KeyValue> = (0..40).map(|i| kv(&format!("a{i:02}"), "v")).chain([kv("empty", "")]).collect();
    let req =
        request(vec![metric("g", "", metric::Data::Gauge(Gauge { data_points: vec![number(1.0, 0, NOW_NS, attrs)] }))]);
    let o = MapOptions { resource_attributes: vec!["service.name".into(), "absent".into()], max_dimensions: 28 };
    let m = Mapper::new().map(&req, &o, NOW_MS);
    let d = &m.points[0].dimensions;
    assert_eq!(d.len(), 28);
    assert!(d.contains(&("service.name".to_owned(), "checkout".to_owned())));
    assert_eq!(m.attributes_skipped, 41 - 27);
}

#[test]
fn cumulative_histograms_become_delta_distributions_with_exact_sums() {
    let mut mapper = Mapper::new();
    let hp = |count: u64, sum: f64, buckets: Vec<u64>, t: u64| HistogramDataPoint {
        start_time_unix_nano: 1,
        time_unix_nano: t,
        count,
        sum: Some(sum),
        bucket_counts: buckets,
        explicit_bounds: vec![0.0, 5.0, 10.0, 25.0],
        min: Some(0.5),
        max: Some(40.0),
        ..Default::default()
    };
    let mut send = |p: HistogramDataPoint| {
        let req = request(vec![metric(
            "lat",
            "s",
            metric::Data::Histogram(Histogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )]);
        mapper.map(&req, &opts(), NOW_MS)
    };
    let m = send(hp(3, 14.0, vec![0, 2, 1, 0, 0], NOW_NS - 10));
    let p = &m.points[0];
    assert_eq!((p.kind, p.unit), (PointKind::Distribution, "Seconds"));
    assert_eq!(p.counts, vec![2, 1]);
    assert!(p.values[0] > 0.0 && p.values[0] <= 5.0 && p.values[1] > 5.0 && p.values[1] <= 10.0, "{p:?}");
    let s: f64 = p.values.iter().zip(&p.counts).map(|(v, c)| v * *c as f64).sum();
    assert!((s - 14.0).abs() < 1e-9);
    let m = send(hp(5, 14.0 + 30.0 + 1.0, vec![0, 3, 1, 0, 1], NOW_NS));
    let p = &m.points[0];
    assert_eq!(p.counts, vec![1, 1], "the delta: one in (0,5], one in (25, 40]");
    let s: f64 = p.values.iter().zip(&p.counts).map(|(v, c)| v * *c as f64).sum();
    assert!((s - 31.0).abs() < 1e-9, "{p:?}");
    assert!(p.values[1] > 25.0 && p.values[1] <= 40.0);
}

#[test]
fn inconsistent_histograms_are_rejected() {
    let bad = HistogramDataPoint {
        count: 3,
        bucket_counts: vec![1, 1],
        explicit_bounds: vec![1.0],
        time_unix_nano: NOW_NS,
        ..Default::default()
    };
    let nan = HistogramDataPoint { count: 1, sum: Some(f64::NAN), time_unix_nano: NOW_NS, ..Default::default() };
    let unsorted = HistogramDataPoint {
        count: 0,
        bucket_counts: vec![0, 0, 0],
        explicit_bounds: vec![2.0, 1.0],
        time_unix_nano: NOW_NS,
        ..Default::default()
    };
    let req = request(vec![
        metric(
            "h",
            "",
            metric::Data::Histogram(Histogram { data_points: vec![bad, nan, unsorted], aggregation_temporality: 1 }),
        ),
        metric("s", "", metric::Data::Summary(Summary { data_points: vec![SummaryDataPoint::default()] })),
        metric("", "", metric::Data::Gauge(Gauge { data_points: vec![number(1.0, 0, NOW_NS, vec![])] })),
    ]);
    let m = Mapper::new().map(&req, &opts(), NOW_MS);
    assert_eq!(
        m.rejected,
        BTreeMap::from([
            ("otlp_invalid_buckets", 2),
            ("otlp_invalid_value", 1),
            ("otlp_summary", 1),
            ("otlp_invalid_name", 1)
        ])
    );
    assert!(m.points.is_empty());
}

#[test]
fn exponential_histograms_at_their_precision_and_cumulative_across_a_rescale() {
    let mut mapper = Mapper::new();
    // scale 3: base 2^(1/8) ≈ 1.0905.
    let ep = |scale: i32, offset: i32, counts: Vec<u64>, zero: u64, sum: f64, t: u64| ExponentialHistogramDataPoint {
        start_time_unix_nano: 1,
        time_unix_nano: t,
        count: counts.iter().sum::<u64>() + zero,
        sum: Some(sum),
        scale,
        zero_count: zero,
        positive: Some(Buckets { offset, bucket_counts: counts }),
        ..Default::default()
    };
    let mut send = |p| {
        let req = request(vec![metric(
            "e",
            "ms",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: 2,
            }),
        )]);
        mapper.map(&req, &opts(), NOW_MS)
    };
    // Values 10 (index 26 at scale 3: 2^(26/8)=9.51..10.37) twice and 0 once.
    let m = send(ep(3, 26, vec![2], 1, 20.0, NOW_NS - 10));
    let p = &m.points[0];
    assert_eq!(p.counts, vec![1, 2]);
    assert_eq!(p.values[0], 0.0);
    assert!((p.values[1] - 10.0).abs() < 1e-9, "sum-preserving placement gives 10 exactly: {p:?}");
    // Next export, downscaled to scale 2 (index 13 holds 26 and 27), plus one 10.
    let m = send(ep(2, 13, vec![3], 1, 30.0, NOW_NS));
    let p = &m.points[0];
    assert_eq!(p.counts, vec![1]);
    assert!((p.values[0] - 10.0).abs() < 1e-9, "{p:?}");
}

#[test]
fn placement_without_sum_uses_midpoints_and_closes_open_buckets_with_min_max() {
    let (v, c) =
        place(&[(f64::NEG_INFINITY, 0.0, 1), (0.0, 10.0, 2), (10.0, f64::INFINITY, 1)], None, Some(-4.0), Some(30.0));
    assert_eq!(c, vec![1, 2, 1]);
    assert_eq!(v, vec![-2.0, 5.0, 20.0]);
    let (v, _) = place(&[(f64::NEG_INFINITY, 0.0, 1), (10.0, f64::INFINITY, 1)], None, None, None);
    assert_eq!(v, vec![0.0, 10.0]);
}

#[test]
fn units() {
    assert_eq!(cloudwatch_unit("ms"), ("Milliseconds", 1.0));
    assert_eq!(cloudwatch_unit("By"), ("Bytes", 1.0));
    assert_eq!(cloudwatch_unit("By/s"), ("Bytes/Second", 1.0));
    assert_eq!(cloudwatch_unit("1"), ("None", 1.0));
    assert_eq!(cloudwatch_unit("{request}"), ("Count", 1.0));
    assert_eq!(cloudwatch_unit("ns"), ("Microseconds", 1e-3));
    assert_eq!(cloudwatch_unit("furlong"), ("None", 1.0));
    for u in ["ms", "s", "us", "By", "KiBy", "MBy", "bit", "Mbit/s", "%", "1", "{x}/s", ""] {
        assert!(crate::cloudwatch::is_valid_unit(cloudwatch_unit(u).0), "{u}");
    }
}

#[test]
fn answers_in_the_requests_encoding() {
    let pb = success_body(2, "x: bad", Encoding::Protobuf);
    let r = ExportMetricsServiceResponse::decode(pb.as_slice()).unwrap();
    assert_eq!(r.partial_success.unwrap().rejected_data_points, 2);
    assert!(success_body(0, "", Encoding::Protobuf).is_empty(), "full success: an empty message");
    let json: serde_json::Value = serde_json::from_slice(&success_body(2, "x: bad", Encoding::Json)).unwrap();
    assert_eq!(json["partialSuccess"]["errorMessage"], "x: bad");
    assert_eq!(json["partialSuccess"]["rejectedDataPoints"].to_string().trim_matches('"'), "2");
    let st = Status::decode(error_body("no", Encoding::Protobuf).as_slice()).unwrap();
    assert_eq!((st.code, st.message.as_str()), (3, "no"));
    let json: serde_json::Value = serde_json::from_slice(&error_body("no", Encoding::Json)).unwrap();
    assert_eq!(json["message"], "no");
}

#[test]
fn the_stream_cap_rejects_new_cumulative_streams_only() {
    let mut mapper = Mapper::new();
    let points: Vec<NumberDataPoint> =
        (0..MAX_STREAMS + 5).map(|i| number(1.0, 1, NOW_NS, vec![kv("i", &i.to_string())])).collect();
    let req = request(vec![metric("c", "", sum(points, true, AggregationTemporality::Cumulative))]);
    let m = mapper.map(&req, &opts(), NOW_MS);
    assert_eq!(m.rejected, BTreeMap::from([("otlp_stream_cap", 5)]));
    assert_eq!(m.points.len(), MAX_STREAMS);
    let delta =
        request(vec![metric("d", "", sum(vec![number(1.0, 0, NOW_NS, vec![])], true, AggregationTemporality::Delta))]);
    assert_eq!(mapper.map(&delta, &opts(), NOW_MS).points.len(), 1);
}
