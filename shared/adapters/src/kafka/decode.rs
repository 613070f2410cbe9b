//! Records as an MSK event source mapping delivers them: base64 keys and values, headers as
//! signed bytes, grouped by partition. Decoded here, once, in (topic, partition, offset) order.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use domain::WorkerError;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// When the record was produced (its timestamp), or now if it carries none (-1): the time
    /// its event times are checked against.
    pub fn received_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.timestamp_ms)
            .filter(|_| self.timestamp_ms > 0)
            .unwrap_or_else(Utc::now)
    }
}

/// A record that cannot be used, with the reason.
pub type Rejected = Box<(Record, WorkerError)>;

/// Every record of the event in (topic, partition, offset) order; records whose encoding is
/// broken come back as permanent errors carrying what could be read.
pub fn decode(event: &KafkaEvent) -> Vec<Result<Record, Rejected>> {
    let mut out: Vec<_> = event
        .records
        .iter()
        .flat_map(|(batch, raws)| raws.iter().map(move |raw| (batch, raw)))
        .map(|(batch, raw)| {
            // The event groups records under "<topic>-<partition>": a record that leaves its
            // topic out is still dead-lettered next to its own.
            let topic = raw.topic.clone().unwrap_or_else(|| {
                batch
                    .rsplit_once('-')
                    .map_or(batch.as_str(), |(topic, _)| topic)
                    .to_owned()
            });
            let partition = i32::try_from(raw.partition);
            let headers = raw
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(name, bytes)| (name.clone(), bytes.iter().map(|b| *b as u8).collect()))
                .collect();
            let key = raw.key.as_deref().map(|k| BASE64.decode(k));
            let value = raw.value.as_deref().map(|v| BASE64.decode(v));
            let mut record = Record {
                topic,
                partition: partition.unwrap_or(-1),
                offset: raw.offset,
                timestamp_ms: raw.timestamp.0.timestamp_millis(),
                key: None,
                value: Vec::new(),
                headers,
            };
            if partition.is_err() {
                let reason = WorkerError::out_of_range(format_args!(
                    "partition {} is not a Kafka partition",
                    raw.partition
                ));
                return Err(Box::new((record, reason)));
            }
            match (key.transpose(), value) {
                (Ok(key), Some(Ok(value))) => {
                    record.key = key;
                    record.value = value;
                    Ok(record)
                }
                (_, None) => {
                    let reason = WorkerError::missing("record has no value");
                    Err(Box::new((record, reason)))
                }
                (Err(err), _) | (_, Some(Err(err))) => {
                    record.value = raw.value.clone().unwrap_or_default().into_bytes();
                    let reason = WorkerError::malformed(format_args!("invalid base64: {err}"));
                    Err(Box::new((record, reason)))
                }
            }
        })
        .collect();
    // Sort by reference: this runs over every record of large batches.
    fn position(r: &Result<Record, Rejected>) -> (&str, i32, i64) {
        let r = match r {
            Ok(r) => r,
            Err(rejected) => &rejected.0,
        };
        (r.topic.as_str(), r.partition, r.offset)
    }
    out.sort_unstable_by(|a, b| position(a).cmp(&position(b)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_decoded_in_partition_and_offset_order() {
        let event: KafkaEvent = serde_json::from_value(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {
                "t-1": [
                    {"topic": "t", "partition": 1, "offset": 9, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "value": "eyJhIjoxfQ==",
                     "headers": [{"trace": [104, 105]}]}
                ],
                "t-0": [
                    {"topic": "t", "partition": 0, "offset": 5, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "key": "azE=", "value": "!!!", "headers": []},
                    {"topic": "t", "partition": 0, "offset": 4, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "headers": []}
                ]
            }
        }))
        .expect("valid event");
        let decoded = decode(&event);
        let offsets: Vec<i64> = decoded
            .iter()
            .map(|r| match r {
                Ok(r) => r.offset,
                Err(rejected) => rejected.0.offset,
            })
            .collect();
        assert_eq!(offsets, [4, 5, 9]);
        assert!(matches!(&decoded[0], Err(r) if r.1.to_string().contains("no value")));
        assert!(matches!(&decoded[1], Err(r) if r.1.to_string().contains("invalid base64")));
        let ok = decoded[2].as_ref().expect("valid record");
        assert_eq!(ok.value, br#"{"a":1}"#);
        assert_eq!(ok.headers, [("trace".to_owned(), b"hi".to_vec())]);
    }

    #[test]
    fn a_record_without_its_topic_or_with_an_impossible_partition_is_still_placed() {
        let event: KafkaEvent = serde_json::from_value(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {
                "budget-management-3": [
                    {"partition": 3, "offset": 1, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "value": "e30=", "headers": []},
                    {"topic": "budget-management", "partition": 1_099_511_627_776_i64,
                     "offset": 2, "timestamp": 1700000000000_i64,
                     "timestampType": "CREATE_TIME", "value": "e30=", "headers": []}
                ]
            }
        }))
        .expect("valid event");
        let decoded = decode(&event);
        let placed = decoded
            .iter()
            .find_map(|r| r.as_ref().ok())
            .expect("a record without its topic is decoded");
        assert_eq!(
            (placed.topic.as_str(), placed.offset),
            ("budget-management", 1)
        );
        let (record, reason) = &**decoded
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("an impossible partition is refused");
        assert!(
            reason.to_string().contains("not a Kafka partition"),
            "{reason}"
        );
        assert_eq!(record.topic, "budget-management");
    }
}
