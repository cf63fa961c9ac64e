//! RPC v2 CBOR, the protocol of `aws-sdk-cloudwatch` ≥ 1.100.0: the embedded CloudWatch and the
//! CBOR-to-JSON proxy in front of moto answer malformed bodies with CloudWatch's error (not a crash),
//! GetMetricData works on both, and (ignored, `--ignored --nocapture`) the request-size and encode-time
//! figures of docs/design.md, CBOR against awsQuery for the same datums.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_cloudwatch::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy, StandardUnit, StatisticSet,
};
use aws_sdk_cloudwatch::Client;
use perfmon_protocol::cloudwatch as proto;
use perfmon_sandbox::cloudwatch::{CloudWatch, Protocol};

const NS: &str = "Perfmon/Cbor";
const PUT_PATH: &str = "/service/GraniteServiceVersion20100801/operation/PutMetricData";

fn client(url: &str) -> Client {
    common::cloudwatch_client(url)
}

fn minute_ago() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    (now / 60_000 - 10) * 60_000
}

/// One raw HTTP/1.1 POST; returns (status, headers lower-cased, body).
fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

const CBOR_HEADERS: &[(&str, &str)] = &[("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")];

/// Bodies that are not CBOR of a PutMetricData input, and what CloudWatch answers to each.
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("truncated map", vec![0xbf], "SerializationException"),
        ("non-text key", vec![0xa1, 0x01, 0x02], "SerializationException"),
        ("text", b"PutMetricData please".to_vec(), "SerializationException"),
        ("bignum tag", vec![0xc2, 0x41, 0x00], "SerializationException"),
        ("an array, not a map", vec![0x80], "SerializationException"),
        ("trailing bytes", vec![0xa0, 0x00], "SerializationException"),
        (
            "random",
            (0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
            "SerializationException",
        ),
    ]
}

fn assert_cloudwatch_error(what: &str, status: u16, head: &str, body: &[u8], code: &str) {
    assert_eq!(status, 400, "{what}: {head}");
    assert!(head.contains("content-type: application/cbor"), "{what}: {head}");
    assert!(head.contains("smithy-protocol: rpc-v2-cbor"), "{what}: {head}");
    assert!(head.contains(&format!("x-amzn-query-error: {};sender", code.to_lowercase())), "{what}: {head}");
    let v = proto::cbor::to_json(body).unwrap_or_else(|e| panic!("{what}: the error body is not CBOR: {e}"));
    let expected_type = if code == "MissingParameter" { "MissingRequiredParameterException" } else { code };
    assert!(v["__type"].as_str().is_some_and(|t| t.ends_with(expected_type)), "{what}: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cbor_gets_cloudwatch_errors_from_the_embedded_endpoint_and_the_proxy() {
    let cw = CloudWatch::start().await.unwrap();
    let moto = tokio::task::spawn_blocking(common::Moto::start).await.unwrap();
    let proxy_addr: SocketAddr = moto.endpoint_url().trim_start_matches("http://").parse().unwrap();
    let cw_addr = cw.addr();
    tokio::task::spawn_blocking(move || {
        for addr in [cw_addr, proxy_addr] {
            for (what, body, code) in malformed() {
                let (status, head, body) = post(addr, PUT_PATH, CBOR_HEADERS, &body);
                assert_cloudwatch_error(&format!("{addr} {what}"), status, &head, &body, code);
            }
        }
        // Well-formed CBOR without Namespace: the embedded endpoint says MissingParameter as CloudWatch
        // does; moto (through the proxy) accepts it, and its answer comes back as CBOR.
        let (status, head, body) = post(cw_addr, PUT_PATH, CBOR_HEADERS, &[0xa0]);
        assert_cloudwatch_error("no Namespace", status, &head, &body, "MissingParameter");
        let (status, head, body) = post(proxy_addr, PUT_PATH, CBOR_HEADERS, &[0xa0]);
        assert!(head.contains("smithy-protocol: rpc-v2-cbor"), "{status} {head}");
        assert!(proto::cbor::to_json(&body).unwrap().is_object());
    })
    .await
    .unwrap();
    let (translated, refused, _) = moto.proxy().unwrap().stats();
    assert_eq!(refused, malformed().len() as u64, "the proxy answered the malformed bodies itself");
    assert!(translated >= 1);

    // Both still serve the SDK.
    for url in [cw.endpoint_url(), moto.endpoint_url()] {
        client(&url)
            .put_metric_data()
            .namespace(NS)
            .metric_data(MetricDatum::builder().metric_name("after").value(1.0).build())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {}", aws_sdk_cloudwatch::error::DisplayErrorContext(e)));
    }
    let log = cw.requests();
    let cbor: Vec<_> = log.records.iter().filter(|r| r.protocol == Protocol::Cbor).collect();
    assert_eq!(cbor.iter().filter(|r| r.status == 400).count(), malformed().len() + 1);
    assert_eq!(cw.store().datums(NS, "after").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metric_data_on_the_embedded_endpoint_and_through_the_proxy() {
    let cw = CloudWatch::start().await.unwrap();
    let moto = tokio::task::spawn_blocking(common::Moto::start).await.unwrap();
    let t = minute_ago();
    let dims = [Dimension::builder().name("FunctionName").value("gmd").build()];
    let datums = vec![
        MetricDatum::builder()
            .metric_name("Latency")
            .set_dimensions(Some(dims.to_vec()))
            .timestamp(DateTime::from_millis(t + 5_000))
            .set_values(Some(vec![10.0, 20.0, 30.0, 1000.0]))
            .set_counts(Some(vec![50.0, 30.0, 19.0, 1.0]))
            .unit(StandardUnit::Milliseconds)
            .build(),
        MetricDatum::builder()
            .metric_name("Latency")
            .set_dimensions(Some(dims.to_vec()))
            .timestamp(DateTime::from_millis(t + 65_000))
            .statistic_values(StatisticSet::builder().sample_count(4.0).sum(10.0).minimum(1.0).maximum(4.0).build())
            .unit(StandardUnit::Milliseconds)
            .build(),
    ];
    let query = |id: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(NS)
                            .metric_name("Latency")
                            .set_dimensions(Some(dims.to_vec()))
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    for (url, stats) in [(cw.endpoint_url(), &["Sum", "SampleCount", "p99"][..]), (moto.endpoint_url(), &["Sum"][..])] {
        let c = client(&url);
        c.put_metric_data().namespace(NS).set_metric_data(Some(datums.clone())).send().await.unwrap();
        let mut req = c
            .get_metric_data()
            .start_time(DateTime::from_millis(t))
            .end_time(DateTime::from_millis(t + 180_000))
            .scan_by(ScanBy::TimestampAscending);
        for s in stats {
            req = req.metric_data_queries(query(&s.to_lowercase(), s));
        }
        let out =
            req.send().await.unwrap_or_else(|e| panic!("{url}: {}", aws_sdk_cloudwatch::error::DisplayErrorContext(e)));
        let results = out.metric_data_results();
        assert_eq!(results.len(), stats.len(), "{url}: {out:?}");
        let sum = &results[0];
        assert_eq!(sum.id(), Some("sum"));
        let ts: Vec<i64> = sum.timestamps().iter().map(|t| t.to_millis().unwrap()).collect();
        // moto answers each datum's own timestamp, the embedded endpoint the period start.
        assert_eq!(ts.len(), 2, "{url}: {sum:?}");
        assert!(ts[0] >= t && ts[0] < t + 60_000 && ts[1] >= t + 60_000, "{url}: {ts:?}");
        assert_eq!(sum.values(), &[2670.0, 10.0], "{url}");
        if results.len() == 3 {
            assert_eq!(results[1].values(), &[100.0, 4.0]);
            assert_eq!(results[2].values(), &[30.0], "p99 of the histogram; the statistic set has none");
        }
    }
    // An expression is refused with CloudWatch's error (GetMetricData models no typed one).
    let e = client(&cw.endpoint_url())
        .get_metric_data()
        .start_time(DateTime::from_millis(t))
        .end_time(DateTime::from_millis(t + 60_000))
        .metric_data_queries(MetricDataQuery::builder().id("e1").expression("SUM(METRICS())").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
    assert_eq!(e.code(), Some("InvalidParameterValue"), "{e:?}");
}

/// Times the SDK's serialization (before → after serialization) and keeps the body size.
#[derive(Debug, Default)]
struct SerializeTimer {
    start: Mutex<Option<Instant>>,
    samples: Mutex<Vec<(Duration, usize)>>,
}

#[derive(Debug, Clone, Default)]
struct Timer(Arc<SerializeTimer>);

impl Intercept for Timer {
    fn name(&self) -> &'static str {
        "SerializeTimer"
    }
    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_cloudwatch::error::BoxError> {
        *self.0.start.lock().unwrap() = Some(Instant::now());
        Ok(())
    }
    fn read_after_serialization(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_cloudwatch::error::BoxError> {
        let elapsed = self.0.start.lock().unwrap().take().map(|s| s.elapsed()).unwrap_or_default();
        let len = ctx.request().body().bytes().map_or(0, <[u8]>::len);
        self.0.samples.lock().unwrap().push((elapsed, len));
        Ok(())
    }
}

fn to_sdk(d: &proto::MetricDatum) -> MetricDatum {
    let mut b = MetricDatum::builder()
        .metric_name(&d.metric_name)
        .set_dimensions(Some(
            d.dimensions.iter().map(|x| Dimension::builder().name(&x.name).value(&x.value).build()).collect(),
        ))
        .timestamp(DateTime::from_millis(d.timestamp_ms.unwrap()))
        .unit(StandardUnit::from(d.unit.as_deref().unwrap()));
    if let Some(s) = &d.statistic_values {
        b = b.statistic_values(
            StatisticSet::builder()
                .sample_count(s.sample_count)
                .sum(s.sum)
                .minimum(s.minimum)
                .maximum(s.maximum)
                .build(),
        );
    }
    if !d.values.is_empty() {
        b = b.set_values(Some(d.values.clone())).set_counts(Some(d.counts.clone()));
    }
    b.build()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gzip_len(b: &[u8]) -> usize {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap().len()
}

/// The figures of docs/design.md: request bytes per 1 000 datums and encode time, RPC v2 CBOR (what the SDK
/// serializes, timed with an interceptor) against awsQuery (`perfmon_protocol::cloudwatch::encode_query`,
/// byte-identical to what aws-sdk-cloudwatch 1.99.0 sent), for the same datums.
/// `cargo test --release -p perfmon-tests --test suite cloudwatch_cbor:: -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints the README's figures"]
async fn measure_cbor_against_query() {
    let cw = CloudWatch::start().await.unwrap();
    let timer = Timer::default();
    let c = Client::from_conf(common::cloudwatch_config(&cw.endpoint_url()).interceptor(timer.clone()).build());
    let t = minute_ago();
    let dims = |i: usize| {
        vec![
            proto::Dimension::new("FunctionName", "chat-api-prod"),
            proto::Dimension::new("Operation", format!("op{}", i % 20)),
        ]
    };
    let sets: Vec<(&str, Vec<proto::MetricDatum>)> = vec![
        (
            "counters (StatisticValues)",
            (0..1000)
                .map(|i| proto::MetricDatum {
                    metric_name: "Invocations".into(),
                    dimensions: dims(i),
                    timestamp_ms: Some(t + 5_000 + i as i64),
                    statistic_values: Some(proto::StatisticSet {
                        sample_count: 7.0,
                        sum: 7.0,
                        minimum: 1.0,
                        maximum: 1.0,
                    }),
                    unit: Some("Count".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        (
            "histograms, 20 values each",
            (0..1000)
                .map(|i| proto::MetricDatum {
                    metric_name: "Duration".into(),
                    dimensions: dims(i),
                    timestamp_ms: Some(t + 5_000 + i as i64),
                    values: (0..20).map(|j| 1.0 + (i * 20 + j) as f64 * 0.731_9).collect(),
                    counts: (0..20).map(|j| (1 + (i + j) % 9) as f64).collect(),
                    unit: Some("Milliseconds".into()),
                    ..Default::default()
                })
                .collect(),
        ),
    ];
    for (what, datums) in sets {
        let model = proto::PutMetricData { namespace: "Perfmon".into(), metric_data: datums.clone() };
        let sdk: Vec<_> = datums.iter().map(to_sdk).collect();
        let mut query_times = vec![];
        let mut query = String::new();
        for _ in 0..21 {
            let start = Instant::now();
            query = proto::encode_query(&model);
            query_times.push(start.elapsed());
        }
        timer.0.samples.lock().unwrap().clear();
        for _ in 0..21 {
            c.put_metric_data().namespace("Perfmon").set_metric_data(Some(sdk.clone())).send().await.unwrap();
        }
        let samples = timer.0.samples.lock().unwrap().clone();
        let cbor_len = samples[0].1;
        let rec = cw.requests().records.last().cloned().unwrap();
        assert_eq!(rec.decoded_bytes, cbor_len);
        println!(
            "{what}: awsQuery {} B (gzip {} B), encode median {:?} | RPC v2 CBOR {} B (gzip on the wire {} B), \
             SDK serialize median {:?}",
            query.len(),
            gzip_len(query.as_bytes()),
            median(query_times),
            cbor_len,
            rec.bytes,
            median(samples.iter().map(|s| s.0).collect()),
        );
    }
}
