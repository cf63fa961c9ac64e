//! Per-trigger metrics (docs/reference.md §14) end to end: the three real runtime clients (Rust
//! `lambda_runtime`, Python `awslambdaric`, Node.js `aws-lambda-ric`) run the sample functions
//! through `/opt/perfmon-wrapper`, the sandbox hands them trigger events shaped as AWS documents
//! them, and what perfmon read from the events and answers is read back from the embedded
//! CloudWatch (GetMetricStatistics with percentiles) and from moto (sums and counts).
//! * HTTP API 2.0, REST and WebSocket over 3 routes with 200, 404 and 500 answers and one thrown
//!   error: per-route `Invocations`, `Http4xx`, `Http5xx` exact, `Duration` count exact and its
//!   p50/p99 within 1 % of the platform reports' `durationMs`; ALB over 1 000 distinct paths with
//!   numeric ids: a handful of routes, totals exact.
//! * SQS batches of 1–10 records sent seconds before: `BatchSize` exact, `RecordAge` within 50 ms
//!   of the known age, `BatchItemFailures` exact for valid, empty, null, malformed and thrown
//!   answers; a Kinesis and a DynamoDB Streams batch likewise.
//! * `Errors` per `ErrorType` exact for an unhandled error in each runtime.
//! * `DeliveryDelay` of an SNS notification and an EventBridge event within 50 ms of the known delay.
//! * Without the wrapper, or with `PERFMON_TRIGGER_METRICS=false`, none of these series appear and
//!   the platform metrics are the same.
//! * Bad input (an event that is not JSON, JSON of no known source, a 6 MB event, a 6 MB answer, an
//!   answer that is not JSON, a client that leaves mid-body) is answered as without perfmon, and
//!   `/v1/health` `triggers` counts what was not understood; the 6 MB event and answer are read
//!   whole (their batch and status fields reach CloudWatch), none is given up.
//! * A streamed answer (Node.js `streamifyResponse` with an HTTP prelude): only the prelude is read.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;
use perfmon_tests::custom_support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::Dimension;
use common::{free_port, percentile_exact, workspace_root, RuntimeSpec};
use custom_support::{client, dims, embedded_env, health, now_ms, percentiles, start, totals, Run};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::cloudwatch::CloudWatch;
use perfmon_sandbox::InvokeOutcome;
use serde_json::{json, Value};

fn wrapper() -> String {
    workspace_root().join("layer-build/perfmon-wrapper").display().to_string()
}

/// perfmon (flush `end`, sink `cloudwatch` to `cw_env`) with the function; through the wrapper
/// when `wrapped`; `extra` added to the environment.
async fn start_with(
    name: &str,
    spec: &RuntimeSpec,
    ns: &str,
    cw_env: Vec<(String, String)>,
    wrapped: bool,
    extra: &[(&str, &str)],
) -> Run {
    start_on(name, spec, ns, cw_env, wrapped, extra, free_port()).await
}

/// [`start_with`] with the proxy on `proxy_port`.
async fn start_on(
    name: &str,
    spec: &RuntimeSpec,
    ns: &str,
    cw_env: Vec<(String, String)>,
    wrapped: bool,
    extra: &[(&str, &str)],
    proxy_port: u16,
) -> Run {
    let mut env = cw_env;
    env.push(("PERFMON_RUNTIME_PROXY_PORT".into(), proxy_port.to_string()));
    if wrapped {
        env.push(("AWS_LAMBDA_EXEC_WRAPPER".into(), wrapper()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    start(name, spec, ns, &env, |c| c).await
}

/// Waits, if needed, until at least `room_s` seconds are left in the current minute, so that the
/// samples of the next `room_s` seconds fall in one CloudWatch minute (one datapoint holds them).
async fn room_in_minute(room_s: i64) {
    let into = (now_ms() / 1000) % 60;
    if into > 60 - room_s {
        tokio::time::sleep(Duration::from_secs((61 - into) as u64)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Events, shaped as the samples in protocol/tests/events/ (AWS's documented examples).

fn http_v2(route: &str, path: &str, headers: Value) -> Value {
    let (method, _) = route.split_once(' ').unwrap_or(("GET", ""));
    json!({
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "agent"},
            "requestId": "id", "routeKey": route, "stage": "$default", "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": now_ms()},
        "body": "", "isBase64Encoded": false
    })
}

fn rest(method: &str, resource: &str, path: &str, headers: Value) -> Value {
    json!({
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {}, "queryStringParameters": null, "pathParameters": null, "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "r1", "stage": "prod", "requestId": "id",
            "resourcePath": resource, "httpMethod": method, "apiId": "api", "path": format!("/prod{path}"),
            "requestTimeEpoch": now_ms(), "identity": {"sourceIp": "192.0.2.1"}},
        "body": null, "isBase64Encoded": false
    })
}

fn websocket(route: &str, event_type: &str, headers: Value) -> Value {
    json!({
        "headers": headers,
        "requestContext": {"routeKey": route, "eventType": event_type, "messageDirection": "IN",
            "connectionId": "L0SM9cOFvHcCIhw=", "connectedAt": now_ms(), "requestTimeEpoch": now_ms(),
            "stage": "prod", "apiId": "ws", "domainName": "ws.execute-api.us-east-1.amazonaws.com", "requestId": "id"},
        "body": "{}", "isBase64Encoded": false
    })
}

fn alb(method: &str, path: &str) -> Value {
    json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/lambda-tg/50dc6c495c0c9188"}},
        "httpMethod": method, "path": path, "queryStringParameters": {},
        "headers": {"host": "lambda-alb-123578498.us-east-1.elb.amazonaws.com", "user-agent": "curl/7.79.1"},
        "body": "", "isBase64Encoded": false
    })
}

/// An SQS batch whose records were sent `ages_ms` before `now`; record `i` carries `commands[i]`.
fn sqs(queue: &str, now: i64, ages_ms: &[i64], commands: &[&str]) -> Value {
    let records: Vec<Value> = ages_ms
        .iter()
        .zip(commands)
        .enumerate()
        .map(|(i, (age, cmd))| {
            json!({
                "messageId": format!("msg-{i}"), "receiptHandle": "AQEB", "body": cmd,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": (now - age).to_string(),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": (now - age + 2).to_string()},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"), "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn kinesis(stream: &str, now: i64, ages_ms: &[i64], commands: &[&str]) -> Value {
    let records: Vec<Value> = ages_ms.iter().zip(commands).enumerate().map(|(i, (age, cmd))| json!({
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": cmd, "sequenceNumber": format!("4959033{i}"),
            "data": "SGVsbG8=", "approximateArrivalTimestamp": (now - age) as f64 / 1000.0},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:4959033{i}"),
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/r", "awsRegion": "us-east-1",
        "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}")
    })).collect();
    json!({ "Records": records })
}

/// DynamoDB's `ApproximateCreationDateTime` is whole seconds: `ages_s` are seconds before `now`
/// rounded down to a second.
fn dynamodb(table: &str, now_s: i64, ages_s: &[i64], commands: &[&str]) -> Value {
    let records: Vec<Value> = ages_s.iter().zip(commands).enumerate().map(|(i, (age, cmd))| json!({
        "eventID": format!("c4ca4238a0b923820dcc509a6f75849{i}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"Id": {"N": "101"}}, "NewImage": {"cmd": {"S": cmd}, "Id": {"N": "101"}},
            "ApproximateCreationDateTime": now_s - age, "SequenceNumber": format!("11100000000000000000000{i}"),
            "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2016-12-01T00:00:00.000")
    })).collect();
    json!({ "Records": records })
}

// ---------------------------------------------------------------------------------------------

/// What one route should show.
#[derive(Default, Debug)]
struct RouteExpect {
    invokes: usize,
    c4xx: usize,
    c5xx: usize,
    durations: Vec<f64>,
}

/// Runs `events` (route, event, expected status) and returns per-route expectations.
async fn run_http(r: &mut Run, events: Vec<(String, Value, u16)>, name: &str) -> BTreeMap<String, RouteExpect> {
    let mut want: BTreeMap<String, RouteExpect> = BTreeMap::new();
    for (route, ev, status) in events {
        let out = r.sb.invoke(ev).await.unwrap();
        check_answer(&out, status, name);
        let w = want.entry(route).or_default();
        w.invokes += 1;
        w.c4xx += usize::from((400..500).contains(&status));
        w.c5xx += usize::from(status >= 500);
        w.durations.push(out.duration_ms);
    }
    want
}

fn check_answer(out: &InvokeOutcome, status: u16, name: &str) {
    if status == 502 {
        assert_eq!(out.status, Status::Error, "{name}: thrown: {out:?}");
    } else {
        assert_eq!(out.status, Status::Success, "{name}: {out:?}");
        assert_eq!(
            out.json().unwrap()["statusCode"],
            json!(status),
            "{name}: {}",
            String::from_utf8_lossy(&out.response)
        );
    }
}

/// The three routes with 200, 404 and 500 answers, and one thrown error, of one HTTP flavour.
fn http_events(make: &dyn Fn(usize, Value) -> (String, Value)) -> Vec<(String, Value, u16)> {
    let mut v = Vec::new();
    for i in 0..12 {
        let (status, headers) = match i % 3 {
            0 => (200, json!({"accept": "*/*"})),
            1 => (404, json!({"x-status": "404"})),
            _ => (500, json!({"x-status": "500"})),
        };
        let (route, ev) = make(i % 3, headers);
        v.push((route, ev, status));
    }
    let (route, ev) = make(0, json!({"x-throw": "handler blew up"}));
    v.push((route, ev, 502));
    v
}

async fn check_routes(
    c: &aws_sdk_cloudwatch::Client,
    ns: &str,
    function: &str,
    want: &BTreeMap<String, RouteExpect>,
    t_ms: i64,
    pct: bool,
) {
    for (route, w) in want {
        let d = dims(function, &[("Route", route)]);
        let inv = totals(c, ns, "Invocations", &d).await;
        assert_eq!(
            (inv.sum, inv.sample_count),
            (w.invokes as f64, w.invokes as f64),
            "{function} {route}: Invocations"
        );
        let h4 = totals(c, ns, "Http4xx", &d).await;
        assert_eq!((h4.sum, h4.sample_count), (w.c4xx as f64, w.invokes as f64), "{function} {route}: Http4xx");
        let h5 = totals(c, ns, "Http5xx", &d).await;
        assert_eq!((h5.sum, h5.sample_count), (w.c5xx as f64, w.invokes as f64), "{function} {route}: Http5xx");
        let dur = totals(c, ns, "Duration", &d).await;
        assert_eq!(dur.sample_count, w.invokes as f64, "{function} {route}: Duration count");
        let exact_sum: f64 = w.durations.iter().sum();
        assert!(
            (dur.sum - exact_sum).abs() <= 1e-6 * exact_sum.max(1.0),
            "{function} {route}: Duration sum {} vs {exact_sum}",
            dur.sum
        );
        if pct {
            let got = percentiles(c, ns, "Duration", &d, t_ms, &["p50", "p99"]).await;
            for (p, g) in [(50.0, got[0]), (99.0, got[1])] {
                let exact = percentile_exact(&w.durations, p);
                assert!(
                    (g - exact).abs() <= 0.01 * exact,
                    "{function} {route}: p{p} {g} vs {exact} (reports {:?})",
                    w.durations
                );
            }
        }
    }
}

async fn total(c: &aws_sdk_cloudwatch::Client, ns: &str, metric: &str, d: &[Dimension]) -> (f64, f64) {
    let t = totals(c, ns, metric, d).await;
    (t.sum, t.sample_count)
}

/// HTTP API 2.0, REST and WebSocket, batches and the thrown error's type for one runtime, against
/// the embedded CloudWatch (`pct`: percentiles too) or moto.
async fn http_and_batches(
    name: &str,
    spec: RuntimeSpec,
    error_type: &str,
    cw_url: &str,
    cw_env: Vec<(String, String)>,
    pct: bool,
) {
    let ns = "Triggers";
    let mut r = start_with(name, &spec, ns, cw_env, true, &[]).await;
    room_in_minute(40).await;
    let t0 = now_ms();
    let v2_routes = ["GET /users/{id}", "POST /orders", "GET /health"];
    let mut want = run_http(
        &mut r,
        http_events(&|k, h| {
            let route = v2_routes[k];
            (route.to_owned(), http_v2(route, &format!("/x/{k}"), h))
        }),
        name,
    )
    .await;
    let rest_routes = [("GET", "/pets/{petId}"), ("POST", "/pets"), ("DELETE", "/pets/{petId}")];
    want.extend(
        run_http(
            &mut r,
            http_events(&|k, h| {
                let (m, res) = rest_routes[k];
                (format!("{m} {res}"), rest(m, res, &res.replace("{petId}", "42"), h))
            }),
            name,
        )
        .await,
    );
    let ws_routes = [("$connect", "CONNECT"), ("sendMessage", "MESSAGE"), ("$disconnect", "DISCONNECT")];
    want.extend(
        run_http(
            &mut r,
            http_events(&|k, h| {
                let (route, ty) = ws_routes[k];
                (route.to_owned(), websocket(route, ty, h))
            }),
            name,
        )
        .await,
    );

    // SQS batches of 1-10 records sent 1-3 s before, with valid, empty, null, malformed and thrown answers.
    let mut batch_failures = 0usize;
    let mut batch_sizes = Vec::new();
    let mut ages: Vec<(f64, f64)> = Vec::new(); // (lowest, highest) acceptable RecordAge
    let plans: Vec<Vec<&str>> = vec![
        vec!["ok"],
        vec!["fail", "ok", "fail"],
        vec!["ok"; 10],
        vec!["ok", "none"],
        vec!["ok", "malformed", "ok", "ok"],
        vec!["fail", "throw"],
        vec!["fail"; 7],
    ];
    for (k, cmds) in plans.iter().enumerate() {
        let n = cmds.len();
        let oldest = 1_000 + 250 * k as i64;
        let recs: Vec<i64> = (0..n as i64).map(|i| oldest - 90 * i).collect();
        let before = now_ms();
        let out = r.sb.invoke(sqs("orders-queue", before, &recs, cmds)).await.unwrap();
        let after = now_ms();
        ages.push((oldest as f64, (oldest + after - before) as f64));
        batch_sizes.push(n);
        batch_failures += if cmds.contains(&"throw") || cmds.contains(&"malformed") {
            n
        } else if cmds.contains(&"none") {
            0
        } else {
            cmds.iter().filter(|c| **c == "fail").count()
        };
        let thrown = cmds.contains(&"throw");
        assert_eq!(out.status, if thrown { Status::Error } else { Status::Success }, "{name}: batch {k}: {out:?}");
    }
    // A Kinesis and a DynamoDB Streams batch.
    let before = now_ms();
    let k_out = r.sb.invoke(kinesis("clicks", before, &[2_000, 1_500, 1_000], &["ok", "fail", "ok"])).await.unwrap();
    let k_after = now_ms();
    assert_eq!(k_out.status, Status::Success, "{name}: {k_out:?}");
    let d_now_s = now_ms() / 1000;
    let d_before = now_ms();
    let d_out = r.sb.invoke(dynamodb("Orders", d_now_s, &[3, 2], &["fail", "fail"])).await.unwrap();
    let d_after = now_ms();
    assert_eq!(d_out.status, Status::Success, "{name}: {d_out:?}");

    // An SNS notification published 1.5 s before, an EventBridge event of 3 s before (its `time`
    // has whole seconds).
    let sns_before = now_ms();
    let sns_time = perfmon_protocol::time::format_iso_ms(sns_before - 1_500);
    let sns = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:topic:sub",
        "Sns": {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:123456789012:topic",
            "Subject": null, "Message": "hello", "Timestamp": sns_time, "MessageAttributes": {}}}]});
    assert_eq!(r.sb.invoke(sns).await.unwrap().status, Status::Success);
    let sns_after = now_ms();
    let eb_before = now_ms();
    let eb_time_ms = (eb_before / 1000 - 3) * 1000;
    let eb = json!({"version": "0", "id": "e", "detail-type": "OrderPlaced", "source": "shop.orders",
        "account": "123456789012", "time": perfmon_protocol::time::format_iso_ms(eb_time_ms).replace(".000Z", "Z"),
        "region": "us-east-1", "resources": [], "detail": {"orderId": 1}});
    assert_eq!(r.sb.invoke(eb).await.unwrap().status, Status::Success);
    let eb_after = now_ms();

    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let c = client(cw_url);
    check_routes(&c, ns, name, &want, t0, pct).await;

    let sd = totals(&c, ns, "DeliveryDelay", &dims(name, &[("Trigger", "sns")])).await;
    assert_eq!(sd.sample_count, 1.0, "{name}: SNS DeliveryDelay");
    assert!(
        sd.sum >= 1_500.0 - 50.0 && sd.sum <= (1_500 + sns_after - sns_before) as f64 + 50.0,
        "{name}: SNS DeliveryDelay {}",
        sd.sum
    );
    let ed = totals(&c, ns, "DeliveryDelay", &dims(name, &[("Trigger", "eventbridge")])).await;
    assert_eq!(ed.sample_count, 1.0, "{name}: EventBridge DeliveryDelay");
    let e_known = (eb_before - eb_time_ms) as f64;
    assert!(
        ed.sum >= e_known - 50.0 && ed.sum <= e_known + (eb_after - eb_before) as f64 + 50.0,
        "{name}: EventBridge DeliveryDelay {} vs {e_known}",
        ed.sum
    );

    // Per trigger: every invoke counted once under its trigger.
    let trig = |t: &str| dims(name, &[("Trigger", t)]);
    assert_eq!(total(&c, ns, "Invocations", &trig("api-gateway-http")).await.0, 13.0, "{name}");
    assert_eq!(total(&c, ns, "Invocations", &trig("api-gateway-rest")).await.0, 13.0, "{name}");
    assert_eq!(total(&c, ns, "Invocations", &trig("api-gateway-websocket")).await.0, 13.0, "{name}");
    assert_eq!(total(&c, ns, "Invocations", &trig("sqs")).await.0, plans.len() as f64, "{name}");
    assert_eq!(total(&c, ns, "Invocations", &trig("kinesis")).await.0, 1.0, "{name}");
    assert_eq!(total(&c, ns, "Invocations", &trig("dynamodb-streams")).await.0, 1.0, "{name}");

    let q = dims(name, &[("Trigger", "sqs"), ("Source", "orders-queue")]);
    let size = totals(&c, ns, "BatchSize", &q).await;
    assert_eq!(
        (size.sum, size.sample_count),
        (batch_sizes.iter().sum::<usize>() as f64, plans.len() as f64),
        "{name}: BatchSize"
    );
    assert_eq!((size.minimum, size.maximum), (1.0, 10.0), "{name}: BatchSize");
    let bif = totals(&c, ns, "BatchItemFailures", &q).await;
    assert_eq!((bif.sum, bif.sample_count), (batch_failures as f64, plans.len() as f64), "{name}: BatchItemFailures");
    let age = totals(&c, ns, "RecordAge", &q).await;
    assert_eq!(age.sample_count, plans.len() as f64, "{name}: RecordAge count");
    let (lo, hi) =
        (ages.iter().map(|a| a.0).fold(f64::INFINITY, f64::min), ages.iter().map(|a| a.1).fold(0.0, f64::max));
    assert!(
        age.minimum >= lo - 50.0 && age.minimum <= ages[0].1 + 50.0,
        "{name}: RecordAge min {} vs {:?}",
        age.minimum,
        ages[0]
    );
    assert!(
        age.maximum <= hi + 50.0 && age.maximum >= ages.last().unwrap().0 - 50.0,
        "{name}: RecordAge max {} vs {:?}",
        age.maximum,
        ages.last()
    );
    let age_sum_lo: f64 = ages.iter().map(|a| a.0).sum();
    let age_sum_hi: f64 = ages.iter().map(|a| a.1).sum();
    assert!(
        age.sum >= age_sum_lo - 50.0 * ages.len() as f64 && age.sum <= age_sum_hi + 50.0 * ages.len() as f64,
        "{name}: RecordAge sum {} in [{age_sum_lo}, {age_sum_hi}]",
        age.sum
    );

    let kd = dims(name, &[("Trigger", "kinesis"), ("Source", "clicks")]);
    assert_eq!(total(&c, ns, "BatchSize", &kd).await, (3.0, 1.0), "{name}: Kinesis BatchSize");
    assert_eq!(total(&c, ns, "BatchItemFailures", &kd).await, (1.0, 1.0), "{name}: Kinesis BatchItemFailures");
    let k_age = totals(&c, ns, "RecordAge", &kd).await;
    assert!(
        k_age.sum >= 2_000.0 - 50.0 && k_age.sum <= (2_000 + k_after - before) as f64 + 50.0,
        "{name}: Kinesis RecordAge {}",
        k_age.sum
    );
    let dd = dims(name, &[("Trigger", "dynamodb-streams"), ("Source", "Orders")]);
    assert_eq!(total(&c, ns, "BatchSize", &dd).await, (2.0, 1.0), "{name}: DynamoDB BatchSize");
    assert_eq!(total(&c, ns, "BatchItemFailures", &dd).await, (2.0, 1.0), "{name}: DynamoDB BatchItemFailures");
    let d_age = totals(&c, ns, "RecordAge", &dd).await;
    let d_known = (d_before - (d_now_s - 3) * 1000) as f64;
    assert!(
        d_age.sum >= d_known - 50.0 && d_age.sum <= d_known + (d_after - d_before) as f64 + 50.0,
        "{name}: DynamoDB RecordAge {} vs {d_known}",
        d_age.sum
    );

    // Errors per ErrorType: the 3 thrown HTTP errors and the thrown batch.
    let e = dims(name, &[("ErrorType", error_type)]);
    assert_eq!(total(&c, ns, "Errors", &e).await, (4.0, 4.0), "{name}: Errors by ErrorType {error_type}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_through_the_wrapper_to_the_embedded_cloudwatch() {
    let cw = CloudWatch::start().await.unwrap();
    let url = cw.endpoint_url();
    http_and_batches("trig-python", common::python_function(), "Exception", &url, embedded_env(&url), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_through_the_wrapper_to_the_embedded_cloudwatch() {
    let cw = CloudWatch::start().await.unwrap();
    let url = cw.endpoint_url();
    http_and_batches("trig-rust", common::rust_function(), "Error", &url, embedded_env(&url), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_through_the_wrapper_to_the_embedded_cloudwatch() {
    let cw = CloudWatch::start().await.unwrap();
    let url = cw.endpoint_url();
    http_and_batches("trig-node", common::node_function(), "Error", &url, embedded_env(&url), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_through_the_wrapper_to_moto() {
    let moto = common::Moto::start();
    http_and_batches(
        "trig-rust-moto",
        common::rust_function(),
        "Error",
        &moto.endpoint_url(),
        moto.client_env(),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_through_the_wrapper_to_moto() {
    let moto = common::Moto::start();
    http_and_batches(
        "trig-python-moto",
        common::python_function(),
        "Exception",
        &moto.endpoint_url(),
        moto.client_env(),
        false,
    )
    .await;
}

/// Dimension names of every datum perfmon sent, by metric name.
fn series(cw: &CloudWatch, ns: &str) -> BTreeMap<String, std::collections::BTreeSet<Vec<String>>> {
    let mut out: BTreeMap<String, std::collections::BTreeSet<Vec<String>>> = BTreeMap::new();
    for d in cw.store().all_datums().into_iter().filter(|d| d.namespace == ns) {
        let mut names: Vec<String> = d.datum.dimensions.iter().map(|x| x.name.clone()).collect();
        names.sort();
        out.entry(d.datum.metric_name.clone()).or_default().insert(names);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_over_a_thousand_paths_gives_a_handful_of_routes() {
    let cw = CloudWatch::start().await.unwrap();
    let (ns, name) = ("TriggersAlb", "trig-alb");
    let env = embedded_env(&cw.endpoint_url());
    let mut r = start_with(name, &common::rust_function(), ns, env, true, &[("PERFMON_ROUTES", "/files/{name}")]).await;
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..1_000u32 {
        let (route, method, path) = match i % 4 {
            0 => ("GET /users/{id}", "GET", format!("/users/{}", 10_000 + i)),
            1 => ("POST /orders/{id}/items", "POST", format!("/orders/{i}/items")),
            2 => ("GET /files/{name}", "GET", format!("/files/report-{i}.pdf")),
            _ => ("DELETE /carts/{id}", "DELETE", format!("/carts/{:08x}-{:04x}-4000-8000-{:012x}", i, i, i)),
        };
        let out = r.sb.invoke(alb(method, &path)).await.unwrap();
        assert_eq!(out.status, Status::Success, "{out:?}");
        assert_eq!(out.json().unwrap()["statusCode"], json!(200));
        *want.entry(route.to_owned()).or_default() += 1;
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for d in cw.store().datums(ns, "Invocations") {
        if let Some(route) = d.datum.dimensions.iter().find(|x| x.name == "Route") {
            let v = d.datum.statistic_values.map(|s| s.sum).or(d.datum.value).unwrap_or(0.0);
            *got.entry(route.value.clone()).or_default() += v;
        }
    }
    let want: BTreeMap<String, f64> = want.into_iter().map(|(k, v)| (k, v as f64)).collect();
    assert_eq!(got, want, "1 000 paths, 4 routes, totals exact");
    let c = client(&cw.endpoint_url());
    assert_eq!(total(&c, ns, "Invocations", &dims(name, &[("Trigger", "alb")])).await.0, 1_000.0);
    assert_eq!(total(&c, ns, "Http5xx", &dims(name, &[("Route", "GET /users/{id}")])).await, (0.0, 250.0));
}

/// The same invokes through perfmon three ways; returns the series each sent and the outcomes.
async fn off_run(
    name: &str,
    wrapped: bool,
    extra: &[(&str, &str)],
) -> (BTreeMap<String, std::collections::BTreeSet<Vec<String>>>, Vec<(Status, Value)>, f64) {
    let cw = CloudWatch::start().await.unwrap();
    let ns = "TriggersOff";
    let mut r =
        start_with(name, &common::python_function(), ns, embedded_env(&cw.endpoint_url()), wrapped, extra).await;
    let now = now_ms();
    let events = vec![
        http_v2("GET /users/{id}", "/users/1", json!({"x-status": "404"})),
        rest("GET", "/pets/{petId}", "/pets/1", json!({"x-throw": "no"})),
        websocket("$connect", "CONNECT", json!({})),
        alb("GET", "/users/5"),
        sqs("q", now, &[1_000, 500], &["fail", "ok"]),
        json!({"plain": "event"}),
    ];
    let mut outs = Vec::new();
    for ev in events {
        let out = r.sb.invoke(ev).await.unwrap();
        // The answer as the caller sees it, but for the request id in an error body.
        let mut answer: Value = serde_json::from_slice(&out.response).unwrap();
        if let Some(o) = answer.as_object_mut() {
            o.remove("requestId");
        }
        outs.push((out.status, answer));
    }
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let invocations = custom_support::cw_sum(&cw, ns, "Invocations");
    (series(&cw, ns), outs, invocations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_wrapper_or_switched_off_no_trigger_series_and_nothing_else_changes() {
    let (on, on_outs, on_inv) = off_run("trig-on", true, &[]).await;
    let (unwrapped, un_outs, un_inv) = off_run("trig-unwrapped", false, &[]).await;
    let (off, off_outs, off_inv) = off_run("trig-off", true, &[("PERFMON_TRIGGER_METRICS", "false")]).await;
    let trigger_dims = ["Trigger", "Route", "Source", "ErrorType"];
    let has_trigger_dims = |s: &BTreeMap<String, std::collections::BTreeSet<Vec<String>>>| {
        s.iter().any(|(_, sets)| sets.iter().any(|names| names.iter().any(|n| trigger_dims.contains(&n.as_str()))))
    };
    assert!(has_trigger_dims(&on), "with the wrapper the trigger series are there: {on:?}");
    assert!(!has_trigger_dims(&unwrapped), "without the wrapper: {unwrapped:?}");
    assert!(!has_trigger_dims(&off), "PERFMON_TRIGGER_METRICS=false: {off:?}");
    for (what, s) in [("unwrapped", &unwrapped), ("off", &off)] {
        for m in ["BatchSize", "RecordAge", "BatchItemFailures", "Http4xx", "Http5xx", "DeliveryDelay"] {
            assert!(!s.contains_key(m), "{what}: {m}");
        }
    }
    // Nothing else changes: the same platform series, the same answers, the same invocation count.
    assert_eq!(unwrapped, off, "the series without the wrapper and switched off");
    let strip = |s: &BTreeMap<String, std::collections::BTreeSet<Vec<String>>>| -> BTreeMap<String, std::collections::BTreeSet<Vec<String>>> {
        s.iter()
            .map(|(k, v)| (k.clone(), v.iter().filter(|n| !n.iter().any(|d| trigger_dims.contains(&d.as_str()))).cloned().collect()))
            .filter(|(_, v): &(String, std::collections::BTreeSet<Vec<String>>)| !v.is_empty())
            .collect()
    };
    assert_eq!(strip(&on), unwrapped, "with the wrapper, the other series are the same");
    assert_eq!(on_outs, un_outs);
    assert_eq!(off_outs, un_outs);
    assert_eq!(off_inv, un_inv);
    // Invocations: 6 (platform), and with the wrapper 6 more per trigger and 4 per route.
    assert_eq!((un_inv, on_inv), (6.0, 16.0));
}

/// What [`bad_inputs`] saw: the outcomes (status, error type, answer without its request id),
/// `/v1/health` taken during a last invoke after a client left mid-body on the proxy (wrapped
/// only), and the embedded CloudWatch's sums of `BatchSize` and `Http4xx` + `Http5xx` samples
/// (`SampleCount`) per route.
type BadRun = (Vec<(Status, Option<String>, Value)>, Option<Value>, f64, BTreeMap<String, f64>);

/// The bad inputs, in one sandbox.
async fn bad_inputs(name: &str, wrapped: bool) -> BadRun {
    let cw = CloudWatch::start().await.unwrap();
    let ns = "TriggersBad";
    let port = free_port();
    let mut r =
        start_on(name, &common::python_function(), ns, embedded_env(&cw.endpoint_url()), wrapped, &[], port).await;
    // 6 MB of SQS batch (two records of 3 MB bodies; Lambda's synchronous payload limit is 6 MB).
    let pad = "x".repeat(3_000_000);
    let six_mb_batch = sqs("big-queue", now_ms(), &[2_000, 1_000], &[pad.as_str(), pad.as_str()]);
    let inputs: Vec<Vec<u8>> = vec![
        b"not json {".to_vec(),
        br#""a plain string""#.to_vec(),
        br#"{"unknown":{"x":[1,2,{"y":null}]},"Records":"not a list"}"#.to_vec(),
        serde_json::to_vec(&six_mb_batch).unwrap(),
        br#"{"requestContext":{"elb":{"targetGroupArn":"arn"}},"httpMethod":"GET","path":"/a/1"}"#.to_vec(),
        // An answer that is not JSON (awslambdaric posts a bytes result as it is).
        serde_json::to_vec(&http_v2("GET /raw", "/raw", json!({"x-raw-answer": "plain text, not JSON {"}))).unwrap(),
        // A 6 MB answer (a 6 000 000-character body).
        serde_json::to_vec(&http_v2("GET /big", "/big", json!({"x-pad-answer": "6000000"}))).unwrap(),
    ];
    let mut outs = Vec::new();
    for input in inputs {
        let out = r.sb.invoke_raw(input).await.unwrap();
        let mut answer: Value = serde_json::from_slice(&out.response).unwrap_or(Value::Null);
        if let Some(o) = answer.as_object_mut() {
            o.remove("requestId");
            o.remove("stackTrace");
        }
        outs.push((out.status, out.error_type.clone(), answer));
    }
    let http_port = r.http_port;
    let running = tokio::spawn(async move {
        let out = r.sb.invoke(json!({"sleep_ms": 3000})).await.unwrap();
        (r, out)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = if wrapped {
        Some(
            custom_support::blocking(move || {
                // A client that leaves in the middle of an answer's body.
                {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    std::io::Write::write_all(&mut s, b"POST /2018-06-01/runtime/invocation/no-such-id/response HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"statusCode\":").unwrap();
                }
                let mut last = Value::Null;
                let seen = common::wait_until(Duration::from_secs(5), || {
                    last = health(http_port);
                    last["triggers"]["answers_not_understood"] == json!(2)
                });
                assert!(seen, "the answer cut short is counted: {last}");
                last
            })
            .await,
        )
    } else {
        None
    };
    let (mut r, out) = running.await.unwrap();
    assert_eq!(out.status, Status::Success, "{out:?}");
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let batch = custom_support::cw_sum(&cw, ns, "BatchSize");
    let mut statuses = BTreeMap::new();
    for metric in ["Http4xx", "Http5xx"] {
        for d in cw.store().datums(ns, metric) {
            let route = d.datum.dimensions.iter().find(|x| x.name == "Route").map(|x| x.value.clone());
            let n = d.datum.sample_count();
            let counted =
                d.datum.values.iter().enumerate().map(|(i, v)| v * d.datum.counts.get(i).copied().unwrap_or(1.0));
            let sum = d.datum.statistic_values.map(|s| s.sum).or(d.datum.value).unwrap_or_else(|| counted.sum());
            if let Some(route) = route {
                *statuses.entry(format!("{metric} {route} samples")).or_insert(0.0) += n;
                *statuses.entry(format!("{metric} {route} sum")).or_insert(0.0) += sum;
            }
        }
    }
    (outs, h, batch, statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_behaves_as_without_perfmon_and_health_counts_it() {
    let (wrapped, h, batch, statuses) = bad_inputs("trig-bad", true).await;
    let (direct, _, direct_batch, direct_statuses) = bad_inputs("trig-bad-direct", false).await;
    assert_eq!(wrapped, direct, "every invoke as without the proxy");
    assert_eq!(wrapped[5].2, Value::Null, "the raw answer is not JSON: {:?}", wrapped[5]);
    assert_eq!(wrapped[6].2["body"].as_str().map(str::len), Some(6_000_000), "the 6 MB answer went through");
    let h = h.unwrap();
    let t = &h["triggers"];
    assert_eq!(t["events_not_understood"], json!(1), "the event that is not JSON: {h}");
    assert_eq!(t["answers_not_understood"], json!(2), "the answer that is not JSON, the one cut short: {h}");
    assert_eq!(t["events_not_read"], json!(0), "the 6 MB event is read whole: {h}");
    assert_eq!(t["answers_not_read"], json!(0), "the 6 MB answer is read whole: {h}");
    assert_eq!(t["invokes"]["other"], json!(4), "not JSON, a string, unknown JSON, the running invoke: {h}");
    assert_eq!(t["invokes"]["sqs"], json!(1), "the 6 MB batch: {h}");
    assert_eq!(t["invokes"]["alb"], json!(1), "{h}");
    assert_eq!(t["invokes"]["api-gateway-http"], json!(2), "{h}");
    // The 6 MB event's batch reached CloudWatch; without the wrapper nothing did.
    assert_eq!((batch, direct_batch), (2.0, 0.0));
    assert!(direct_statuses.is_empty(), "{direct_statuses:?}");
    // The 6 MB answer was read (its status 200); the raw one is not JSON, which API Gateway answers
    // 502 (HTTP API 2.0 infers 200 only from a valid JSON answer). One sample each per invoke.
    for route in ["GET /big", "GET /raw"] {
        for m in ["Http4xx", "Http5xx"] {
            assert_eq!(statuses.get(&format!("{m} {route} samples")), Some(&1.0), "{m} {route}: {statuses:?}");
        }
    }
    assert_eq!(statuses.get("Http4xx GET /big sum"), Some(&0.0), "{statuses:?}");
    assert_eq!(statuses.get("Http5xx GET /big sum"), Some(&0.0), "{statuses:?}");
    assert_eq!(statuses.get("Http5xx GET /raw sum"), Some(&1.0), "{statuses:?}");
}

/// A streamed answer (aws-lambda-ric's `streamifyResponse` with an HTTP prelude, then 100 kB that
/// are not JSON) through the wrapper: only the prelude is read — per-route `Http4xx` / `Http5xx`
/// follow its `statusCode` — and the streamed body is neither read nor counted as not understood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answer_only_its_prelude_is_read() {
    let cw = CloudWatch::start().await.unwrap();
    let ns = "TriggersStream";
    let mut spec = common::node_function();
    spec.env.retain(|(k, _)| k != "_HANDLER");
    spec.env.push(("_HANDLER".into(), "handler.streaming".into()));
    let mut env = embedded_env(&cw.endpoint_url());
    env.push(("PERFMON_RUNTIME_PROXY_PORT".into(), free_port().to_string()));
    env.push(("AWS_LAMBDA_EXEC_WRAPPER".into(), wrapper()));
    let mut r = start("trig-stream", &spec, ns, &env, |c| c.streaming(true)).await;
    for status in ["201", "404", "503"] {
        let out = r.sb.invoke(http_v2("GET /s", "/s", json!({"x-status": status}))).await.unwrap();
        assert_eq!(out.status, Status::Success, "{out:?}");
        assert!(out.response.ends_with(&[b's'; 100][..]), "the streamed body went through");
    }
    // `/v1/health` during a fourth invoke (perfmon is frozen between invokes, as in Lambda).
    let http_port = r.http_port;
    let running = tokio::spawn(async move {
        let out = r.sb.invoke(http_v2("GET /s", "/s", json!({"x-sleep-ms": "3000"}))).await.unwrap();
        (r, out)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = custom_support::blocking(move || {
        let mut last = Value::Null;
        let seen = common::wait_until(Duration::from_secs(2), || {
            last = health(http_port);
            last["triggers"]["invokes"]["api-gateway-http"] == json!(4)
        });
        assert!(seen, "{last}");
        last
    })
    .await;
    let (mut r, out) = running.await.unwrap();
    assert_eq!(out.status, Status::Success, "{out:?}");
    let down = r.sb.shutdown().await.unwrap();
    custom_support::assert_clean_exit(&down);
    let t = &h["triggers"];
    assert_eq!((t["answers_not_understood"].clone(), t["answers_not_read"].clone()), (json!(0), json!(0)), "{h}");
    let sums = |metric: &str| {
        let ds = cw.store().datums(ns, metric);
        let n: f64 = ds.iter().map(|d| d.datum.sample_count()).sum();
        let sum: f64 = ds
            .iter()
            .map(|d| {
                let d = &d.datum;
                let counted = d.values.iter().enumerate().map(|(i, v)| v * d.counts.get(i).copied().unwrap_or(1.0));
                d.statistic_values.map(|s| s.sum).or(d.value).unwrap_or_else(|| counted.sum())
            })
            .sum();
        (sum, n)
    };
    assert_eq!(sums("Http4xx"), (1.0, 4.0), "the 404 prelude");
    assert_eq!(sums("Http5xx"), (1.0, 4.0), "the 503 prelude");
}
