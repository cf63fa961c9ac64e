//! The embedded CloudWatch (`perfmon_sandbox::cloudwatch`) against real clients: `aws-sdk-cloudwatch`
//! (RPC v2 CBOR, the SDK perfmon uses), boto3 (AWS JSON), moto_server behind the CBOR proxy (parity of
//! counts and sums), and raw garbage over TCP (awsQuery forms, JSON, CBOR).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Datapoint, Dimension, DimensionFilter, MetricDatum, StandardUnit, Statistic, StatisticSet,
};
use aws_sdk_cloudwatch::Client;
use perfmon_protocol::cloudwatch as proto;
use perfmon_sandbox::cloudwatch::{CloudWatch, Fault, Protocol};

const NS: &str = "Perfmon/Test";

fn client(url: &str) -> Client {
    let conf = common::cloudwatch_config(url)
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(2)));
    Client::from_conf(conf.build())
}

use perfmon_protocol::contract::now_ms;

/// A minute boundary ten minutes ago: datums go at +5 s, so one 60 s period holds them all.
fn minute_ago() -> i64 {
    (now_ms() / 60_000 - 10) * 60_000
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn hist(name: &str, dims: &[Dimension], t: i64, values: &[f64], counts: &[f64]) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(dims.to_vec()))
        .timestamp(DateTime::from_millis(t))
        .set_values(Some(values.to_vec()))
        .set_counts(Some(counts.to_vec()))
        .unit(StandardUnit::Milliseconds)
        .storage_resolution(1)
        .build()
}

fn expand(values: &[f64], counts: &[f64]) -> Vec<f64> {
    values.iter().zip(counts).flat_map(|(v, c)| std::iter::repeat_n(*v, *c as usize)).collect()
}

async fn stats(c: &Client, ns: &str, metric: &str, dims: &[Dimension], t: i64, ext: &[&str]) -> Vec<Datapoint> {
    let mut req = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .set_dimensions(Some(dims.to_vec()))
        .start_time(DateTime::from_millis(t - 60_000))
        .end_time(DateTime::from_millis(t + 120_000))
        .period(60);
    if ext.is_empty() {
        for s in [Statistic::SampleCount, Statistic::Sum, Statistic::Minimum, Statistic::Maximum, Statistic::Average] {
            req = req.statistics(s);
        }
    } else {
        for e in ext {
            req = req.extended_statistics(*e);
        }
    }
    req.send().await.unwrap().datapoints().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_put_metric_data_and_read_back() {
    let cw = CloudWatch::start().await.unwrap();
    let c = client(&cw.endpoint_url());
    let t = minute_ago();
    let dims = [dim("FunctionName", "fn-a"), dim("Cold", "true")];
    let reversed = [dims[1].clone(), dims[0].clone()];
    let (v1, c1) = ([10.0, 20.0, 30.0, 1000.0], [50.0, 30.0, 19.0, 1.0]);
    let (v2, c2) = ([5.0, 25.5, 30.0, 0.125], [3.0, 7.0, 2.0, 4.0]);

    c.put_metric_data()
        .namespace(NS)
        .metric_data(hist("Latency", &dims, t + 5_000, &v1, &c1))
        .metric_data(
            MetricDatum::builder()
                .metric_name("Stats")
                .timestamp(DateTime::from_millis(t + 5_000))
                .statistic_values(
                    StatisticSet::builder().sample_count(100.0).sum(2670.0).minimum(10.0).maximum(1000.0).build(),
                )
                .unit(StandardUnit::Milliseconds)
                .build(),
        )
        .metric_data(MetricDatum::builder().metric_name("Single").value(7.0).unit(StandardUnit::Count).build())
        .send()
        .await
        .unwrap();
    c.put_metric_data()
        .namespace(NS)
        .metric_data(hist("Latency", &reversed, t + 6_000, &v2, &c2))
        .metric_data(
            MetricDatum::builder()
                .metric_name("Latency")
                .set_dimensions(Some(dims.to_vec()))
                .timestamp(DateTime::from_millis(t + 7_000))
                .value(12.0)
                .unit(StandardUnit::Milliseconds)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let mut samples = expand(&v1, &c1);
    samples.extend(expand(&v2, &c2));
    samples.push(12.0);
    let sum: f64 = samples.iter().sum();

    // Standard statistics, dimensions in either order.
    let dps = stats(&c, NS, "Latency", &reversed, t, &[]).await;
    assert_eq!(dps.len(), 1, "{dps:?}");
    let p = &dps[0];
    assert_eq!(p.sample_count(), Some(samples.len() as f64));
    assert_eq!(p.sum(), Some(sum));
    assert_eq!(p.minimum(), Some(0.125));
    assert_eq!(p.maximum(), Some(1000.0));
    assert_eq!(p.average(), Some(sum / samples.len() as f64));
    assert_eq!(p.unit(), Some(&StandardUnit::Milliseconds));
    assert_eq!(p.timestamp().unwrap().to_millis().unwrap(), t);

    // Percentiles against a brute-force nearest-rank computation.
    let names = ["p0.1", "p10", "p50", "p90", "p99", "p99.9", "p100"];
    let dps = stats(&c, NS, "Latency", &dims, t, &names).await;
    assert_eq!(dps.len(), 1);
    let ext = dps[0].extended_statistics().unwrap();
    for name in names {
        let pct: f64 = name[1..].parse().unwrap();
        assert_eq!(ext.get(name), Some(&common::percentile_exact(&samples, pct)), "{name}");
    }
    assert_eq!(dps[0].sum(), None, "only the requested statistics");

    // A genuine statistic set: sums yes, percentiles no (as CloudWatch).
    let dps = stats(&c, NS, "Stats", &[], t, &[]).await;
    assert_eq!(
        (dps[0].sample_count(), dps[0].sum(), dps[0].minimum(), dps[0].maximum()),
        (Some(100.0), Some(2670.0), Some(10.0), Some(1000.0))
    );
    let dps = stats(&c, NS, "Stats", &[], t, &["p50"]).await;
    assert!(dps[0].extended_statistics().is_none_or(|m| m.is_empty()), "{dps:?}");

    // A datum without Timestamp is stored at its arrival time.
    let single = cw.store().datums(NS, "Single");
    assert_eq!(single.len(), 1);
    assert!((single[0].timestamp_ms() - now_ms()).abs() < 60_000);

    // ListMetrics: all, by dimension filter, by name.
    let all = c.list_metrics().namespace(NS).send().await.unwrap();
    let mut names: Vec<&str> = all.metrics().iter().filter_map(|m| m.metric_name()).collect();
    names.sort();
    assert_eq!(names, ["Latency", "Single", "Stats"]);
    let by_dim = c
        .list_metrics()
        .dimensions(DimensionFilter::builder().name("FunctionName").value("fn-a").build())
        .send()
        .await
        .unwrap();
    assert_eq!(by_dim.metrics().len(), 1);
    assert_eq!(by_dim.metrics()[0].dimensions().len(), 2);
    let other_ns = c.list_metrics().namespace("Nope").send().await.unwrap();
    assert!(other_ns.metrics().is_empty());

    // The typed store API agrees with the wire.
    let proto_dims: Vec<proto::Dimension> =
        dims.iter().map(|d| proto::Dimension::new(d.name().unwrap(), d.value().unwrap())).collect();
    let s = cw.store().statistics(NS, "Latency", &proto_dims).unwrap();
    assert_eq!((s.sample_count, s.sum), (samples.len() as f64, sum));
    assert_eq!(s.percentile(99.0), Some(common::percentile_exact(&samples, 99.0)));
    assert!(cw.store().statistics_in(NS, "Latency", &proto_dims, t + 6_500, t + 60_000).is_some_and(|s| s.sum == 12.0));
    assert_eq!(cw.store().datums(NS, "Latency").len(), 3);
    assert_eq!(cw.store().list_metrics(Some(NS)).len(), 3);
    let log = cw.requests();
    assert!(log.rejected().is_empty(), "{:?}", log.rejected());
    assert_eq!(log.put_metric_data().len(), 2);
    assert!(log.records.iter().all(|r| r.protocol == Protocol::Cbor));
    assert!(log.bytes() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_body_decodes_to_the_model_and_encode_query_bounds_its_size() {
    let cw = CloudWatch::start().await.unwrap();
    let c = client(&cw.endpoint_url());
    let t = minute_ago();
    // 1 000 datums of 40 values: far above the SDK's 10 KiB gzip threshold.
    let mut req = c.put_metric_data().namespace(NS);
    let mut model = proto::PutMetricData { namespace: NS.into(), metric_data: vec![] };
    for i in 0..1000 {
        let values: Vec<f64> = (0..40).map(|j| f64::from(i * 40 + j) / 4.0).collect();
        let counts: Vec<f64> = (0..40).map(|j| f64::from(1 + (i + j) % 5)).collect();
        let dims = [dim("Shard", &format!("s{}", i % 7))];
        req = req.metric_data(hist("Big", &dims, t + 5_000 + i64::from(i), &values, &counts));
        model.metric_data.push(proto::MetricDatum {
            metric_name: "Big".into(),
            dimensions: vec![proto::Dimension::new("Shard", format!("s{}", i % 7))],
            timestamp_ms: Some(t + 5_000 + i64::from(i)),
            values,
            counts,
            unit: Some("Milliseconds".into()),
            storage_resolution: Some(1),
            ..Default::default()
        });
    }
    req.send().await.unwrap();

    let log = cw.requests();
    let rec = &log.put_metric_data()[0];
    assert!(rec.gzip, "the SDK compresses bodies >= 10 KiB");
    assert!(rec.decoded_bytes > 4 * rec.bytes, "{} vs {}", rec.decoded_bytes, rec.bytes);
    // The extension sizes its batches with encode_query: an upper bound of the CBOR the SDK sends.
    let query = proto::encode_query(&model).len();
    assert!(query > rec.decoded_bytes, "awsQuery {query} vs CBOR {}", rec.decoded_bytes);
    let stored: Vec<proto::MetricDatum> = cw.store().datums(NS, "Big").into_iter().map(|d| d.datum).collect();
    assert_eq!(stored, model.metric_data, "decode(SDK body) == the model the SDK was given");
    proto::validate(&model, now_ms()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_validation_failures_are_typed_errors() {
    let cw = CloudWatch::start().await.unwrap();
    let c = client(&cw.endpoint_url());
    let put =
        |datums: Vec<MetricDatum>, ns: &str| c.put_metric_data().namespace(ns).set_metric_data(Some(datums)).send();
    let one = |v: f64| MetricDatum::builder().metric_name("m").value(v).build();

    let e = put(vec![one(f64::NAN)], NS).await.unwrap_err().into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    assert_eq!(e.meta().message(), Some("The value NaN for parameter MetricData.member.1.Value is invalid."));

    let both = MetricDatum::builder().metric_name("m").value(1.0).values(1.0).build();
    let e = put(vec![both], NS).await.unwrap_err().into_service_error();
    assert!(e.is_invalid_parameter_combination_exception(), "{e:?}");

    let e = put(vec![one(1.0); 1001], NS).await.unwrap_err().into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    assert_eq!(e.meta().message(), Some("The collection MetricData must not have a size greater than 1000."));

    let old = MetricDatum::builder()
        .metric_name("m")
        .value(1.0)
        .timestamp(DateTime::from_millis(now_ms() - 15 * 86_400_000))
        .build();
    let e = put(vec![old], NS).await.unwrap_err().into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");

    let many_values = MetricDatum::builder().metric_name("m").set_values(Some(vec![1.0; 151])).build();
    let e = put(vec![many_values], NS).await.unwrap_err().into_service_error();
    assert_eq!(
        e.meta().message(),
        Some("The collection MetricData.member.1.Values must not have a size greater than 150.")
    );

    let bad_counts = MetricDatum::builder().metric_name("m").values(1.0).values(2.0).counts(1.0).build();
    assert!(put(vec![bad_counts], NS).await.unwrap_err().into_service_error().is_invalid_parameter_value_exception());

    let bad_unit = MetricDatum::builder().metric_name("m").value(1.0).unit(StandardUnit::from("Furlongs")).build();
    assert!(put(vec![bad_unit], NS).await.unwrap_err().into_service_error().is_invalid_parameter_value_exception());

    let bad_res = MetricDatum::builder().metric_name("m").value(1.0).storage_resolution(5).build();
    assert!(put(vec![bad_res], NS).await.unwrap_err().into_service_error().is_invalid_parameter_value_exception());

    let e = put(vec![one(1.0)], "AWS/Lambda").await.unwrap_err().into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");

    let e = put(vec![MetricDatum::builder().metric_name("m").build()], NS).await.unwrap_err().into_service_error();
    assert!(e.is_missing_required_parameter_exception(), "{e:?}");

    let t = minute_ago();
    let e = c
        .get_metric_statistics()
        .namespace(NS)
        .metric_name("m")
        .start_time(DateTime::from_millis(t))
        .end_time(DateTime::from_millis(t + 60_000))
        .period(60)
        .statistics(Statistic::Sum)
        .extended_statistics("p99")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_combination_exception(), "{e:?}");

    assert!(cw.store().all_datums().is_empty(), "nothing from a rejected request is stored");
    let log = cw.requests();
    let codes: Vec<&str> = log.rejected().iter().map(|r| r.error.as_ref().unwrap().code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "InvalidParameterValue",
            "InvalidParameterCombination",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "InvalidParameterValue",
            "MissingParameter",
            "InvalidParameterCombination"
        ]
    );
    assert!(log.rejected().iter().all(|r| r.status == 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_drive_sdk_retries() {
    let cw = CloudWatch::start().await.unwrap();
    let c = client(&cw.endpoint_url());
    let put = || {
        c.put_metric_data().namespace(NS).metric_data(MetricDatum::builder().metric_name("m").value(1.0).build()).send()
    };

    cw.set_fault(Fault::Throttle { n: 2 });
    put().await.unwrap();
    let log = cw.requests();
    let statuses: Vec<(u16, Option<&str>)> =
        log.put_metric_data().iter().map(|r| (r.status, r.error.as_ref().map(|e| e.code.as_str()))).collect();
    assert_eq!(statuses, [(400, Some("Throttling")), (400, Some("Throttling")), (200, None)]);
    assert_eq!(cw.store().datums(NS, "m").len(), 1);
    assert_eq!(cw.fault(), Fault::Throttle { n: 0 });

    cw.set_fault(Fault::ServerError { n: 5 });
    let e = put().await.unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(cw.fault(), Fault::ServerError { n: 2 }, "3 attempts");

    cw.set_fault(Fault::Refuse);
    let before = cw.requests().count();
    let e = put().await.unwrap_err();
    assert!(e.raw_response().is_none(), "no HTTP answer: {e:?}");
    assert_eq!(cw.requests().count(), before);

    cw.set_fault(Fault::None);
    put().await.unwrap();
    assert_eq!(cw.store().datums(NS, "m").len(), 2);
}

/// Sends one raw HTTP/1.1 request; returns (status, headers+body text). `None` if the server closed
/// the connection without a status line.
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

const FORM: &str = "POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
const JSON: &str = "POST / HTTP/1.1\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: GraniteServiceVersion20100801.PutMetricData";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_clear_400s_and_the_server_keeps_serving() {
    let cw = CloudWatch::start().await.unwrap();
    let addr = cw.addr();
    let t = minute_ago();
    let checks = tokio::task::spawn_blocking(move || {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Random bytes, as a form and as JSON.
        for i in 0..40 {
            let len = (next() % 3000) as usize;
            let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let (status, text) = raw(addr, if i % 2 == 0 { FORM } else { JSON }, &body).unwrap();
            assert_eq!(status, 400, "{text}");
            if i % 2 == 0 {
                assert!(text.contains("<ErrorResponse") && text.contains("<Code>"), "{text}");
            } else {
                assert!(text.contains("\"__type\"") && text.contains("x-amzn-query-error"), "{text}");
            }
        }
        // Truncations of a valid form: each is either still a valid (shorter) request or a clear 400.
        let model = proto::PutMetricData {
            namespace: NS.into(),
            metric_data: (0..3)
                .map(|i| proto::MetricDatum {
                    metric_name: format!("T{i}"),
                    dimensions: vec![proto::Dimension::new("D", "v")],
                    timestamp_ms: Some(t + 5_000),
                    values: vec![1.5, 2.5],
                    counts: vec![3.0, 4.0],
                    unit: Some("Count".into()),
                    ..Default::default()
                })
                .collect(),
        };
        let full = proto::encode_query(&model);
        let (mut ok, mut bad) = (0, 0);
        for cut in (0..full.len()).step_by(3) {
            let (status, text) = raw(addr, FORM, &full.as_bytes()[..cut]).unwrap();
            match status {
                200 => ok += 1,
                400 => {
                    assert!(text.contains("<Code>"), "{text}");
                    bad += 1;
                }
                other => panic!("cut {cut}: status {other}: {text}"),
            }
        }
        assert!(bad > ok && ok > 0, "{ok} ok, {bad} rejected");
        // Specific shapes.
        let (status, text) = raw(addr, FORM, b"").unwrap();
        assert_eq!(status, 400);
        assert!(text.contains("<Code>MissingParameter</Code>") && text.contains("The parameter Action is required."), "{text}");
        let (status, text) = raw(addr, FORM, b"Action=PutMetricData&Version=2010-08-01&Namespace=N&Bogus=1").unwrap();
        assert_eq!(status, 400);
        assert!(text.contains("Bogus"), "{text}");
        let (status, text) = raw(addr, &format!("{FORM}\r\nContent-Encoding: gzip"), full.as_bytes()).unwrap();
        assert_eq!(status, 400);
        assert!(text.contains("not valid gzip"), "{text}");
        let (status, text) = raw(addr, JSON, b"{\"Namespace\": 5}").unwrap();
        assert_eq!(status, 400);
        assert!(text.contains("SerializationException"), "{text}");
        let (status, text) = raw(addr, "POST / HTTP/1.1\r\nX-Amz-Target: GraniteServiceVersion20100801.DeleteEverything", b"{}").unwrap();
        assert_eq!(status, 400);
        assert!(text.contains("x-amzn-query-error: InvalidAction;Sender"), "{text}");
        let cbor = "POST /service/GraniteServiceVersion20100801/operation/PutMetricData HTTP/1.1\r\nContent-Type: application/cbor";
        let (status, text) = raw(addr, cbor, &[0xbf, 0xff]).unwrap();
        assert_eq!(status, 400, "an empty map: no Namespace");
        assert!(text.contains("x-amzn-query-error: MissingParameter;Sender"), "{text}");
        assert!(text.contains("smithy-protocol: rpc-v2-cbor"), "{text}");
        for body in [&[0xbf][..], b"\xa1\x01\x02", b"not cbor at all", b"\xc2\x41\x00"] {
            let (status, text) = raw(addr, cbor, body).unwrap();
            assert_eq!(status, 400, "{text}");
            assert!(text.contains("x-amzn-query-error: SerializationException;Sender"), "{text}");
            assert!(text.contains("__type") && text.contains("application/cbor"), "{text}");
        }
        let (status, _) = raw(addr, "POST /elsewhere HTTP/1.1", b"").unwrap();
        assert_eq!(status, 404);
        let (status, text) = raw(addr, FORM, &vec![b'a'; proto::MAX_REQUEST_BYTES + 10]).unwrap_or((413, String::new()));
        assert_eq!(status, 413, "{text}");
        // Not HTTP at all.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"\x00\x01\x02 hello\r\n\r\n");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        ok
    })
    .await
    .unwrap();

    // Still serving: a real client works, and only the valid truncations were stored.
    let c = client(&cw.endpoint_url());
    c.put_metric_data()
        .namespace(NS)
        .metric_data(MetricDatum::builder().metric_name("after").value(1.0).build())
        .send()
        .await
        .unwrap();
    assert_eq!(cw.store().datums(NS, "after").len(), 1);
    let log = cw.requests();
    assert_eq!(log.records.iter().filter(|r| r.status == 200).count(), checks + 1);
    assert!(log.records.iter().any(|r| r.protocol == Protocol::Cbor && r.status == 400));
}

const BOTO3: &str = r#"
import boto3, datetime, json, sys
from botocore.exceptions import ClientError
url, ns, t = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
ts = datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc)
dims = [{"Name": "FunctionName", "Value": "fn-a"}]
c.put_metric_data(Namespace=ns, MetricData=[{"MetricName": "Py", "Dimensions": dims,
    "Timestamp": ts + datetime.timedelta(seconds=5), "Values": [1.5, 2.5, 100.0], "Counts": [10, 5, 1],
    "Unit": "Milliseconds"}])
q = dict(Namespace=ns, MetricName="Latency", Dimensions=dims, StartTime=ts - datetime.timedelta(minutes=1),
         EndTime=ts + datetime.timedelta(minutes=2), Period=60)
out = {}
out["stats"] = c.get_metric_statistics(Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"], **q)["Datapoints"]
out["ext"] = c.get_metric_statistics(ExtendedStatistics=["p50", "p99"], **q)["Datapoints"]
out["list"] = sorted(m["MetricName"] for m in c.list_metrics(Namespace=ns)["Metrics"])
try:
    c.put_metric_data(Namespace=ns, MetricData=[{"MetricName": "Bad", "Value": 1.0, "Values": [1.0]}])
    out["error"] = None
except ClientError as e:
    out["error"] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
print(json.dumps(out, default=str))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_back_over_aws_json() {
    let cw = CloudWatch::start().await.unwrap();
    let c = client(&cw.endpoint_url());
    let t = minute_ago();
    let dims = [dim("FunctionName", "fn-a")];
    let (v, n) = ([3.0, 4.0, 900.0], [60.0, 39.0, 1.0]);
    c.put_metric_data().namespace(NS).metric_data(hist("Latency", &dims, t + 5_000, &v, &n)).send().await.unwrap();

    let url = cw.endpoint_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::python())
            .args(["-c", BOTO3, &url, NS, &t.to_string()])
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "boto3 script failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let samples = expand(&[3.0, 4.0, 900.0], &[60.0, 39.0, 1.0]);
    let dp = &v["stats"][0];
    assert_eq!(dp["SampleCount"], 100.0);
    assert_eq!(dp["Sum"], samples.iter().sum::<f64>());
    assert_eq!((dp["Minimum"].as_f64(), dp["Maximum"].as_f64()), (Some(3.0), Some(900.0)));
    assert_eq!(dp["Unit"], "Milliseconds");
    let ext = &v["ext"][0]["ExtendedStatistics"];
    assert_eq!(ext["p50"].as_f64(), Some(common::percentile_exact(&samples, 50.0)));
    assert_eq!(ext["p99"].as_f64(), Some(common::percentile_exact(&samples, 99.0)));
    assert_eq!(v["list"], serde_json::json!(["Latency", "Py"]));
    assert_eq!(v["error"][0], "InvalidParameterCombination", "{v}");

    // What boto3 sent arrived intact, over AWS JSON, with its timestamp.
    let py = cw.store().datums(NS, "Py");
    assert_eq!(py.len(), 1);
    assert_eq!((py[0].datum.values.clone(), py[0].datum.counts.clone()), (vec![1.5, 2.5, 100.0], vec![10.0, 5.0, 1.0]));
    assert_eq!(py[0].datum.timestamp_ms, Some(t + 5_000));
    let json_ops: Vec<String> = cw
        .requests()
        .records
        .iter()
        .filter(|r| r.protocol == Protocol::Json)
        .filter_map(|r| r.operation.clone())
        .collect();
    assert_eq!(
        json_ops,
        ["PutMetricData", "GetMetricStatistics", "GetMetricStatistics", "ListMetrics", "PutMetricData"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_requests_give_the_same_statistics_as_moto() {
    let moto = tokio::task::spawn_blocking(common::Moto::start).await.unwrap();
    let cw = CloudWatch::start().await.unwrap();
    let (ours, theirs) = (client(&cw.endpoint_url()), client(&moto.endpoint_url()));
    let t = minute_ago();
    let dims = [dim("FunctionName", "parity")];
    let datums = vec![
        hist("Hist", &dims, t + 5_000, &[10.0, 20.0, 30.0, 1000.0], &[50.0, 30.0, 19.0, 1.0]),
        hist("Hist", &dims, t + 6_000, &[0.5, 7.25], &[2.0, 3.0]),
        MetricDatum::builder()
            .metric_name("Set")
            .timestamp(DateTime::from_millis(t + 5_000))
            .statistic_values(
                StatisticSet::builder().sample_count(100.0).sum(2670.0).minimum(10.0).maximum(1000.0).build(),
            )
            .build(),
        MetricDatum::builder().metric_name("One").timestamp(DateTime::from_millis(t + 5_000)).value(42.5).build(),
    ];
    for c in [&ours, &theirs] {
        c.put_metric_data().namespace(NS).set_metric_data(Some(datums.clone())).send().await.unwrap();
    }
    for (metric, d) in [("Hist", &dims[..]), ("Set", &[][..]), ("One", &[][..])] {
        let mut results = vec![];
        for c in [&ours, &theirs] {
            // moto answers one datapoint per datum timestamp; fold them into one.
            let dps = stats(c, NS, metric, d, t, &[]).await;
            assert!(!dps.is_empty(), "{metric}: no datapoints");
            let fold = |f: fn(&Datapoint) -> Option<f64>, op: fn(f64, f64) -> f64| dps.iter().filter_map(f).reduce(op);
            results.push((
                fold(Datapoint::sample_count, |a, b| a + b),
                fold(Datapoint::sum, |a, b| a + b),
                fold(Datapoint::minimum, f64::min),
                fold(Datapoint::maximum, f64::max),
            ));
        }
        assert_eq!(results[0], results[1], "{metric}: ours vs moto");
        assert!(results[0].0.is_some());
    }
    drop(moto);
}
