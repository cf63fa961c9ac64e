//! Embedded CloudWatch endpoint (PutMetricData, ListMetrics, GetMetricStatistics).
