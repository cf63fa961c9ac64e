//! The embedded CloudWatch's simulated network: round trip, per-connection setup,
//! jitter and keep-alive, seen by the SDK perfmon uses (`aws-sdk-cloudwatch`, RPC v2 CBOR).
//! Only lower bounds are checked on time (a sleep never ends early); connection reuse is checked
//! on the endpoint's connection count.
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::MetricDatum;
use perfmon_sandbox::cloudwatch::{CloudWatch, Network};

async fn put(client: &aws_sdk_cloudwatch::Client) -> Duration {
    let t = Instant::now();
    client
        .put_metric_data()
        .namespace("Perfmon/Net")
        .metric_data(MetricDatum::builder().metric_name("M").value(1.0).build())
        .send()
        .await
        .unwrap();
    t.elapsed()
}

#[tokio::test]
async fn keep_alive_pays_setup_once_and_the_round_trip_every_time() {
    let cw = CloudWatch::start().await.unwrap();
    let net = Network {
        rtt: Duration::from_millis(30),
        connect: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        keep_alive: true,
    };
    cw.set_network(net);
    assert_eq!(cw.network(), net);
    let client = common::cloudwatch_client(&cw.endpoint_url());
    let first = put(&client).await;
    let second = put(&client).await;
    let third = put(&client).await;
    assert!(first >= net.rtt + net.connect, "first {first:?}");
    assert!(second >= net.rtt && third >= net.rtt, "{second:?} {third:?}");
    assert_eq!(cw.connections(), 1, "the pooled connection is reused");
    assert_eq!(cw.requests().put_metric_data().len(), 3);
}

#[tokio::test]
async fn without_keep_alive_every_request_pays_setup() {
    let cw = CloudWatch::start().await.unwrap();
    let net = Network::parse("20,30,0,close").unwrap();
    cw.set_network(net);
    let client = common::cloudwatch_client(&cw.endpoint_url());
    for _ in 0..3 {
        let d = put(&client).await;
        assert!(d >= net.rtt + net.connect, "{d:?}");
    }
    assert_eq!(cw.connections(), 3, "a new connection per request");
    assert_eq!(cw.store().datums("Perfmon/Net", "M").len(), 3, "every request stored");
}

#[tokio::test]
async fn none_is_the_default() {
    let cw = CloudWatch::start().await.unwrap();
    assert_eq!(cw.network(), Network::NONE);
    assert!(Network::NONE.is_none() && !Network::IN_REGION.is_none());
}
