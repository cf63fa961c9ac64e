//! Smithy RPC v2 CBOR for CloudWatch (`aws-sdk-cloudwatch` ≥ 1.100.0, the default of every AWS SDK
//! since December 2025): `POST /service/GraniteServiceVersion20100801/operation/<Operation>` with
//! `smithy-protocol: rpc-v2-cbor` and `Content-Type: application/cbor`; answers carry the same
//! `smithy-protocol` header. Timestamps are CBOR tag 1 (epoch seconds, integer or float); errors are a
//! map with `__type` and `message`, plus `x-amzn-query-error: <Code>;<Sender|Receiver>` because
//! CloudWatch is `awsQueryCompatible` (the Rust SDK takes the typed error's code from that header).
//!
//! The shapes are those of AWS JSON 1.0, so this module translates between CBOR and JSON values
//! ([`to_json`], [`from_json`]) and reuses [`super::json`] for decoding and the answers: one set of
//! shapes and error messages for both protocols. The same translation serves the test harness's
//! CBOR-to-JSON proxy in front of moto. JSON has no type information of its own, so [`from_json`]
//! types numbers by member name, as CloudWatch's model does: timestamps ([`TIMESTAMP_MEMBERS`]) become
//! tag 1, integers ([`INTEGER_MEMBERS`]) stay integers, every other number is a double (the SDK's
//! decoder refuses an integer where the model says `Double`).

use minicbor::data::{IanaTag, Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};

use super::{CwError, ErrorCode, Request};

/// `Content-Type` of requests and answers.
pub const CONTENT_TYPE: &str = "application/cbor";
/// Name of the header every request and answer carries.
pub const PROTOCOL_HEADER: &str = "smithy-protocol";
/// Its value.
pub const PROTOCOL: &str = "rpc-v2-cbor";
/// Nesting deeper than this is refused (CloudWatch's shapes nest at most 6 levels).
pub const MAX_DEPTH: usize = 32;

/// Members of CloudWatch's shapes that are timestamps (tag 1 on this wire, epoch seconds in JSON).
/// A list under one of these names (`Timestamps`) holds timestamps.
pub const TIMESTAMP_MEMBERS: &[&str] = &[
    "Timestamp",
    "Timestamps",
    "StartTime",
    "EndTime",
    "StartDate",
    "EndDate",
    "LastModified",
    "LastUpdateDate",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "AlarmConfigurationUpdatedTimestamp",
    "CreationDate",
];

/// Members of CloudWatch's shapes that are integers (every other number is a double).
pub const INTEGER_MEMBERS: &[&str] = &[
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "StorageResolution",
    "MaxDatapoints",
    "MaxRecords",
    "MaxResults",
    "MaxContributorCount",
    "Size",
    "Rank",
    "ApproximateUniqueCount",
];

fn serialization(msg: impl std::fmt::Display) -> CwError {
    CwError::new(ErrorCode::SerializationException, format!("Could not parse the CBOR request body: {msg}"))
}

/// Decodes a CBOR body into a JSON value: maps with text keys, arrays, text, numbers, booleans,
/// null; a tag 1 timestamp becomes its epoch seconds. An empty body is an empty map (an operation
/// without input members). Anything else (trailing bytes, non-text keys, blobs, other tags,
/// non-finite floats, truncated input) is a `SerializationException`.
pub fn to_json(body: &[u8]) -> Result<Value, CwError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut d = Decoder::new(body);
    let v = item(&mut d, 0)?;
    if d.position() != body.len() {
        return Err(serialization(format!("{} trailing bytes after the top-level item", body.len() - d.position())));
    }
    Ok(v)
}

fn err_at(d: &Decoder<'_>, e: impl std::fmt::Display) -> CwError {
    serialization(format!("{e} (at byte {})", d.position()))
}

/// A float as JSON. NaN and the infinities become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`,
/// as AWS JSON writes them (so the proxy forwards them as any JSON client would).
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn non_finite(v: &Value) -> Option<f64> {
    match v.as_str()? {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn item(d: &mut Decoder<'_>, depth: usize) -> Result<Value, CwError> {
    if depth > MAX_DEPTH {
        return Err(err_at(d, format!("nesting deeper than {MAX_DEPTH}")));
    }
    let ty = d.datatype().map_err(|e| err_at(d, e))?;
    let v = match ty {
        Type::Bool => Value::Bool(d.bool().map_err(|e| err_at(d, e))?),
        Type::Null => {
            d.null().map_err(|e| err_at(d, e))?;
            Value::Null
        }
        Type::Undefined => {
            d.undefined().map_err(|e| err_at(d, e))?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().map_err(|e| err_at(d, e))?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Value::from(d.i64().map_err(|e| err_at(d, e))?),
        Type::F16 | Type::F32 | Type::F64 => float(d.f64().map_err(|e| err_at(d, e))?),
        Type::String => Value::String(d.str().map_err(|e| err_at(d, e))?.to_owned()),
        Type::StringIndef => {
            let mut s = String::new();
            let mut chunks = d.str_iter().map_err(serialization)?;
            for chunk in chunks.by_ref() {
                s.push_str(chunk.map_err(serialization)?);
            }
            Value::String(s)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(|e| err_at(d, e))?;
            let mut out = Vec::new();
            match len {
                Some(n) => {
                    for _ in 0..n {
                        out.push(item(d, depth + 1)?);
                    }
                }
                None => {
                    while d.datatype().map_err(|e| err_at(d, e))? != Type::Break {
                        out.push(item(d, depth + 1)?);
                    }
                    d.skip().map_err(|e| err_at(d, e))?;
                }
            }
            Value::Array(out)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(|e| err_at(d, e))?;
            let mut out = Map::new();
            let mut entry = |d: &mut Decoder<'_>| -> Result<(), CwError> {
                let key = match item(d, depth + 1)? {
                    Value::String(k) => k,
                    other => return Err(err_at(d, format!("a map key must be text, not {other}"))),
                };
                let value = item(d, depth + 1)?;
                out.insert(key, value);
                Ok(())
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        entry(d)?;
                    }
                }
                None => {
                    while d.datatype().map_err(|e| err_at(d, e))? != Type::Break {
                        entry(d)?;
                    }
                    d.skip().map_err(|e| err_at(d, e))?;
                }
            }
            Value::Object(out)
        }
        Type::Tag => {
            let tag = d.tag().map_err(|e| err_at(d, e))?;
            if tag != Tag::from(IanaTag::Timestamp) {
                return Err(err_at(d, format!("unexpected tag {}", tag.as_u64())));
            }
            match item(d, depth + 1)? {
                Value::Number(n) => Value::Number(n),
                other => return Err(err_at(d, format!("a tag 1 timestamp must hold a number, not {other}"))),
            }
        }
        other => return Err(err_at(d, format!("unexpected CBOR item of type {other}"))),
    };
    Ok(v)
}

/// The kind of number a member holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Double,
    Integer,
    Timestamp,
}

fn kind_of(member: &str) -> Kind {
    if TIMESTAMP_MEMBERS.contains(&member) {
        Kind::Timestamp
    } else if INTEGER_MEMBERS.contains(&member) {
        Kind::Integer
    } else {
        Kind::Double
    }
}

/// Encodes a JSON value as CBOR, typing numbers by member name (see the module note). A timestamp
/// given as an RFC 3339 string (as some JSON services write them) is converted too.
pub fn from_json(v: &Value) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    write(&mut e, v, Kind::Double);
    e.into_writer()
}

/// `Vec<u8>` never fails to write: the encoder's results carry `Infallible`.
fn ok<T>(r: Result<T, minicbor::encode::Error<std::convert::Infallible>>) {
    let _ = r;
}

fn write(e: &mut Encoder<Vec<u8>>, v: &Value, kind: Kind) {
    match v {
        Value::Null => ok(e.null()),
        Value::Bool(b) => ok(e.bool(*b)),
        Value::Number(n) => number(e, n, kind),
        Value::String(s) if kind == Kind::Timestamp => match crate::time::parse_iso_ms(s) {
            Ok(ms) => timestamp(e, ms as f64 / 1000.0),
            Err(_) => ok(e.str(s)),
        },
        Value::String(s) => match (kind, non_finite(v)) {
            (Kind::Double, Some(f)) => ok(e.f64(f)),
            _ => ok(e.str(s)),
        },
        Value::Array(items) => {
            ok(e.array(items.len() as u64));
            for x in items {
                write(e, x, kind);
            }
        }
        Value::Object(m) => {
            ok(e.map(m.len() as u64));
            for (k, x) in m {
                ok(e.str(k));
                write(e, x, kind_of(k));
            }
        }
    }
}

fn timestamp(e: &mut Encoder<Vec<u8>>, secs: f64) {
    ok(e.tag(Tag::from(IanaTag::Timestamp)));
    if secs.fract() == 0.0 && secs.abs() < 9.0e15 {
        ok(e.i64(secs as i64));
    } else {
        ok(e.f64(secs));
    }
}

fn number(e: &mut Encoder<Vec<u8>>, n: &Number, kind: Kind) {
    match kind {
        Kind::Timestamp => timestamp(e, n.as_f64().unwrap_or_default()),
        Kind::Integer => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ok(e.i64(i)),
            (None, Some(u)) => ok(e.u64(u)),
            _ => ok(e.i64(n.as_f64().unwrap_or_default() as i64)),
        },
        Kind::Double => ok(e.f64(n.as_f64().unwrap_or_default())),
    }
}

/// Where a non-finite double sat in a PutMetricData request.
enum Slot {
    Value,
    Values(usize),
    Counts(usize),
    Statistic(&'static str),
}

/// Takes the non-finite doubles out of PutMetricData's numeric members (replacing them by 0), so that
/// the request decodes and then fails validation with CloudWatch's message for the real value.
fn take_non_finite(value: &mut Value) -> Vec<(usize, Slot, f64)> {
    let mut out = Vec::new();
    let Some(Value::Array(data)) = value.get_mut("MetricData") else { return out };
    for (i, datum) in data.iter_mut().enumerate() {
        let Value::Object(m) = datum else { continue };
        let take = |v: &mut Value, slot: Slot, out: &mut Vec<(usize, Slot, f64)>| {
            if let Some(f) = non_finite(v) {
                *v = Value::from(0.0);
                out.push((i, slot, f));
            }
        };
        if let Some(v) = m.get_mut("Value") {
            take(v, Slot::Value, &mut out);
        }
        for (key, list) in [("Values", true), ("Counts", false)] {
            if let Some(Value::Array(xs)) = m.get_mut(key) {
                for (j, v) in xs.iter_mut().enumerate() {
                    take(v, if list { Slot::Values(j) } else { Slot::Counts(j) }, &mut out);
                }
            }
        }
        if let Some(Value::Object(set)) = m.get_mut("StatisticValues") {
            for key in ["SampleCount", "Sum", "Minimum", "Maximum"] {
                if let Some(v) = set.get_mut(key) {
                    take(v, Slot::Statistic(key), &mut out);
                }
            }
        }
    }
    out
}

/// Decodes an RPC v2 CBOR request body for `operation` (the last path segment).
pub fn decode_request(operation: &str, body: &[u8]) -> Result<Request, CwError> {
    let mut value = to_json(body)?;
    if !value.is_object() {
        return Err(serialization("the body is not a CBOR map"));
    }
    let taken = if operation == "PutMetricData" { take_non_finite(&mut value) } else { Vec::new() };
    let mut req = super::json::decode_value(operation, value)?;
    if let Request::PutMetricData(put) = &mut req {
        for (i, slot, f) in taken {
            let Some(d) = put.metric_data.get_mut(i) else { continue };
            let target = match slot {
                Slot::Value => d.value.as_mut(),
                Slot::Values(j) => d.values.get_mut(j),
                Slot::Counts(j) => d.counts.get_mut(j),
                Slot::Statistic(k) => d.statistic_values.as_mut().map(|s| match k {
                    "SampleCount" => &mut s.sample_count,
                    "Sum" => &mut s.sum,
                    "Minimum" => &mut s.minimum,
                    _ => &mut s.maximum,
                }),
            };
            if let Some(t) = target {
                *t = f;
            }
        }
    }
    Ok(req)
}

/// Error body: `{"__type": "<shape id>", "message": "..."}` as a CBOR map.
pub fn encode_error(e: &CwError) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("__type".into(), Value::String(e.code.json_type().to_owned()));
    m.insert("message".into(), Value::String(e.message.clone()));
    from_json(&Value::Object(m))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_metric_data_round_trip_with_tag_1_timestamps() {
        let j = json!({"Namespace": "N", "MetricData": [{"MetricName": "m", "Timestamp": 1768471200.101,
            "Dimensions": [{"Name": "a", "Value": "b"}], "Values": [1.0, 2.5], "Counts": [3.0, 4.0],
            "Unit": "Count", "StorageResolution": 1},
            {"MetricName": "s", "Timestamp": 1768471200, "StatisticValues": {"SampleCount": 2.0, "Sum": 3.0, "Minimum": 1.0, "Maximum": 2.0}}]});
        let bytes = from_json(&j);
        // Timestamp: tag 1 (0xc1) then f64 (0xfb) / then an integer (0x1a: u32).
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0xfb]));
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0x1a]));
        let Request::PutMetricData(r) = decode_request("PutMetricData", &bytes).unwrap() else { panic!() };
        assert_eq!(r.metric_data[0].timestamp_ms, Some(1_768_471_200_101));
        assert_eq!(r.metric_data[1].timestamp_ms, Some(1_768_471_200_000));
        assert_eq!(r.metric_data[0].storage_resolution, Some(1));
        assert_eq!(r.metric_data[0].counts, vec![3.0, 4.0]);
        assert_eq!(to_json(&bytes).unwrap(), j);
    }

    #[test]
    fn doubles_stay_doubles_and_integers_integers() {
        let bytes = from_json(&json!({"Sum": 3, "Period": 60}));
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.map().unwrap(), Some(2));
        // serde_json's map is sorted: Period, then Sum.
        assert_eq!(d.str().unwrap(), "Period");
        assert_eq!(d.datatype().unwrap(), Type::U8);
        d.skip().unwrap();
        assert_eq!(d.str().unwrap(), "Sum");
        assert_eq!(d.datatype().unwrap(), Type::F64);
    }

    #[test]
    fn indefinite_lengths_and_small_floats() {
        // {_ "Namespace": (_ "N", "s"), "MetricData": [_ {"MetricName": "m", "Value": 1.5 (f16)}]}
        let mut e = Encoder::new(Vec::new());
        e.begin_map().unwrap();
        e.str("Namespace").unwrap().begin_str().unwrap().str("N").unwrap().str("s").unwrap().end().unwrap();
        e.str("MetricData").unwrap().begin_array().unwrap();
        e.map(2).unwrap().str("MetricName").unwrap().str("m").unwrap().str("Value").unwrap().f32(1.5).unwrap();
        e.end().unwrap().end().unwrap();
        let Request::PutMetricData(r) = decode_request("PutMetricData", e.writer()).unwrap() else { panic!() };
        assert_eq!(r.namespace, "Ns");
        assert_eq!(r.metric_data[0].value, Some(1.5));
    }

    #[test]
    fn malformed_bodies_are_serialization_exceptions() {
        for body in [&b"\xff"[..], b"\xa1", b"\xa1\x01\x02", b"\xa0\x00", b"\xc2\x41\x00", b"\x5f\x41", b"{}"] {
            let e = decode_request("PutMetricData", body).unwrap_err();
            assert_eq!(e.code, ErrorCode::SerializationException, "{body:?}: {e}");
        }
        let e = decode_request("PutMetricData", &from_json(&json!({"MetricData": []}))).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingParameter);
        let nan = {
            let mut e = Encoder::new(Vec::new());
            e.map(2).unwrap().str("Namespace").unwrap().str("N").unwrap().str("MetricData").unwrap();
            e.array(1).unwrap().map(2).unwrap().str("MetricName").unwrap().str("m").unwrap();
            e.str("Value").unwrap().f64(f64::NAN).unwrap();
            e.into_writer()
        };
        let Request::PutMetricData(r) = decode_request("PutMetricData", &nan).unwrap() else { panic!() };
        assert!(r.metric_data[0].value.unwrap().is_nan(), "decodes; validation refuses it as CloudWatch does");
        assert_eq!(to_json(&nan).unwrap()["MetricData"][0]["Value"], "NaN");
        let deep = [vec![0x81u8; 100], vec![0x00]].concat();
        assert_eq!(to_json(&deep).unwrap_err().code, ErrorCode::SerializationException);
    }

    #[test]
    fn error_body() {
        let b = encode_error(&CwError::invalid_value("x"));
        assert_eq!(
            to_json(&b).unwrap(),
            json!({"__type": "com.amazonaws.cloudwatch#InvalidParameterValueException", "message": "x"})
        );
    }

    #[test]
    fn rfc3339_timestamps_from_json_services() {
        let b = from_json(&json!({"Timestamps": ["2026-01-15T10:00:00Z", 1768471260]}));
        assert_eq!(to_json(&b).unwrap(), json!({"Timestamps": [1768471200, 1768471260]}));
    }
}
