//! CloudWatch Embedded Metric Format: one JSON document per stdout line (docs/reference.md §16.4).
//!
//! Lambda sends an extension's stdout to the function's log group line by line, and CloudWatch
//! extracts the metrics; no API call, no `cloudwatch:PutMetricData` permission.
//!
//! Limits kept: `_aws.Timestamp` in epoch ms, ≤ [`MAX_METRICS_PER_LINE`] metrics per directive, ≤
//! [`MAX_VALUES_PER_ARRAY`] values per metric array, dimension values as strings, and lines well
//! under the 256 KB document limit ([`MAX_VALUES_PER_LINE`]).
//!
//! EMF has no `Counts`. A distribution bucket holding `c` samples is written as its value repeated
//! `c` times (the bucket mean, so the values still sum to the exact sum and the sample count is
//! exact); when a metric has more than 100 values they continue on the next lines. A counter is
//! written as its sum (one value per line it appears in), a gauge as its last value.

use std::io::Write;

use perfmon_protocol::cloudwatch::MetricDatum;

pub const MAX_METRICS_PER_LINE: usize = 100;
pub const MAX_VALUES_PER_ARRAY: usize = 100;
/// Values per line over all its metrics (about 75 KB at most).
pub const MAX_VALUES_PER_LINE: usize = 3_000;

/// The lines for a set of datums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmfBatch {
    pub lines: Vec<String>,
    /// Datums written.
    pub datums: usize,
    /// Datums that cannot be expressed in EMF (metric named like one of its dimensions, or `_aws`).
    pub dropped: usize,
}

struct Entry<'a> {
    name: &'a str,
    unit: Option<&'a str>,
    resolution: Option<i32>,
    /// All its values; written [`MAX_VALUES_PER_ARRAY`] at a time, chunk `next` next.
    values: Vec<f64>,
    next: usize,
}

impl Entry<'_> {
    fn chunks(&self) -> usize {
        self.values.len().div_ceil(MAX_VALUES_PER_ARRAY)
    }

    fn chunk(&self, i: usize) -> &[f64] {
        let start = i * MAX_VALUES_PER_ARRAY;
        &self.values[start..(start + MAX_VALUES_PER_ARRAY).min(self.values.len())]
    }
}

/// Appends the values `d` is written as.
fn expand(d: &MetricDatum, out: &mut Vec<f64>) {
    if let Some(s) = &d.statistic_values {
        out.push(s.sum);
    } else if !d.values.is_empty() {
        for (i, v) in d.values.iter().enumerate() {
            let c = d.counts.get(i).copied().unwrap_or(1.0).round().max(0.0) as usize;
            out.extend(std::iter::repeat_n(*v, c));
        }
    } else {
        out.extend(d.value);
    }
}

/// A datum's dimensions as (name, value) pairs, for ordering documents.
fn pairs(d: &MetricDatum) -> impl Iterator<Item = (&str, &str)> {
    d.dimensions.iter().map(|x| (x.name.as_str(), x.value.as_str()))
}

/// Encodes `datums` as EMF lines (without the newline).
pub fn encode(namespace: &str, datums: &[MetricDatum]) -> EmfBatch {
    // Documents share one timestamp and one set of dimension values: the datums in order of
    // (timestamp, dimension pairs), in their order of arrival within each (a stable sort).
    let key = |d: &&MetricDatum| d.timestamp_ms.unwrap_or(0);
    let mut order: Vec<&MetricDatum> = datums.iter().collect();
    order.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| pairs(a).cmp(pairs(b))));
    let mut out = EmfBatch::default();
    for group in order.chunk_by(|a, b| key(a) == key(b) && pairs(a).eq(pairs(b))) {
        let Some(first) = group.first() else { continue };
        let ts = key(first);
        let dims: Vec<(&str, &str)> = pairs(first).collect();
        let mut entries: Vec<Entry<'_>> = Vec::new();
        for d in group {
            let name = d.metric_name.as_str();
            if name == "_aws" || dims.iter().any(|(k, _)| *k == name) {
                out.dropped += 1;
                continue;
            }
            out.datums += 1;
            let unit = d.unit.as_deref();
            // Datums of the same metric (a wide histogram split in several) share an entry.
            match entries.iter_mut().find(|e| e.name == name && e.unit == unit && e.resolution == d.storage_resolution)
            {
                Some(e) => expand(d, &mut e.values),
                None => {
                    let mut values = Vec::new();
                    expand(d, &mut values);
                    entries.push(Entry { name, unit, resolution: d.storage_resolution, values, next: 0 });
                }
            }
        }
        let dim_names: Vec<&str> = dims.iter().map(|(k, _)| *k).collect();
        while entries.iter().any(|e| e.next < e.chunks()) {
            // The document's members: each metric's values and each dimension's value, then `_aws`
            // with the metric definitions (a metric appears once per line).
            let mut chosen: Vec<usize> = Vec::new();
            let mut values_in_line = 0;
            for i in 0..entries.len() {
                let e = &entries[i];
                if e.next >= e.chunks()
                    || chosen.len() >= MAX_METRICS_PER_LINE
                    || chosen.iter().any(|&j| entries[j].name == e.name)
                {
                    continue;
                }
                let n = e.chunk(e.next).len();
                if values_in_line > 0 && values_in_line + n > MAX_VALUES_PER_LINE {
                    continue;
                }
                values_in_line += n;
                entries[i].next += 1;
                chosen.push(i);
            }
            let defs: Vec<&Entry<'_>> = chosen.iter().map(|&i| &entries[i]).collect();
            let mut members: Vec<(&str, Member<'_>)> = Vec::with_capacity(defs.len() + dims.len() + 1);
            for e in &defs {
                members.push((e.name, Member::Values(e.chunk(e.next - 1))));
            }
            for (k, v) in &dims {
                members.push((k, Member::Dimension(v)));
            }
            members.push(("_aws", Member::Aws));
            out.lines.push(document(&mut members, namespace, ts, &dim_names, &defs));
        }
    }
    out
}

/// A member of an EMF document.
enum Member<'a> {
    Values(&'a [f64]),
    Dimension(&'a str),
    Aws,
}

/// One document as a JSON line, members in key order (as `serde_json::Map` orders them), written
/// straight into the line: no `serde_json::Value` tree per document. Strings and numbers go through
/// serde_json's own serializer, so escapes and number forms are serde_json's.
fn document(
    members: &mut [(&str, Member<'_>)],
    namespace: &str,
    ts: i64,
    dim_names: &[&str],
    defs: &[&Entry<'_>],
) -> String {
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut w: Vec<u8> = Vec::with_capacity(256 + 24 * members.len());
    w.push(b'{');
    for (i, (key, member)) in members.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        json(&mut w, key);
        w.push(b':');
        match member {
            Member::Values([one]) => json(&mut w, one),
            Member::Values(values) => json(&mut w, values),
            Member::Dimension(v) => json(&mut w, v),
            Member::Aws => {
                // Keys in order: CloudWatchMetrics, Timestamp; Dimensions, Metrics, Namespace; Name,
                // StorageResolution, Unit.
                w.extend_from_slice(br#"{"CloudWatchMetrics":[{"Dimensions":["#);
                json(&mut w, dim_names);
                w.extend_from_slice(br#"],"Metrics":["#);
                for (j, e) in defs.iter().enumerate() {
                    if j > 0 {
                        w.push(b',');
                    }
                    w.extend_from_slice(br#"{"Name":"#);
                    json(&mut w, e.name);
                    if let Some(r) = e.resolution {
                        w.extend_from_slice(br#","StorageResolution":"#);
                        json(&mut w, &r);
                    }
                    if let Some(u) = e.unit {
                        w.extend_from_slice(br#","Unit":"#);
                        json(&mut w, u);
                    }
                    w.push(b'}');
                }
                w.extend_from_slice(br#"],"Namespace":"#);
                json(&mut w, namespace);
                w.extend_from_slice(br#"}],"Timestamp":"#);
                json(&mut w, &ts);
                w.push(b'}');
            }
        }
    }
    w.push(b'}');
    // Only serde_json's output and ASCII went in.
    String::from_utf8(w).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `value` as JSON (serde_json's serializer; writing into a `Vec` cannot fail, and these
/// values (strings, finite numbers) always serialize).
fn json<T: serde::Serialize + ?Sized>(w: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *w, value);
}

/// Writes `lines` to stdout, one per line, and flushes (before `/next`: a frozen process's
/// buffered output would wait for the thaw).
pub fn write_lines(lines: &[String]) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for l in lines {
        w.write_all(l.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::aggregate::{Aggregator, Kind, Limits, MetricSample, Resolution};
    use serde_json::Value;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_767_225_600_000;

    /// Checks every EMF rule on one line and returns (metric name → values).
    fn check_line(line: &str) -> (i64, BTreeMap<String, Vec<f64>>) {
        assert!(!line.contains('\n'));
        assert!(line.len() < 256 * 1024);
        let v: Value = serde_json::from_str(line).unwrap();
        let aws = &v["_aws"];
        let ts = aws["Timestamp"].as_i64().unwrap();
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert_eq!(d["Namespace"], "NS");
        let sets = d["Dimensions"].as_array().unwrap();
        assert!(!sets.is_empty());
        for set in sets {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30);
            for k in set {
                assert!(v[k.as_str().unwrap()].is_string(), "dimension {k} must be a string member");
            }
        }
        let metrics = d["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        let mut out = BTreeMap::new();
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            let vals: Vec<f64> = match &v[name] {
                Value::Number(n) => vec![n.as_f64().unwrap()],
                Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                other => panic!("{name}: {other}"),
            };
            assert!(!vals.is_empty() && vals.len() <= 100, "{name}: {}", vals.len());
            assert!(out.insert(name.to_owned(), vals).is_none());
        }
        (ts, out)
    }

    #[test]
    fn sums_and_counts_survive_and_limits_hold() {
        let mut a = Aggregator::new(Limits::default(), vec![("FunctionName".into(), "fn".into())]);
        // 250 Duration samples over many buckets, 50 invocations, 120 distinct metrics, a gauge.
        for i in 0..250 {
            let v = 1.0 + f64::from(i) * 0.37;
            a.record(MetricSample::new("Duration", "Milliseconds", Kind::Distribution, v, NOW), NOW).unwrap();
        }
        for _ in 0..50 {
            a.record(MetricSample::new("Invocations", "Count", Kind::Counter, 1.0, NOW), NOW).unwrap();
        }
        for i in 0..120 {
            a.record(MetricSample::new(format!("M{i}"), "None", Kind::Distribution, 2.0, NOW), NOW).unwrap();
        }
        let mut hi = MetricSample::new("Hi", "None", Kind::Gauge, 7.0, NOW + 1500);
        hi.resolution = Resolution::High;
        a.record(hi, NOW).unwrap();
        let datums = a.drain();
        let emf = encode("NS", &datums);
        assert_eq!(emf.datums, datums.len());
        assert_eq!(emf.dropped, 0);
        let mut totals: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for l in &emf.lines {
            let (_, ms) = check_line(l);
            for (k, vals) in ms {
                let t = totals.entry(k).or_default();
                t.0 += vals.iter().sum::<f64>();
                t.1 += vals.len();
            }
        }
        let exact: f64 = (0..250).map(|i| 1.0 + f64::from(i) * 0.37).sum();
        assert!((totals["Duration"].0 - exact).abs() < 1e-6, "{} vs {exact}", totals["Duration"].0);
        assert_eq!(totals["Duration"].1, 250);
        assert_eq!(totals["Invocations"], (50.0, 1));
        assert_eq!(totals["Hi"], (7.0, 1));
        assert_eq!(totals.len(), 123);
        // 250 values need 3 lines; 123 metrics need 2 lines; the high-resolution gauge has its own time.
        assert_eq!(emf.lines.len(), 4);
        assert!(emf.lines.iter().any(|l| l.contains(r#""StorageResolution":1"#)));
    }

    // The encoder as it was, on `serde_json::Value` documents, with its own entries and values: the
    // reference for the one above (`writes_what_the_value_encoder_wrote`).
    struct RefEntry<'a> {
        name: &'a str,
        unit: Option<&'a str>,
        resolution: Option<i32>,
        chunks: Vec<Vec<f64>>,
        next: usize,
    }

    fn ref_expand(d: &MetricDatum) -> Vec<f64> {
        if let Some(s) = &d.statistic_values {
            return vec![s.sum];
        }
        if !d.values.is_empty() {
            let mut out = Vec::new();
            for (i, v) in d.values.iter().enumerate() {
                let c = d.counts.get(i).copied().unwrap_or(1.0).round().max(0.0) as usize;
                out.extend(std::iter::repeat_n(*v, c));
            }
            return out;
        }
        d.value.into_iter().collect()
    }

    fn reference(namespace: &str, datums: &[MetricDatum]) -> EmfBatch {
        // Documents share one timestamp and one set of dimension values.
        type Group<'a> = (i64, Vec<(&'a str, &'a str)>);
        let mut groups: BTreeMap<Group<'_>, Vec<&MetricDatum>> = BTreeMap::new();
        for d in datums {
            let dims: Vec<(&str, &str)> = d.dimensions.iter().map(|x| (x.name.as_str(), x.value.as_str())).collect();
            groups.entry((d.timestamp_ms.unwrap_or(0), dims)).or_default().push(d);
        }
        let mut out = EmfBatch::default();
        for ((ts, dims), ds) in groups {
            let mut entries: Vec<RefEntry<'_>> = Vec::new();
            for d in ds {
                let name = d.metric_name.as_str();
                if name == "_aws" || dims.iter().any(|(k, _)| *k == name) {
                    out.dropped += 1;
                    continue;
                }
                out.datums += 1;
                let unit = d.unit.as_deref();
                let values = ref_expand(d);
                let chunks: Vec<Vec<f64>> = values.chunks(MAX_VALUES_PER_ARRAY).map(<[f64]>::to_vec).collect();
                // Datums of the same metric (a wide histogram split in several) share an entry.
                match entries
                    .iter_mut()
                    .find(|e| e.name == name && e.unit == unit && e.resolution == d.storage_resolution)
                {
                    Some(e) => {
                        let mut all: Vec<f64> = e.chunks.drain(..).flatten().collect();
                        all.extend(values);
                        e.chunks = all.chunks(MAX_VALUES_PER_ARRAY).map(<[f64]>::to_vec).collect();
                    }
                    None => entries.push(RefEntry { name, unit, resolution: d.storage_resolution, chunks, next: 0 }),
                }
            }
            while entries.iter().any(|e| e.next < e.chunks.len()) {
                let mut metrics: Vec<serde_json::Value> = Vec::new();
                let mut doc = serde_json::Map::new();
                let mut values_in_line = 0;
                for e in entries.iter_mut() {
                    if e.next >= e.chunks.len() || metrics.len() >= MAX_METRICS_PER_LINE || doc.contains_key(e.name) {
                        continue;
                    }
                    let chunk = &e.chunks[e.next];
                    if values_in_line > 0 && values_in_line + chunk.len() > MAX_VALUES_PER_LINE {
                        continue;
                    }
                    values_in_line += chunk.len();
                    e.next += 1;
                    let mut def = serde_json::Map::new();
                    def.insert("Name".into(), serde_json::json!(e.name));
                    if let Some(u) = e.unit {
                        def.insert("Unit".into(), serde_json::json!(u));
                    }
                    if let Some(r) = e.resolution {
                        def.insert("StorageResolution".into(), serde_json::json!(r));
                    }
                    metrics.push(serde_json::Value::Object(def));
                    let v = if chunk.len() == 1 { serde_json::json!(chunk[0]) } else { serde_json::json!(chunk) };
                    doc.insert(e.name.to_owned(), v);
                }
                let dim_names: Vec<&str> = dims.iter().map(|(k, _)| *k).collect();
                for (k, v) in &dims {
                    doc.insert((*k).to_owned(), serde_json::json!(v));
                }
                doc.insert(
                    "_aws".into(),
                    serde_json::json!({
                        "Timestamp": ts,
                        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [dim_names], "Metrics": metrics}],
                    }),
                );
                out.lines.push(serde_json::Value::Object(doc).to_string());
            }
        }
        out
    }

    fn datum() -> impl proptest::strategy::Strategy<Value = MetricDatum> {
        use perfmon_protocol::cloudwatch::{Dimension, StatisticSet};
        use proptest::prelude::*;
        let name = prop::sample::select(vec!["Duration", "X", "_aws", "FunctionName", "é \"q\" \\ \u{1}", "M"]);
        let unit = prop::option::of(prop::sample::select(vec!["Milliseconds", "Count", "None"]));
        let dims = prop::sample::select(vec![
            vec![],
            vec![("FunctionName", "fn")],
            vec![("FunctionName", "fn"), ("Route", "GET /a\"b")],
            vec![("A", "1"), ("X", "2")],
        ]);
        let values = prop::collection::vec((-1e6f64..1e6, 1u32..4), 0..130);
        let shape = 0u8..3;
        (name, unit, dims, values, shape, prop::option::of(prop::sample::select(vec![1, 60])), 0i64..3).prop_map(
            |(name, unit, dims, values, shape, resolution, ts)| {
                let mut d = MetricDatum {
                    metric_name: name.to_owned(),
                    unit: unit.map(str::to_owned),
                    dimensions: dims.iter().map(|(k, v)| Dimension::new(*k, *v)).collect(),
                    timestamp_ms: Some(NOW + ts * 1000),
                    storage_resolution: resolution,
                    ..MetricDatum::default()
                };
                match shape {
                    0 => d.value = values.first().map(|v| v.0).or(Some(0.25)),
                    1 => {
                        d.values = values.iter().map(|v| v.0).collect();
                        d.counts = values.iter().map(|v| f64::from(v.1)).collect();
                    }
                    _ => {
                        let sum = values.iter().map(|v| v.0).sum();
                        d.statistic_values = Some(StatisticSet { sample_count: 3.0, sum, minimum: -1.0, maximum: 1.0 });
                    }
                }
                d
            },
        )
    }

    proptest::proptest! {
        /// Byte for byte the lines (and counts) of the `serde_json::Value` encoder, on datums with
        /// escapes, shared names, split arrays, several groups and dropped names.
        #[test]
        fn writes_what_the_value_encoder_wrote(datums in proptest::collection::vec(datum(), 0..40)) {
            let new = encode("N\"S", &datums);
            let old = reference("N\"S", &datums);
            proptest::prop_assert_eq!(new, old);
        }
    }

    #[test]
    fn metric_named_like_a_dimension_is_dropped_and_counted() {
        let d = MetricDatum {
            metric_name: "FunctionName".into(),
            dimensions: vec![perfmon_protocol::cloudwatch::Dimension::new("FunctionName", "fn")],
            value: Some(1.0),
            timestamp_ms: Some(NOW),
            ..MetricDatum::default()
        };
        let emf = encode("NS", &[d]);
        assert_eq!((emf.datums, emf.dropped, emf.lines.len()), (0, 1, 0));
    }

    #[test]
    fn same_name_different_unit_goes_to_separate_lines() {
        let mk = |unit: &str| MetricDatum {
            metric_name: "X".into(),
            unit: Some(unit.into()),
            value: Some(1.0),
            timestamp_ms: Some(NOW),
            ..MetricDatum::default()
        };
        let emf = encode("NS", &[mk("Count"), mk("Bytes")]);
        assert_eq!(emf.lines.len(), 2);
        for l in &emf.lines {
            check_line(l);
        }
    }
}
