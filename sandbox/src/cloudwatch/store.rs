//! What the embedded CloudWatch received: datums (with namespace and arrival time) and a log of
//! every request, behind one `std::sync::Mutex` that is never held across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};

use perfmon_protocol::cloudwatch::read::{
    self, GetMetricStatisticsInput, GetMetricStatisticsOutput, ListMetricsInput, ListMetricsOutput, MetricId,
};
use perfmon_protocol::cloudwatch::stats::MetricStatistics;
use perfmon_protocol::cloudwatch::{CwError, Dimension, MetricDatum};

/// One datum as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDatum {
    pub namespace: String,
    pub datum: MetricDatum,
    /// When the request arrived (epoch ms).
    pub arrival_ms: i64,
    /// Sequence number of the request that carried it (see [`RequestRecord::seq`]).
    pub request_seq: u64,
}

impl StoredDatum {
    /// The datum's `Timestamp`, or its arrival time when it had none (as CloudWatch does).
    pub fn timestamp_ms(&self) -> i64 {
        self.datum.timestamp_ms.unwrap_or(self.arrival_ms)
    }

    pub fn metric_id(&self) -> MetricId {
        MetricId::of(&self.namespace, &self.datum)
    }

    fn is(&self, namespace: &str, metric_name: &str) -> bool {
        self.namespace == namespace && self.datum.metric_name == metric_name
    }

    fn has_dimensions(&self, sorted: &[Dimension]) -> bool {
        if self.datum.dimensions.len() != sorted.len() {
            return false;
        }
        let mut mine = self.datum.dimensions.clone();
        mine.sort();
        mine == sorted
    }
}

/// Wire protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsQuery form (`aws-sdk-cloudwatch` ≤ 1.99.0, older boto3 and AWS CLI).
    Query,
    /// AWS JSON 1.0 (boto3 ≥ 1.42.7).
    Json,
    /// RPC v2 CBOR (`aws-sdk-cloudwatch` ≥ 1.100.0).
    Cbor,
    /// Anything else (wrong path, method, target).
    Unknown,
}

/// One request as the endpoint saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// 1, 2, 3… in arrival order.
    pub seq: u64,
    pub request_id: String,
    pub protocol: Protocol,
    /// `PutMetricData`, `ListMetrics`, `GetMetricStatistics`, or what the request named (None if nothing).
    pub operation: Option<String>,
    /// Body bytes on the wire (compressed, if it was).
    pub bytes: usize,
    /// Body bytes after `Content-Encoding: gzip` was undone (= `bytes` otherwise).
    pub decoded_bytes: usize,
    pub gzip: bool,
    pub status: u16,
    /// The error answered, if any (validation failure, injected fault, malformed request).
    pub error: Option<CwError>,
    /// Datums stored from this request (PutMetricData accepted).
    pub datums: usize,
    pub arrival_ms: i64,
    /// The snapshot epoch its connection was accepted in ([`super::CloudWatch::snapshot`]): a request
    /// of an earlier epoch than the request log's latest would have reused a connection from
    /// before a SnapStart snapshot.
    pub connection_epoch: u64,
}

/// A snapshot of the request log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestLog {
    pub records: Vec<RequestRecord>,
}

impl RequestLog {
    pub fn count(&self) -> usize {
        self.records.len()
    }

    /// Total body bytes on the wire.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.bytes).sum()
    }

    /// Requests answered with an error (any status ≥ 400).
    pub fn rejected(&self) -> Vec<&RequestRecord> {
        self.records.iter().filter(|r| r.status >= 400).collect()
    }

    /// PutMetricData requests (accepted or not).
    pub fn put_metric_data(&self) -> Vec<&RequestRecord> {
        self.records.iter().filter(|r| r.operation.as_deref() == Some("PutMetricData")).collect()
    }
}

#[derive(Debug, Default)]
struct Inner {
    datums: Vec<StoredDatum>,
    requests: Vec<RequestRecord>,
}

/// The datum store and request log. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores an accepted PutMetricData's datums (the endpoint does; the bench crate's simulator
    /// calls it in-process).
    pub fn insert(&self, namespace: &str, datums: Vec<MetricDatum>, arrival_ms: i64, request_seq: u64) {
        let mut inner = self.lock();
        inner.datums.extend(datums.into_iter().map(|datum| StoredDatum {
            namespace: namespace.to_owned(),
            datum,
            arrival_ms,
            request_seq,
        }));
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        self.lock().requests.push(record);
    }

    /// Every datum of `metric_name` in `namespace` (any dimensions), in arrival order.
    pub fn datums(&self, namespace: &str, metric_name: &str) -> Vec<StoredDatum> {
        self.lock().datums.iter().filter(|d| d.is(namespace, metric_name)).cloned().collect()
    }

    /// Every datum stored, in arrival order.
    pub fn all_datums(&self) -> Vec<StoredDatum> {
        self.lock().datums.clone()
    }

    /// Distinct metrics (namespace, name, dimension set), sorted; `None` = every namespace.
    pub fn list_metrics(&self, namespace: Option<&str>) -> Vec<MetricId> {
        let mut ids: Vec<MetricId> = self
            .lock()
            .datums
            .iter()
            .filter(|d| namespace.is_none_or(|ns| d.namespace == ns))
            .map(StoredDatum::metric_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Statistics of one metric (exact dimension set, any order) over all time; `None` if no sample.
    /// See [`perfmon_protocol::cloudwatch::stats`] for the percentile definition.
    pub fn statistics(&self, namespace: &str, metric_name: &str, dimensions: &[Dimension]) -> Option<MetricStatistics> {
        self.statistics_in(namespace, metric_name, dimensions, i64::MIN, i64::MAX)
    }

    /// Statistics of one metric over datums with `start_ms <= timestamp < end_ms`.
    pub fn statistics_in(
        &self,
        namespace: &str,
        metric_name: &str,
        dimensions: &[Dimension],
        start_ms: i64,
        end_ms: i64,
    ) -> Option<MetricStatistics> {
        let inner = self.lock();
        MetricStatistics::from_datums(
            matching(&inner, namespace, metric_name, dimensions, start_ms, end_ms).map(|d| &d.datum),
        )
    }

    /// Datums of one metric (exact dimension set, any order) with `start_ms <= timestamp < end_ms`,
    /// with their timestamps (the alarms' evaluation reads each metric once per tick).
    pub fn datums_in(
        &self,
        namespace: &str,
        metric_name: &str,
        dimensions: &[Dimension],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(i64, MetricDatum)> {
        let inner = self.lock();
        matching(&inner, namespace, metric_name, dimensions, start_ms, end_ms)
            .map(|d| (d.timestamp_ms(), d.datum.clone()))
            .collect()
    }

    /// A snapshot of the request log.
    pub fn requests(&self) -> RequestLog {
        RequestLog { records: self.lock().requests.clone() }
    }

    /// Forgets every datum and request.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.datums.clear();
        inner.requests.clear();
    }

    pub(crate) fn get_metric_statistics(&self, input: &GetMetricStatisticsInput) -> GetMetricStatisticsOutput {
        let mut dims = input.dimensions.clone();
        dims.sort();
        let inner = self.lock();
        read::get_metric_statistics(
            input,
            inner
                .datums
                .iter()
                .filter(|d| d.is(&input.namespace, &input.metric_name) && d.has_dimensions(&dims))
                .map(|d| (d.timestamp_ms(), &d.datum)),
        )
    }

    pub(crate) fn list(&self, input: &ListMetricsInput) -> Result<ListMetricsOutput, CwError> {
        let ids = self.list_metrics(input.namespace.as_deref());
        read::list_metrics(input, &ids)
    }
}

/// The stored datums of one metric (exact dimension set, any order) with
/// `start_ms <= timestamp < end_ms`, in arrival order: what `statistics_in` and `datums_in` read.
fn matching<'a>(
    inner: &'a Inner,
    namespace: &'a str,
    metric_name: &'a str,
    dimensions: &[Dimension],
    start_ms: i64,
    end_ms: i64,
) -> impl Iterator<Item = &'a StoredDatum> {
    let mut dims = dimensions.to_vec();
    dims.sort();
    inner
        .datums
        .iter()
        .filter(move |d| d.is(namespace, metric_name) && (start_ms..end_ms).contains(&d.timestamp_ms()))
        .filter(move |d| d.has_dimensions(&dims))
}
