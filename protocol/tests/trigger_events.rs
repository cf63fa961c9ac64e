//! Trigger recognition against raw sample events as AWS documents them (`tests/events/`, origin in
//! its README): trigger, route, source, batch size, oldest record and notification time per sample.

use perfmon_protocol::trigger::{read_event, read_event_slice, EventFacts, Routes, Trigger};

fn facts(name: &str) -> EventFacts {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (routes, _) = Routes::parse("/lambda/{name}");
    let from_slice = read_event_slice(&bytes, &routes).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The streaming reader, fed one byte at a time, says the same.
    let one_byte = std::io::BufReader::with_capacity(1, &bytes[..]);
    assert_eq!(read_event(one_byte, &routes).expect("streamed"), from_slice, "{name}");
    from_slice
}

#[track_caller]
fn check(name: &str, trigger: Trigger, route: Option<&str>, source: Option<&str>, size: Option<u64>) -> EventFacts {
    let f = facts(name);
    assert_eq!(f.trigger(), trigger, "{name}: {f:?}");
    assert_eq!(f.route.as_deref(), route, "{name}");
    assert_eq!(f.source.as_deref(), source, "{name}");
    assert_eq!(f.batch_size, size, "{name}");
    f
}

#[test]
fn http_samples() {
    check("apigw-request.json", Trigger::ApiGatewayRest, Some("POST /{proxy+}"), None, None);
    check("apigw-request-catch-all.json", Trigger::ApiGatewayRest, Some("POST /{proxy+}"), None, None);
    check("apigw-sam-http-request.json", Trigger::ApiGatewayHttpV2, Some("GET /dump"), None, None);
    check("apigw-v2-request-no-authorizer.json", Trigger::ApiGatewayHttpV2, Some("$default"), None, None);
    check("apigw-websocket-request.json", Trigger::ApiGatewayWebsocket, Some("$connect"), None, None);
    check(
        "apigw-websocket-request-disconnect-route.json",
        Trigger::ApiGatewayWebsocket,
        Some("$disconnect"),
        None,
        None,
    );
    check("alb-lambda-target-request-headers-only.json", Trigger::Alb, Some("GET /"), None, None);
    check("alb-lambda-target-request-multivalue-headers.json", Trigger::Alb, Some("GET /"), None, None);
    check("lambda-urls-request.json", Trigger::FunctionUrl, Some("POST /my/path"), None, None);
    assert_eq!(Trigger::ApiGatewayHttpV2.as_str(), "api-gateway-http");
}

#[test]
fn batch_samples() {
    let sqs = check("sqs-event.json", Trigger::Sqs, None, Some("SQSQueue"), Some(1));
    assert_eq!(sqs.oldest_record_ms, Some(1_520_621_625_029.0));
    let kinesis = check("kinesis-event.json", Trigger::Kinesis, None, Some("simple-stream"), Some(2));
    assert_eq!(kinesis.oldest_record_ms, Some(1_480_641_523_477.0));
    let ddb = check("dynamodb-event.json", Trigger::DynamodbStreams, None, Some("Example-Table"), Some(2));
    assert_eq!(ddb.oldest_record_ms, Some(1_480_642_020_000.0));
    let kafka = check("kafka-event.json", Trigger::Kafka, None, Some("AWSKafkaTopic"), Some(1));
    assert_eq!(kafka.oldest_record_ms, Some(1_595_035_749_700.0));
    let mq = check("activemq-event.json", Trigger::Mq, None, Some("shask-test"), Some(1));
    assert_eq!(mq.oldest_record_ms, Some(1_599_863_938_941.0));
    check("rabbitmq-event.json", Trigger::Mq, None, Some("test"), Some(1));
}

#[test]
fn notification_and_other_samples() {
    let sns = check("sns-event.json", Trigger::Sns, None, None, None);
    assert_eq!(sns.event_time_ms, perfmon_protocol::time::parse_iso_ms("2015-08-18T18:02:32.111Z").ok());
    let s3 = check("s3-event.json", Trigger::S3, None, None, None);
    assert!(s3.event_time_ms.is_some());
    let eb = check("eventbridge-event-obj.json", Trigger::Eventbridge, None, None, None);
    assert!(eb.event_time_ms.is_some());
    let sched = check("eventbridge-schedule.json", Trigger::Schedule, None, None, None);
    assert_eq!(sched.delivery_delay_ms(sched.event_time_ms.expect("time") + 1500), Some(1500.0));
    check("cognito-event-userpools-presignup.json", Trigger::Cognito, None, None, None);
    check("cloudwatch_logs-event.json", Trigger::CloudwatchLogs, None, None, None);
}

#[test]
fn alb_and_url_paths_follow_perfmon_routes_then_ids() {
    let (routes, _) = Routes::parse("/lambda/{name}");
    let alb = r#"{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:us-east-2:1:targetgroup/t/1"}},"httpMethod":"GET","path":"/lambda/x"}"#;
    assert_eq!(read_event_slice(alb.as_bytes(), &routes).expect("JSON").route.as_deref(), Some("GET /lambda/{name}"));
    let alb = alb.replace("/lambda/x", "/orders/1234/items/01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_eq!(
        read_event_slice(alb.as_bytes(), &routes).expect("JSON").route.as_deref(),
        Some("GET /orders/{id}/items/{id}")
    );
}
