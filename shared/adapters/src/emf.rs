//! CloudWatch Embedded Metric Format: a metric is a JSON log line that CloudWatch turns into a
//! metric, with no API call and no extra latency in the handler.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::io::Write as _;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "AdWorkers";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Percent,
    CountPerSecond,
    /// A ratio or score without a unit (precision, recall).
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Percent => "Percent",
            Self::CountPerSecond => "Count/Second",
            Self::None => "None",
        }
    }
}

/// One EMF document: a set of metrics sharing one set of dimensions.
#[derive(Debug, Clone)]
pub struct Metrics {
    dimensions: Vec<(String, String)>,
    values: Vec<(String, f64, Unit)>,
}

impl Metrics {
    /// Metrics dimensioned by the function's name.
    pub fn for_function(function: impl Into<String>) -> Self {
        Self {
            dimensions: vec![("FunctionName".to_owned(), function.into())],
            values: Vec::new(),
        }
    }

    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    pub fn put(&mut self, name: impl Into<String>, value: f64, unit: Unit) -> &mut Self {
        self.values.push((name.into(), value, unit));
        self
    }

    /// The EMF document at the given Unix time in milliseconds.
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(n, _)| n.as_str()).collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            doc.insert(name.clone(), Value::from(value.as_str()));
        }
        for (name, value, _) in &self.values {
            doc.insert(name.clone(), json!(value));
        }
        Value::Object(doc)
    }

    /// Writes the document as one line on stdout, where the Lambda log agent picks it up.
    pub fn emit(&self) {
        if self.values.is_empty() {
            return;
        }
        let line = self.to_json(chrono::Utc::now().timestamp_millis());
        // One locked write keeps the line whole even if logs are written concurrently.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_follows_the_emf_specification() {
        let mut metrics = Metrics::for_function("webtoon-sync").dimension("Queue", "create");
        metrics
            .put("Processed", 3.0, Unit::Count)
            .put("Duration", 12.5, Unit::Milliseconds);
        let doc = metrics.to_json(1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["FunctionName", "Queue"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "Duration", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["FunctionName"], "webtoon-sync");
        assert_eq!(doc["Queue"], "create");
        assert_eq!(doc["Processed"], 3.0);
    }
}
