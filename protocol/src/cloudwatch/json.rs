//! AWS JSON 1.0 for CloudWatch (botocore ≥ 1.42.7, AWS CLI, JS v3): `POST /` with
//! `X-Amz-Target: GraniteServiceVersion20100801.<Operation>` and `Content-Type: application/x-amz-json-1.0`.
//!
//! Timestamps are epoch **seconds** (JSON numbers, possibly fractional). Because CloudWatch is
//! `awsQueryCompatible`, errors carry the query code in the `x-amzn-query-error: <Code>;<Sender|Receiver>`
//! header (see [`query_error_header`]) beside `__type`; botocore reports that code as `Error.Code`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::read::{
    Datapoint, GetMetricDataInput, GetMetricStatisticsInput, GetMetricStatisticsOutput, ListMetricsInput,
    ListMetricsOutput, MetricDataResult,
};
use super::{epoch_seconds_opt, CwError, Dimension, ErrorCode, PutMetricData, Request};

/// `Content-Type` of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

#[derive(Deserialize)]
struct GetMetricStatisticsJson {
    #[serde(rename = "Namespace")]
    namespace: String,
    #[serde(rename = "MetricName")]
    metric_name: String,
    #[serde(rename = "Dimensions", default)]
    dimensions: Vec<Dimension>,
    #[serde(rename = "StartTime", with = "epoch_seconds_opt")]
    start_time: Option<i64>,
    #[serde(rename = "EndTime", with = "epoch_seconds_opt")]
    end_time: Option<i64>,
    #[serde(rename = "Period")]
    period: i64,
    #[serde(rename = "Statistics", default)]
    statistics: Vec<String>,
    #[serde(rename = "ExtendedStatistics", default)]
    extended_statistics: Vec<String>,
    #[serde(rename = "Unit", default)]
    unit: Option<String>,
}

fn serialization(e: impl std::fmt::Display) -> CwError {
    CwError::new(ErrorCode::SerializationException, format!("Could not parse the request body: {e}"))
}

fn require(obj: &Map<String, Value>, keys: &[&str]) -> Result<(), CwError> {
    match keys.iter().find(|k| obj.get(**k).is_none_or(Value::is_null)) {
        Some(k) => Err(CwError::missing(k)),
        None => Ok(()),
    }
}

/// Decodes an AWS JSON request body for `operation` (the `X-Amz-Target` suffix).
pub fn decode_request(operation: &str, body: &[u8]) -> Result<Request, CwError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(serialization)?
    };
    decode_value(operation, value)
}

/// Decodes a request already parsed into a JSON value (AWS JSON, or RPC v2 CBOR translated by
/// [`super::cbor::to_json`]): one set of shapes and error messages for both protocols.
pub fn decode_value(operation: &str, value: Value) -> Result<Request, CwError> {
    let Value::Object(obj) = &value else {
        return Err(serialization("the body is not a JSON object"));
    };
    match operation {
        "PutMetricData" => {
            require(obj, &["Namespace"])?;
            Ok(Request::PutMetricData(serde_json::from_value::<PutMetricData>(value).map_err(serialization)?))
        }
        "ListMetrics" => {
            Ok(Request::ListMetrics(serde_json::from_value::<ListMetricsInput>(value).map_err(serialization)?))
        }
        "GetMetricStatistics" => {
            require(obj, &["Namespace", "MetricName", "StartTime", "EndTime", "Period"])?;
            let j: GetMetricStatisticsJson = serde_json::from_value(value).map_err(serialization)?;
            Ok(Request::GetMetricStatistics(GetMetricStatisticsInput {
                namespace: j.namespace,
                metric_name: j.metric_name,
                dimensions: j.dimensions,
                start_time_ms: j.start_time.ok_or_else(|| CwError::missing("StartTime"))?,
                end_time_ms: j.end_time.ok_or_else(|| CwError::missing("EndTime"))?,
                period: j.period,
                statistics: j.statistics,
                extended_statistics: j.extended_statistics,
                unit: j.unit,
            }))
        }
        "GetMetricData" => {
            require(obj, &["MetricDataQueries", "StartTime", "EndTime"])?;
            Ok(Request::GetMetricData(serde_json::from_value::<GetMetricDataInput>(value).map_err(serialization)?))
        }
        other => Err(CwError::new(
            ErrorCode::InvalidAction,
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

fn secs(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn datapoint(p: &Datapoint) -> Value {
    let mut m = Map::new();
    m.insert("Timestamp".into(), secs(p.timestamp_ms));
    for (name, v) in p.statistics() {
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    m.insert("Unit".into(), json!(p.unit));
    if !p.extended_statistics.is_empty() {
        let ext: Map<String, Value> = p.extended_statistics.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        m.insert("ExtendedStatistics".into(), Value::Object(ext));
    }
    Value::Object(m)
}

pub fn encode_put_metric_data() -> String {
    "{}".to_owned()
}

/// The answers as JSON values: [`super::cbor::from_json`] re-encodes them for RPC v2 CBOR without a
/// trip through text (serde_json's default float parsing is not exact to the last bit).
pub fn put_metric_data_value() -> Value {
    Value::Object(Map::new())
}

pub fn list_metrics_value(out: &ListMetricsOutput) -> Value {
    let mut v = json!({ "Metrics": out.metrics });
    if let (Some(t), Value::Object(m)) = (&out.next_token, &mut v) {
        m.insert("NextToken".into(), json!(t));
    }
    v
}

pub fn encode_list_metrics(out: &ListMetricsOutput) -> String {
    list_metrics_value(out).to_string()
}

pub fn get_metric_statistics_value(out: &GetMetricStatisticsOutput) -> Value {
    json!({ "Label": out.label, "Datapoints": out.datapoints.iter().map(datapoint).collect::<Vec<_>>() })
}

pub fn get_metric_data_value(results: &[MetricDataResult]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "Id": r.id,
                "Label": r.label,
                "Timestamps": r.timestamps_ms.iter().map(|t| secs(*t)).collect::<Vec<_>>(),
                "Values": r.values,
                "StatusCode": r.status_code,
            })
        })
        .collect();
    json!({ "MetricDataResults": results, "Messages": [] })
}

pub fn encode_get_metric_statistics(out: &GetMetricStatisticsOutput) -> String {
    get_metric_statistics_value(out).to_string()
}

/// Error body: `{"__type": "<shape id>", "message": "..."}`.
pub fn encode_error(e: &CwError) -> String {
    json!({ "__type": e.code.json_type(), "message": e.message }).to_string()
}

/// Value of the `x-amzn-query-error` header: `<QueryCode>;<Sender|Receiver>`.
pub fn query_error_header(e: &CwError) -> String {
    format!("{};{}", e.code.as_str(), e.code.fault())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::MetricDatum;
    use super::*;

    #[test]
    fn put_metric_data_json_uses_epoch_seconds() {
        let body = br#"{"Namespace":"N","MetricData":[{"MetricName":"m","Timestamp":1768471200.101,
            "Dimensions":[{"Name":"a","Value":"b"}],"Values":[1.0,2],"Counts":[3,4],"Unit":"Count","StorageResolution":1},
            {"MetricName":"s","Timestamp":1768471200,"StatisticValues":{"SampleCount":2,"Sum":3,"Minimum":1,"Maximum":2}}]}"#;
        let Request::PutMetricData(r) = decode_request("PutMetricData", body).unwrap() else { panic!() };
        assert_eq!(r.metric_data[0].timestamp_ms, Some(1_768_471_200_101));
        assert_eq!(r.metric_data[1].timestamp_ms, Some(1_768_471_200_000));
        assert_eq!(r.metric_data[0].counts, vec![3.0, 4.0]);
        // Round trip through the serde shape.
        let again = serde_json::to_string(&r).unwrap();
        assert!(again.contains(r#""Timestamp":1768471200.101"#), "{again}");
        assert!(again.contains(r#""Timestamp":1768471200,"#), "{again}");
        let Request::PutMetricData(r2) = decode_request("PutMetricData", again.as_bytes()).unwrap() else { panic!() };
        assert_eq!(r, r2);
    }

    #[test]
    fn errors() {
        let e = decode_request("PutMetricData", b"{").unwrap_err();
        assert_eq!(e.code, ErrorCode::SerializationException);
        let e = decode_request("PutMetricData", br#"{"MetricData":[]}"#).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::MissingParameter, "The parameter Namespace is required."));
        let e =
            decode_request("PutMetricData", br#"{"Namespace":"n","MetricData":[{"MetricName":"m","Timestamp":"x"}]}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::SerializationException);
        let e = decode_request("DeleteAlarms", b"{}").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidAction);
        let e = CwError::invalid_value("x");
        assert_eq!(query_error_header(&e), "InvalidParameterValue;Sender");
        assert_eq!(
            encode_error(&e),
            r#"{"__type":"com.amazonaws.cloudwatch#InvalidParameterValueException","message":"x"}"#
        );
        let _ = MetricDatum::default();
    }

    #[test]
    fn get_metric_statistics_json() {
        let body = br#"{"Namespace":"N","MetricName":"m","StartTime":0,"EndTime":3600.5,"Period":60,"ExtendedStatistics":["p99"]}"#;
        let Request::GetMetricStatistics(i) = decode_request("GetMetricStatistics", body).unwrap() else { panic!() };
        assert_eq!((i.start_time_ms, i.end_time_ms, i.period), (0, 3_600_500, 60));
        let out = GetMetricStatisticsOutput {
            label: "m".into(),
            datapoints: vec![Datapoint {
                timestamp_ms: 60_000,
                sum: Some(2.5),
                unit: "Count".into(),
                extended_statistics: vec![("p99".into(), 7.0)],
                ..Default::default()
            }],
        };
        assert_eq!(
            encode_get_metric_statistics(&out),
            r#"{"Datapoints":[{"ExtendedStatistics":{"p99":7.0},"Sum":2.5,"Timestamp":60,"Unit":"Count"}],"Label":"m"}"#
        );
    }
}
