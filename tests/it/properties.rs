//! Property tests of every Kafka consumer (performance-metrics, quality-score, budget-sync,
//! coupon-issue) and of webtoon-sync, against the real stack: PostgreSQL, the Kafka broker,
//! Redis and the local AWS endpoint.
//!
//! Each case is one batch mixing good records (valid samples with distinct ids, one effect each)
//! with bad ones whose value, key and headers are arbitrary bytes: invalid UTF-8, NUL, JSON
//! that is not an object, strings up to 64 KiB, valid records with a field broken, keys past
//! the dead-letter key budget, headers named like ours. On a fresh database:
//! - the invocation succeeds and every good record's effect is stored, as the domain parser
//!   (and, for coupons, the domain's decision) says it should be;
//! - every bad record is refused. Kafka: it is in `kafka_dead_letters` once for the consumer,
//!   sent, with the parser's reason made storable, and on the dead-letter topic once, carrying
//!   its bytes (inline, or behind an S3 claim check), its own headers and ours. SQS: it is
//!   reported in `batchItemFailures`, and only it;
//! - the same batch again, then twice at once from two instances, changes nothing: the same
//!   rows, counters, completions and dead letters.
//!
//! Budget: every case hits the real stack (a database of its own, topics, four invocations), so
//! each function runs `PROPTEST_CASES` cases, 6 unless set, and a failure is shrunk at most
//! `PROPTEST_MAX_SHRINK_ITERS` times, 8 unless set. No regressions file is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use adapters::kafka::{CLAIM_CHECK_HEADER, ClaimedRecord, KafkaBatchSummary};
use anyhow::{Context as _, bail, ensure};
use aws_lambda_events::event::kafka::KafkaEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use domain::text::{MAX_TEXT_BYTES, storable};
use integration_tests::{
    Fixture, RedisServer, TestAws, TestDb, create_topics, failed_ids, kafka_brokers, local_s3,
    redelivered, unique,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

/// Cases per function when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 6;
/// Shrinking steps after a failure when `PROPTEST_MAX_SHRINK_ITERS` is not set: each one is a
/// whole case against the stack.
const DEFAULT_SHRINK_ITERS: u32 = 8;
/// The longest a dead letter may take to be read back.
const READ_WAIT: Duration = Duration::from_secs(15);
/// How long to wait for a dead letter that should not be there.
const LINGER: Duration = Duration::from_millis(1_500);

fn config() -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_none() {
        config.max_shrink_iters = DEFAULT_SHRINK_ITERS;
    }
    config
}

/// Builds `world` once, then runs `case` on each generated input, on one Tokio runtime.
fn run_cases<W, S>(
    world: impl Future<Output = anyhow::Result<W>>,
    strategy: S,
    case: impl AsyncFn(&W, S::Value) -> anyhow::Result<()>,
) where
    S: Strategy,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let world = runtime
        .block_on(world)
        .expect("the test's resources (is the stack up? make up)");
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |input| {
        runtime
            .block_on(case(&world, input))
            .map_err(|err| TestCaseError::fail(format!("{err:#}")))
    });
    runtime.block_on(async move { drop(world) });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

// ---------------------------------------------------------------------------------------------
// Generated input

/// Bytes as a short escaped string, so a failing case prints readably.
fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 120;
    let escaped: String = bytes
        .iter()
        .take(SHOWN)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > SHOWN {
        format!("b\"{escaped}\"… ({} bytes)", bytes.len())
    } else {
        format!("b\"{escaped}\"")
    }
}

/// One Kafka record of a generated batch.
#[derive(Clone, PartialEq, Eq)]
struct Rec {
    value: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (format!("{:?}", storable(name)), show(value)))
            .collect();
        f.debug_struct("Rec")
            .field("value", &format_args!("{}", show(&self.value)))
            .field("key", &format_args!("{:?}", self.key.as_deref().map(show)))
            .field("headers", &headers)
            .finish()
    }
}

/// A batch: good and bad records, and where each one goes.
#[derive(Clone, Debug)]
struct Batch {
    good: Vec<Rec>,
    bad: Vec<Rec>,
    /// (partition, record) in delivery order; records index `good` then `bad`.
    order: Vec<(i32, usize)>,
    first_offset: i64,
}

/// A record at its place in the event.
struct Placed<'a> {
    rec: &'a Rec,
    good: bool,
    partition: i32,
    offset: i64,
}

impl Batch {
    fn placed(&self) -> Vec<Placed<'_>> {
        let mut next: HashMap<i32, i64> = HashMap::new();
        self.order
            .iter()
            .map(|&(partition, i)| {
                let offset = next.entry(partition).or_insert(self.first_offset);
                let placed = Placed {
                    rec: self
                        .good
                        .get(i)
                        .unwrap_or_else(|| &self.bad[i - self.good.len()]),
                    good: i < self.good.len(),
                    partition,
                    offset: *offset,
                };
                *offset += 1;
                placed
            })
            .collect()
    }
}

/// Good and bad records shuffled over three partitions.
fn batch(
    good: impl Strategy<Value = Vec<Rec>>,
    bad: impl Strategy<Value = Vec<Rec>>,
) -> impl Strategy<Value = Batch> {
    (good, bad).prop_flat_map(|(good, bad)| {
        let n = good.len() + bad.len();
        (
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            vec(0_i32..3, n),
            0_i64..1_000_000,
        )
            .prop_map(move |(shuffled, partitions, first_offset)| Batch {
                good: good.clone(),
                bad: bad.clone(),
                order: partitions.into_iter().zip(shuffled).collect(),
                first_offset,
            })
    })
}

fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => any::<char>(),
        1 => prop::sample::select(vec![
            '\0', '\u{1}', '\u{7f}', '\u{85}', '\u{200b}', '\u{feff}', '\u{fffd}', '가', '😀',
            '\u{10ffff}', '"', '\\', '\n',
        ]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => vec(tricky_char(), 0..16).prop_map(String::from_iter),
        1 => (tricky_char(), 100_usize..2_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// Arbitrary JSON: nested objects and arrays, strings with NUL and unicode, numbers huge,
/// negative and fractional.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-20.0_f64..20.0).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((text(), inner), 0..4).prop_map(|f| Value::Object(f.into_iter().collect())),
        ]
    })
}

/// `sample` with one or two of its fields replaced by arbitrary JSON or removed.
fn almost_valid(sample: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let fields: Map<String, Value> = serde_json::from_str(sample).unwrap_or_default();
    let names: Vec<String> = fields.keys().cloned().collect();
    let change = (
        prop::sample::select(names),
        prop::option::weighted(0.8, json_value()),
    );
    vec(change, 1..=2).prop_map(move |changes| {
        let mut fields = fields.clone();
        for (name, value) in changes {
            match value {
                Some(value) => fields.insert(name, value),
                None => fields.remove(&name),
            };
        }
        Value::Object(fields).to_string().into_bytes()
    })
}

/// Values a parser must refuse: arbitrary bytes, invalid UTF-8 or NUL inside a record, JSON
/// that is not an object, up to 64 KiB of one byte, a valid record with fields broken. Those
/// `accepts` takes (a broken field can still be valid) are left out.
fn bad_value(
    sample: &'static str,
    accepts: impl Fn(&[u8]) -> bool + 'static,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..512),
        1 => vec(any::<u8>(), 0..8)
            .prop_map(move |junk| [&b"\xff\xfe"[..], &junk, sample.as_bytes()].concat()),
        1 => (any::<prop::sample::Index>(), vec(any::<u8>(), 1..4)).prop_map(move |(at, junk)| {
            let mut value = sample.as_bytes().to_vec();
            let at = at.index(value.len() + 1);
            value.splice(at..at, junk);
            value
        }),
        1 => Just(sample.replacen(": ", ": \"\\u0000\", \"x\": ", 1).into_bytes()),
        1 => vec(json_value(), 0..4).prop_map(|items| Value::Array(items).to_string().into_bytes()),
        1 => Just(
            serde_json::from_str::<Map<String, Value>>(sample)
                .map(|f| Value::Array(f.into_iter().map(|(_, v)| v).collect()).to_string())
                .unwrap_or_default()
                .into_bytes()
        ),
        1 => (any::<u8>(), 1_000_usize..=65_536).prop_map(|(b, n)| vec![b; n]),
        1 => (60_000_usize..65_000).prop_map(|n| {
            json!({"padding": "\u{0}".repeat(n / 6)}).to_string().into_bytes()
        }),
        4 => almost_valid(sample),
    ]
    .prop_filter("the parser refuses it", move |value| !accepts(value))
}

fn key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        2 => Just(None),
        3 => vec(any::<u8>(), 0..48).prop_map(Some),
        // Past the dead letter's key budget (16 KiB): the record goes to S3.
        1 => (any::<u8>(), 20_000_usize..24_000).prop_map(|(b, n)| Some(vec![b; n])),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        4 => vec(tricky_char(), 0..12).prop_map(String::from_iter),
        1 => prop::sample::select(vec!["dlq.error", "dlq.original.offset", "dlq.consumer", "source"])
            .prop_map(str::to_owned),
    ];
    let value = prop_oneof![
        8 => vec(any::<u8>(), 0..64),
        1 => (any::<u8>(), 1_000_usize..30_000).prop_map(|(b, n)| vec![b; n]),
    ];
    btree_map(name, value, 0..4).prop_map(|headers| headers.into_iter().collect())
}

fn bad_records(
    sample: &'static str,
    accepts: impl Fn(&[u8]) -> bool + 'static,
) -> impl Strategy<Value = Vec<Rec>> {
    vec(
        (bad_value(sample, accepts), key(), headers()).prop_map(|(value, key, headers)| Rec {
            value,
            key,
            headers,
        }),
        1..=4,
    )
}

/// Good records from their JSON bodies, each with a small key and arbitrary headers.
fn good_records(values: impl Strategy<Value = Vec<Value>>) -> impl Strategy<Value = Vec<Rec>> {
    values.prop_flat_map(|values| {
        let n = values.len();
        vec(headers(), n).prop_map(move |headers| {
            values
                .iter()
                .zip(headers)
                .enumerate()
                .map(|(i, (value, headers))| Rec {
                    value: value.to_string().into_bytes(),
                    key: Some(format!("good-{i}").into_bytes()),
                    headers,
                })
                .collect()
        })
    })
}

fn instant_between(from: &str, to: &str) -> impl Strategy<Value = DateTime<Utc>> + use<> {
    let seconds = |at: &str| {
        at.parse::<DateTime<Utc>>()
            .map(|t| t.timestamp())
            .unwrap_or_default()
    };
    (seconds(from)..seconds(to))
        .prop_filter_map("an instant", |s| DateTime::<Utc>::from_timestamp(s, 0))
}

fn day_between(from: &str, to: &str) -> impl Strategy<Value = NaiveDate> + use<> {
    instant_between(from, to).prop_map(|at| at.date_naive())
}

// ---------------------------------------------------------------------------------------------
// Kafka: events, dead letters, state

fn kafka_event(
    topic: &str,
    timestamp_ms: i64,
    placed: &[Placed<'_>],
) -> anyhow::Result<KafkaEvent> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in placed {
        let headers: Vec<Value> = p
            .rec
            .headers
            .iter()
            .map(|(name, bytes)| {
                let signed: Vec<i8> = bytes.iter().map(|b| i8::from_ne_bytes([*b])).collect();
                let mut header = Map::new();
                header.insert(name.clone(), json!(signed));
                Value::Object(header)
            })
            .collect();
        let mut record = json!({
            "topic": topic, "partition": p.partition, "offset": p.offset,
            "timestamp": timestamp_ms, "timestampType": "CREATE_TIME", "headers": headers,
            "value": base64.encode(&p.rec.value),
        });
        if let Some(key) = &p.rec.key {
            record["key"] = base64.encode(key).into();
        }
        records
            .entry(format!("{topic}-{}", p.partition))
            .or_default()
            .push(record);
    }
    Ok(serde_json::from_value(
        json!({"eventSource": "aws:kafka", "records": records}),
    )?)
}

/// A message read back from a topic, headers as produced (names end at a NUL: librdkafka reads
/// them as C strings).
struct Letter {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Letter {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &str) -> String {
        String::from_utf8_lossy(self.header(name).unwrap_or_default()).into_owned()
    }
}

fn consumer() -> anyhow::Result<rdkafka::consumer::StreamConsumer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("properties-"))
        .set("enable.auto.commit", "false")
        .create()?)
}

/// The high watermark of partition 0 of `topic`: it moves whenever a message is appended. (It
/// is not a count: the local broker, Tansu 0.6, advances it once per produced batch, so four
/// dead letters sent at once may leave it at 3. Counts are read: see [`read_letters`].)
fn topic_mark(topic: &str) -> anyhow::Result<i64> {
    use rdkafka::consumer::Consumer as _;
    let (_, high) = consumer()?.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    Ok(high)
}

/// Reads partition 0 of `topic` from the start until `expected` messages arrived, then for
/// `linger` more, so that any message past them is read too.
async fn read_letters(
    topic: &str,
    expected: usize,
    linger: Duration,
) -> anyhow::Result<Vec<Letter>> {
    use rdkafka::Message as _;
    use rdkafka::consumer::Consumer as _;
    use rdkafka::message::Headers as _;
    let consumer = consumer()?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&partitions)?;
    let mut deadline = tokio::time::Instant::now() + READ_WAIT;
    let mut letters = Vec::new();
    loop {
        if letters.len() == expected {
            deadline = tokio::time::Instant::now() + linger;
        }
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            ensure!(
                letters.len() >= expected,
                "{} of {expected} dead letters read",
                letters.len()
            );
            return Ok(letters);
        };
        let message = message?;
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        let value = header.value.map(<[u8]>::to_vec).unwrap_or_default();
                        (header.key.to_owned(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.push(Letter {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
}

/// Every row of `tables` as text, sorted: "nothing changed" is this being equal.
async fn rows(db: &PgPool, tables: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut all = Vec::new();
    for table in tables {
        let sql = format!("SELECT '{table}: ' || t::text FROM {table} t");
        let mut rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(db)
            .await?;
        all.append(&mut rows);
    }
    all.sort();
    Ok(all)
}

/// One Kafka case's topic, dead-letter topic and what the consumer is called.
struct Kafka<'a> {
    consumer: &'a str,
    topic: String,
    dlq: String,
}

impl<'a> Kafka<'a> {
    /// A fresh topic name and its dead-letter topic (created: the broker does not on use).
    async fn new(consumer: &'a str, prefix: &str, dlq: Option<String>) -> anyhow::Result<Self> {
        let topic = unique(prefix);
        let dlq = dlq.unwrap_or_else(|| format!("{topic}-dlq"));
        create_topics(&[&dlq]).await?;
        Ok(Self {
            consumer,
            topic,
            dlq,
        })
    }

    /// The summary a first delivery must come to.
    fn first_summary(
        &self,
        summary: &KafkaBatchSummary,
        batch: &Batch,
        applied: usize,
    ) -> anyhow::Result<()> {
        let want = (
            batch.good.len() + batch.bad.len(),
            batch.good.len(),
            applied,
            batch.bad.len(),
        );
        let got = (
            summary.records,
            summary.valid,
            summary.applied,
            summary.rejected,
        );
        ensure!(
            got == want,
            "summary {summary:?}, want (records, valid, applied, rejected) {want:?}"
        );
        Ok(())
    }

    /// Every bad record is in the ledger once, sent, with the reason `parse` gives it, and on the
    /// dead-letter topic once with its bytes and headers and ours; nothing else is.
    async fn dead_letters<T>(
        &self,
        db: &PgPool,
        batch: &Batch,
        parse: impl Fn(&[u8]) -> Result<T, domain::WorkerError>,
    ) -> anyhow::Result<()> {
        // The reason the parser gives a record, as the ledger stores it.
        let reason = |rec: &Rec| {
            parse(&rec.value)
                .err()
                .map(|e| storable(&e.to_string()))
                .unwrap_or_default()
        };
        let placed = batch.placed();
        let bad: Vec<&Placed<'_>> = placed.iter().filter(|p| !p.good).collect();
        let mut want: Vec<(String, i32, i64, String, bool)> = bad
            .iter()
            .map(|p| {
                (
                    self.topic.clone(),
                    p.partition,
                    p.offset,
                    reason(p.rec),
                    true,
                )
            })
            .collect();
        want.sort();
        let got: Vec<(String, i32, i64, String, bool)> = sqlx::query_as(
            "SELECT topic, partition, \"offset\", reason, sent_at IS NOT NULL
               FROM kafka_dead_letters WHERE consumer = $1 ORDER BY 1, 2, 3",
        )
        .bind(self.consumer)
        .fetch_all(db)
        .await?;
        for (.., reason, _) in &got {
            ensure!(
                !reason.contains('\0') && reason.len() <= MAX_TEXT_BYTES,
                "reason not storable: {reason:?}"
            );
        }
        ensure!(got == want, "ledger {got:?}\nwant {want:?}");

        let letters = read_letters(&self.dlq, bad.len(), Duration::ZERO).await?;
        let by_position = by_position(&letters)?;
        let s3 = local_s3();
        for p in bad {
            let position = (p.partition.to_string(), p.offset.to_string());
            let letter = by_position
                .get(&position)
                .with_context(|| format!("no dead letter for {position:?}"))?;
            self.letter(letter, p, &reason(p.rec), &s3)
                .await
                .with_context(|| format!("the dead letter of {position:?}, {:?}", p.rec))?;
        }
        Ok(())
    }

    /// The dead-letter topic holds one message per bad record, none twice, nothing else.
    async fn sent_once(&self, bad: usize) -> anyhow::Result<()> {
        let letters = read_letters(&self.dlq, bad, LINGER).await?;
        ensure!(
            letters.len() == bad,
            "{} dead letters for {bad} bad records",
            letters.len()
        );
        by_position(&letters)?;
        Ok(())
    }

    async fn letter(
        &self,
        letter: &Letter,
        p: &Placed<'_>,
        reason: &str,
        s3: &aws_sdk_s3::Client,
    ) -> anyhow::Result<()> {
        ensure!(letter.text("dlq.original.topic") == self.topic);
        ensure!(letter.text("dlq.consumer") == self.consumer);
        ensure!(letter.text("dlq.attempts") == "1");
        ensure!(
            letter.text("dlq.error") == reason,
            "dlq.error {:?}",
            letter.text("dlq.error")
        );
        if letter.header(CLAIM_CHECK_HEADER) == Some(b"s3") {
            let claimed: ClaimedRecord = serde_json::from_slice(&letter.payload)?;
            ensure!(
                claimed.value.fetch(s3).await? == p.rec.value,
                "the value in S3"
            );
            let key = match (&claimed.key, &letter.key) {
                (Some(check), _) => Some(check.fetch(s3).await?),
                (None, key) => key.clone(),
            };
            ensure!(key == p.rec.key, "the key, inline or in S3");
            let key_len = p.rec.key.as_ref().map_or(0, Vec::len);
            ensure!(
                key_len > 16 * 1024,
                "claim-checked with a {key_len}-byte key"
            );
        } else {
            ensure!(
                letter.payload == p.rec.value,
                "payload {}",
                show(&letter.payload)
            );
            ensure!(
                letter.key == p.rec.key,
                "key {:?}",
                letter.key.as_deref().map(show)
            );
        }
        // The record's own headers, as far as they fit and none of ours, then ours.
        let originals: Vec<(String, &[u8])> = p
            .rec
            .headers
            .iter()
            .filter(|(name, _)| !name.starts_with("dlq."))
            .map(|(name, value)| {
                (
                    name.split('\0').next().unwrap_or_default().to_owned(),
                    value.as_slice(),
                )
            })
            .collect();
        let copied: Vec<(&str, &[u8])> = letter
            .headers
            .iter()
            .take_while(|(name, _)| !name.starts_with("dlq."))
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let mut rest = originals.iter();
        for (name, value) in &copied {
            ensure!(
                rest.any(|(n, v)| n == name && v == value),
                "header {name:?} is not one of the record's, in order"
            );
        }
        let dropped: usize = letter.text("dlq.headers.dropped").parse().unwrap_or(0);
        ensure!(
            copied.len() + dropped == p.rec.headers.len(),
            "{} headers copied and {dropped} dropped of {}",
            copied.len(),
            p.rec.headers.len()
        );
        ensure!(
            letter.headers[copied.len()..]
                .iter()
                .all(|(n, _)| n.starts_with("dlq.")),
            "our headers come last"
        );
        Ok(())
    }
}

/// Dead letters by the position of their record, each position once.
fn by_position(letters: &[Letter]) -> anyhow::Result<HashMap<(String, String), &Letter>> {
    let mut by_position = HashMap::new();
    for letter in letters {
        let position = (
            letter.text("dlq.original.partition"),
            letter.text("dlq.original.offset"),
        );
        ensure!(
            by_position.insert(position.clone(), letter).is_none(),
            "{position:?} sent twice"
        );
    }
    Ok(by_position)
}

/// The snapshot of a Kafka consumer's state, and the mark of its dead-letter topic.
async fn kafka_state(
    db: &PgPool,
    tables: &[&str],
    dlq: &str,
) -> anyhow::Result<(Vec<String>, i64)> {
    Ok((rows(db, tables).await?, topic_mark(dlq)?))
}

/// The batch again, then twice at once from two instances: nothing changes, nothing fails,
/// and each bad record is still on the dead-letter topic once.
async fn replays<D, F>(
    kafka: &Kafka<'_>,
    deps: (&D, &D),
    handle: F,
    event: &KafkaEvent,
    state: impl AsyncFn() -> anyhow::Result<(Vec<String>, i64)>,
    rejected: usize,
) -> anyhow::Result<()>
where
    F: AsyncFn(KafkaEvent, &D) -> anyhow::Result<KafkaBatchSummary>,
{
    let before = state().await?;
    let again = handle(event.clone(), deps.0).await.context("a replay")?;
    ensure!(
        (again.applied, again.rejected) == (0, rejected),
        "a replay came to {again:?}"
    );
    ensure!(state().await? == before, "a replay changed the state");
    let (a, b) = tokio::join!(handle(event.clone(), deps.0), handle(event.clone(), deps.1));
    for result in [a, b] {
        let summary = result.context("a concurrent replay")?;
        ensure!(
            summary.applied == 0,
            "a concurrent replay applied {summary:?}"
        );
    }
    ensure!(
        state().await? == before,
        "concurrent replays changed the state"
    );
    kafka.sent_once(rejected).await
}

// ---------------------------------------------------------------------------------------------
// performance-metrics

const WINDOW_SAMPLE: &str = r#"{"campaign_id": 7, "advertiser_id": 3, "window_size": "5m", "window_start": "2026-11-20T15:05:00Z", "impressions": 1000, "clicks": 40, "conversions": 4, "cost": 12.345678}"#;

/// Valid windows of distinct campaigns, anywhere in the rules' ranges.
fn windows() -> impl Strategy<Value = Vec<Value>> {
    const MAX: i64 = domain::metrics::MAX_WINDOW_COUNT;
    let count = prop_oneof![0..=1_000_i64, 0..=MAX, Just(MAX)];
    let window = (
        1..=i64::MAX,
        prop::sample::select(vec![("1m", 60), ("5m", 300), ("1h", 3_600)]),
        // 2000-01-01 to 9999-12-31
        946_684_800_i64..=253_402_300_799,
        [count.clone(), count.clone(), count],
        prop_oneof![0.0..=1e12_f64, 0.0..=100.0, Just(1e12)],
    );
    (1..=1_000_000_000_000_i64, vec(window, 0..=4)).prop_map(|(base, windows)| {
        windows
            .into_iter()
            .zip(base..)
            .map(
                |((advertiser, (size, seconds), start, mut counts, cost), campaign)| {
                    counts.sort_unstable();
                    let start = DateTime::<Utc>::from_timestamp(start - start % seconds, 0)
                        .unwrap_or_default();
                    json!({
                        "campaign_id": campaign, "advertiser_id": advertiser, "window_size": size,
                        "window_start": start.to_rfc3339(), "impressions": counts[2],
                        "clicks": counts[1], "conversions": counts[0], "cost": cost,
                    })
                },
            )
            .collect()
    })
}

#[test]
fn performance_metrics_stores_good_windows_and_dead_letters_the_rest_once() {
    use performance_metrics::{CONSUMER, Deps, handle};
    let parse = |value: &[u8]| domain::metrics::parse_window(value);
    let strategy = batch(
        good_records(windows()),
        bad_records(WINDOW_SAMPLE, move |value| parse(value).is_ok()),
    );
    run_cases(async { Ok(()) }, strategy, async |_, batch| {
        let db = TestDb::new().await?;
        let kafka = Kafka::new(CONSUMER, "p-performance-metrics-", None).await?;
        let deps = |db: &TestDb| -> anyhow::Result<Deps> {
            Ok(Deps {
                db: db.pool.clone(),
                dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
            })
        };
        let (one, other) = (deps(&db)?, deps(&db)?);
        let event = kafka_event(&kafka.topic, Utc::now().timestamp_millis(), &batch.placed())?;

        let summary = handle(event.clone(), &one).await?;
        kafka.first_summary(&summary, &batch, batch.good.len())?;
        for rec in &batch.good {
            let w = parse(&rec.value)?;
            let row: Option<(i64, String, NaiveDate, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT advertiser_id, window_size, window_date, impressions, clicks,
                        conversions, cost_micros
                   FROM performance_metrics
                  WHERE campaign_id = $1 AND window_size = $2 AND window_start = $3",
            )
            .bind(w.campaign_id)
            .bind(w.window_size.as_str())
            .bind(w.window_start)
            .fetch_optional(&db.pool)
            .await?;
            let want = (
                w.advertiser_id,
                w.window_size.as_str().to_owned(),
                w.window_date,
                w.impressions,
                w.clicks,
                w.conversions,
                w.cost_micros,
            );
            ensure!(row.as_ref() == Some(&want), "stored {row:?}, want {want:?}");
        }
        let stored = db.count("SELECT count(*) FROM performance_metrics").await?;
        ensure!(stored == batch.good.len() as i64, "{stored} windows stored");
        kafka.dead_letters(&db.pool, &batch, parse).await?;

        let tables = ["performance_metrics", "kafka_dead_letters"];
        replays(
            &kafka,
            (&one, &other),
            async |event, deps| Ok(handle(event, deps).await?),
            &event,
            async || kafka_state(&db.pool, &tables, &kafka.dlq).await,
            batch.bad.len(),
        )
        .await
    });
}

// ---------------------------------------------------------------------------------------------
// quality-score

const SCORE_SAMPLE: &str = r#"{"campaign_id": 2001, "advertiser_id": 501, "score": 8.4, "computed_at": "2026-11-20T10:00:00Z"}"#;

/// Valid first scores of distinct campaigns.
fn scores() -> impl Strategy<Value = Vec<Value>> {
    let score = (
        1..=i64::MAX,
        prop_oneof![0.0..=10.0_f64, Just(0.0), Just(10.0)],
        instant_between("2000-01-01T00:00:00Z", "2026-11-01T00:00:00Z"),
    );
    (1..=1_000_000_000_000_i64, vec(score, 0..=4)).prop_map(|(base, scores)| {
        scores
            .into_iter()
            .zip(base..)
            .map(|((advertiser, score, at), campaign)| {
                json!({"campaign_id": campaign, "advertiser_id": advertiser, "score": score,
                       "computed_at": at.to_rfc3339()})
            })
            .collect()
    })
}

#[test]
fn quality_score_stores_good_scores_and_dead_letters_the_rest_once() {
    use domain::quality::parse_score;
    use quality_score::{CONSUMER, Deps, handle};
    let parse = |value: &[u8]| parse_score(value, Utc::now());
    let strategy = batch(
        good_records(scores()),
        bad_records(SCORE_SAMPLE, move |value| parse(value).is_ok()),
    );
    let world = async {
        let mut aws = TestAws::new().await?;
        let alerts = aws.subscribed_topic("advertiser-alerts").await?;
        anyhow::Ok((aws, alerts))
    };
    run_cases(world, strategy, async |(aws, alerts), batch| {
        let db = TestDb::new().await?;
        let kafka = Kafka::new(CONSUMER, "p-quality-score-updates-", None).await?;
        let deps = |db: &TestDb| -> anyhow::Result<Deps> {
            Ok(Deps {
                db: db.pool.clone(),
                dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
                outbox: adapters::outbox::Outbox::new(
                    db.pool.clone(),
                    adapters::aws::sns(&aws.sdk),
                    CONSUMER,
                    alerts,
                ),
            })
        };
        let (one, other) = (deps(&db)?, deps(&db)?);
        // The record's time, which the function checks `computed_at` against.
        let sent_ms = Utc::now().timestamp_millis();
        let received_at = DateTime::<Utc>::from_timestamp_millis(sent_ms).unwrap_or_default();
        let parse = |value: &[u8]| parse_score(value, received_at);
        let event = kafka_event(&kafka.topic, sent_ms, &batch.placed())?;

        let summary = handle(event.clone(), &one).await?;
        kafka.first_summary(&summary, &batch, batch.good.len())?;
        for rec in &batch.good {
            let update = parse(&rec.value)?;
            let row: Option<(i64, f64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT advertiser_id, score, computed_at FROM quality_scores
                  WHERE campaign_id = $1",
            )
            .bind(update.campaign_id)
            .fetch_optional(&db.pool)
            .await?;
            let want = (update.advertiser_id, update.score, update.computed_at);
            ensure!(row == Some(want), "stored {row:?}, want {want:?}");
        }
        let history = db
            .count("SELECT count(*) FROM quality_score_history")
            .await?;
        ensure!(history == batch.good.len() as i64, "{history} history rows");
        ensure!(
            db.count("SELECT count(*) FROM outbox").await? == 0,
            "a first score notifies nobody"
        );
        kafka.dead_letters(&db.pool, &batch, parse).await?;

        let tables = [
            "quality_scores",
            "quality_score_history",
            "outbox",
            "kafka_dead_letters",
        ];
        replays(
            &kafka,
            (&one, &other),
            async |event, deps| Ok(handle(event, deps).await?),
            &event,
            async || kafka_state(&db.pool, &tables, &kafka.dlq).await,
            batch.bad.len(),
        )
        .await?;
        ensure!(
            aws.drain("advertiser-alerts").await?.is_empty(),
            "nothing was published"
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// budget-sync

const SYNC_SAMPLE: &str = r#"{"campaign_id": "12345", "redis_spent": 45000, "db_spent": 44750, "accuracy_ratio": 0.994, "sync_action": "adjust_redis", "campaign_action": "none", "spend_date": "2026-11-20"}"#;

/// Valid syncs of distinct campaigns, with and without a correction due.
fn syncs() -> impl Strategy<Value = Vec<Value>> {
    const MAX: i64 = domain::budget::MAX_SPENT;
    let spent = prop_oneof![0..=100_000_i64, 0..=MAX, Just(0), Just(MAX)];
    let sync = (
        spent.clone(),
        spent,
        prop::option::of(0.0..=1.0_f64),
        prop::sample::select(vec!["none", "adjust_redis"]),
        prop::sample::select(vec!["none", "pause_if_exceeded"]),
        prop::option::of(day_between("2000-01-01T00:00:00Z", "2026-11-20T00:00:00Z")),
        any::<bool>(),
    );
    (1..=1_000_000_000_000_i64, vec(sync, 0..=4)).prop_map(|(base, syncs)| {
        syncs
            .into_iter()
            .zip(base..)
            .map(|((redis, db, ratio, sync, campaign_action, day, as_text), campaign)| {
                let mut value = json!({
                    "campaign_id": if as_text { json!(format!(" {campaign} ")) } else { json!(campaign) },
                    "redis_spent": redis, "db_spent": db, "sync_action": sync,
                    "campaign_action": campaign_action,
                });
                if let Some(ratio) = ratio {
                    value["accuracy_ratio"] = json!(ratio);
                }
                if let Some(day) = day {
                    value["spend_date"] = json!(day.to_string());
                }
                value
            })
            .collect()
    })
}

/// Every key of a Redis server with its value (or its type, for what is not a string).
async fn redis_state(redis: &RedisServer) -> anyhow::Result<Vec<String>> {
    let mut conn = redis.connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await?;
    let mut state = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
        let value: String = if kind == "string" {
            redis::cmd("GET").arg(&key).query_async(&mut conn).await?
        } else {
            kind
        };
        state.push(format!("{key} = {value}"));
    }
    state.sort();
    Ok(state)
}

#[test]
fn budget_sync_records_good_syncs_corrects_redis_once_and_dead_letters_the_rest_once() {
    use budget_sync::{CONSUMER, Deps, handle};
    let parse = |value: &[u8]| domain::budget::parse_sync(value, Utc::now());
    let strategy = batch(
        good_records(syncs()),
        bad_records(SYNC_SAMPLE, move |value| parse(value).is_ok()),
    );
    let world = async {
        let redis = RedisServer::start().await?;
        let mut aws = TestAws::new().await?;
        let operators = aws.subscribed_topic("operator-alerts").await?;
        anyhow::Ok((redis, aws, operators))
    };
    run_cases(world, strategy, async |(redis, aws, operators), batch| {
        let mut conn = redis.connection().await?;
        let () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
        let db = TestDb::new().await?;
        let kafka = Kafka::new(CONSUMER, "p-budget-management-", None).await?;
        let redis_config = adapters::config::RedisConfig {
            url: secrecy::SecretString::from(redis.url()),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            retries: 1,
        };
        let deps = |db: &TestDb| -> anyhow::Result<Deps> {
            Ok(Deps {
                db: db.pool.clone(),
                redis: adapters::redis::connect_lazy(&redis_config)?,
                dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?,
                outbox: adapters::outbox::Outbox::new(
                    db.pool.clone(),
                    adapters::aws::sns(&aws.sdk),
                    CONSUMER,
                    operators,
                ),
                redis_budget: Duration::from_secs(5),
            })
        };
        let (one, other) = (deps(&db)?, deps(&db)?);
        let produced_at = Utc::now();
        let placed = batch.placed();
        let event = kafka_event(&kafka.topic, produced_at.timestamp_millis(), &placed)?;

        let summary = handle(event.clone(), &one).await?;
        kafka.first_summary(&summary, &batch, batch.good.len())?;
        let produced_at = DateTime::<Utc>::from_timestamp_millis(produced_at.timestamp_millis())
            .unwrap_or(produced_at);
        let mut want_rows = Vec::new();
        let mut want_redis = BTreeSet::new();
        for p in placed.iter().filter(|p| p.good) {
            let sync = domain::budget::parse_sync(&p.rec.value, produced_at)?;
            let delta = sync.correction();
            want_rows.push((
                p.partition,
                p.offset,
                sync.campaign_id,
                sync.spend_date,
                if delta.is_some() { "applied" } else { "none" }.to_owned(),
            ));
            if let Some(delta) = delta {
                let key = domain::budget::counter_key(sync.campaign_id, sync.spend_date);
                want_redis.insert(format!("{key} = {}", delta.max(0)));
            }
        }
        want_rows.sort();
        let rows: Vec<(i32, i64, i64, NaiveDate, String)> = sqlx::query_as(
            "SELECT partition, \"offset\", campaign_id, spend_date, correction
               FROM budget_sync_accuracy ORDER BY 1, 2",
        )
        .fetch_all(&db.pool)
        .await?;
        ensure!(rows == want_rows, "recorded {rows:?}\nwant {want_rows:?}");
        let counters: BTreeSet<String> = redis_state(redis)
            .await?
            .into_iter()
            .filter(|k| k.starts_with("budget:spent:"))
            .collect();
        ensure!(
            counters == want_redis,
            "counters {counters:?}\nwant {want_redis:?}"
        );
        kafka
            .dead_letters(&db.pool, &batch, |value: &[u8]| {
                domain::budget::parse_sync(value, produced_at)
            })
            .await?;

        let tables = [
            "budget_sync_accuracy",
            "campaigns",
            "campaign_pauses",
            "outbox",
            "kafka_dead_letters",
        ];
        let state = async || -> anyhow::Result<(Vec<String>, i64)> {
            let (mut rows, dead) = kafka_state(&db.pool, &tables, &kafka.dlq).await?;
            rows.extend(redis_state(redis).await?);
            Ok((rows, dead))
        };
        replays(
            &kafka,
            (&one, &other),
            async |event, deps| Ok(handle(event, deps).await?),
            &event,
            state,
            batch.bad.len(),
        )
        .await
    });
}

// ---------------------------------------------------------------------------------------------
// coupon-issue

const REQUEST_SAMPLE: &str = r#"{"request_id": "5f0c1c2e-0001-4a6b-9d1e-000000000001", "coupon_id": 1, "user_id": 9001, "requested_at": "2026-11-20T10:00:00+09:00"}"#;

/// Records are stamped 2026-11-21T00:00:00Z; the coupon is valid through November 2026.
const COUPON_RECORD_MS: i64 = 1_795_219_200_000;

/// Requests with distinct ids: for the coupon or one that does not exist, by a few users (so
/// some hold it already), in, before, after its window and later than their record.
fn requests() -> impl Strategy<Value = Vec<Value>> {
    let request = (
        prop_oneof![4 => Just(1_i64), 1 => Just(2_i64)],
        1..=4_i64,
        instant_between("2026-10-25T00:00:00Z", "2026-12-03T00:00:00Z"),
    );
    (any::<u32>(), vec(request, 0..=5)).prop_map(|(tag, requests)| {
        requests
            .into_iter()
            .enumerate()
            .map(|(i, (coupon, user, at))| {
                json!({"request_id": format!("{tag:08x}-{i}"), "coupon_id": coupon,
                       "user_id": user, "requested_at": at.to_rfc3339(), "channel": "app"})
            })
            .collect()
    })
}

#[test]
fn coupon_issue_decides_good_requests_once_and_dead_letters_the_rest_once() {
    use coupon_issue::{CONSUMER, Deps, handle};
    use domain::coupon::{Coupon, Recorded, Submitted, decide, parse_request};
    let strategy = (
        batch(
            good_records(requests()),
            bad_records(REQUEST_SAMPLE, |value| parse_request(value).is_ok()),
        ),
        0_i64..=3,
    );
    run_cases(async { Ok(()) }, strategy, async |_, (batch, stock)| {
        let db = TestDb::new().await?;
        let kafka = Kafka::new(
            CONSUMER,
            "p-coupon-issue-requests-",
            Some(unique("p-coupon-issue-dlq-")),
        )
        .await?;
        let coupon = Coupon {
            id: 1,
            active: true,
            remaining: stock,
            valid_from: "2026-11-01T00:00:00Z".parse()?,
            valid_until: "2026-12-01T00:00:00Z".parse()?,
        };
        sqlx::query(
            "INSERT INTO coupons (id, name, total_stock, remaining_stock, valid_from, valid_until)
             VALUES ($1, 'property', $2, $2, $3, $4)",
        )
        .bind(coupon.id)
        .bind(stock)
        .bind(coupon.valid_from)
        .bind(coupon.valid_until)
        .execute(&db.pool)
        .await?;
        let deps = |db: &TestDb| -> anyhow::Result<Deps> {
            Ok(Deps {
                dead_letters: integration_tests::dead_letters(&db.pool, CONSUMER)?
                    .to_topic(&kafka.dlq),
                db: db.pool.clone(),
                on_failure: adapters::kafka::OnFailure::RetryThenDeadLetter(
                    adapters::kafka::Retry::seed(),
                ),
            })
        };
        let (one, other) = (deps(&db)?, deps(&db)?);
        let placed = batch.placed();
        let event = kafka_event(&kafka.topic, COUPON_RECORD_MS, &placed)?;

        let summary = handle(event.clone(), &one).await?;
        kafka.first_summary(&summary, &batch, batch.good.len())?;
        ensure!(summary.exhausted == 0, "{summary:?}");
        let received_at =
            DateTime::<Utc>::from_timestamp_millis(COUPON_RECORD_MS).unwrap_or_default();
        let submitted = placed
            .iter()
            .filter(|p| p.good)
            .map(|p| {
                Ok(Submitted {
                    request: parse_request(&p.rec.value)?,
                    topic: kafka.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    received_at,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let plan = decide(
            &submitted,
            &HashMap::from([(1, coupon)]),
            &Recorded::default(),
        );
        let mut want: Vec<(String, String)> = plan
            .decisions
            .iter()
            .map(|d| {
                (
                    d.submitted.request.request_id.clone(),
                    d.outcome.as_str().to_owned(),
                )
            })
            .collect();
        want.sort();
        let got: Vec<(String, String)> =
            sqlx::query_as("SELECT request_id, outcome FROM coupon_issue_outcomes ORDER BY 1")
                .fetch_all(&db.pool)
                .await?;
        ensure!(got == want, "outcomes {got:?}\nwant {want:?}");
        let taken = plan.taken.get(&1).copied().unwrap_or(0);
        let remaining = db
            .count("SELECT remaining_stock FROM coupons WHERE id = 1")
            .await?;
        ensure!(
            remaining == stock - taken,
            "{remaining} left of {stock}, {taken} issued"
        );
        let grants = db.count("SELECT count(*) FROM user_coupons").await?;
        ensure!(grants == taken, "{grants} grants for {taken} issued");
        kafka.dead_letters(&db.pool, &batch, parse_request).await?;

        let tables = [
            "coupons",
            "coupon_issue_outcomes",
            "user_coupons",
            "kafka_dead_letters",
        ];
        replays(
            &kafka,
            (&one, &other),
            async |event, deps| Ok(handle(event, deps).await?),
            &event,
            async || kafka_state(&db.pool, &tables, &kafka.dlq).await,
            batch.bad.len(),
        )
        .await
    });
}

// ---------------------------------------------------------------------------------------------
// webtoon-sync

const WEBTOON_SAMPLE: &str = r#"{"request_id": "4f1c2a9e-8d3b-4c55-9a41-0c6e2b7d1f01", "platform": "NAVER", "external_id": "783053", "requested_at": "2026-11-20T17:00:00Z", "title": "Lighthouse", "status": "ONGOING", "rating": 9.71, "age_rating": "12", "authors": [{"name": "Han Seo-yeon", "role": "WRITER"}], "genres": ["DRAMA"], "publish_days": ["MON"], "episodes": [{"number": 1, "title": "The Light", "published_at": "2026-10-05"}]}"#;

/// Text a webtoon field may hold: not blank, any character but NUL.
fn name(max: usize) -> impl Strategy<Value = String> {
    vec(tricky_char().prop_filter("not NUL", |c| *c != '\0'), 0..max)
        .prop_map(|chars| format!("N{}", String::from_iter(chars)))
}

/// Valid create requests for distinct webtoons, without images.
fn creates() -> impl Strategy<Value = Vec<Value>> {
    let episode = (
        name(40),
        prop::option::of(day_between("2000-01-01T00:00:00Z", "2030-01-01T00:00:00Z")),
    );
    let create = (
        prop::sample::select(vec![
            "NAVER",
            "KAKAO",
            "KAKAO_PAGE",
            "LEZHIN",
            "BOMTOON",
            "TOPTOON",
        ]),
        instant_between("2020-01-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        name(60),
        prop::sample::select(vec!["ONGOING", "COMPLETED", "HIATUS"]),
        prop::option::of(0.0..=10.0_f64),
        prop::option::of(prop::sample::select(vec!["ALL", "12", "15", "19"])),
        vec(
            (
                name(20),
                prop::sample::select(vec!["WRITER", "ARTIST", "ORIGINAL"]),
            ),
            0..3,
        ),
        vec(name(12), 0..3),
        prop::sample::subsequence(vec!["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"], 0..3),
        vec(episode, 0..3),
    );
    (any::<u32>(), vec(create, 0..=3)).prop_map(|(tag, creates)| {
        creates
            .into_iter()
            .enumerate()
            .map(
                |(
                    i,
                    (platform, at, title, status, rating, age, authors, genres, days, episodes),
                )| {
                    let authors: Vec<Value> = authors
                        .into_iter()
                        .map(|(name, role)| json!({"name": name, "role": role}))
                        .collect();
                    let episodes: Vec<Value> = episodes
                        .into_iter()
                        .zip(1..)
                        .map(|((title, day), number)| {
                            json!({"number": number, "title": title,
                               "published_at": day.map(|d| d.to_string())})
                        })
                        .collect();
                    json!({
                        "request_id": format!("req-{tag:08x}-{i}"), "platform": platform,
                        "external_id": format!("{tag:x}-{i}"), "requested_at": at.to_rfc3339(),
                        "title": title, "status": status, "rating": rating, "age_rating": age,
                        "authors": authors, "genres": genres, "publish_days": days,
                        "episodes": episodes,
                    })
                },
            )
            .collect()
    })
}

/// Bodies webtoon-sync must refuse: no body, arbitrary bytes (as text), JSON that is not an
/// object, 64 KiB of one character, a valid request with fields broken.
fn bad_bodies() -> impl Strategy<Value = Vec<Option<String>>> {
    let lossy = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let body = prop_oneof![
        1 => Just(None),
        3 => vec(any::<u8>(), 0..512).prop_map(move |b| Some(lossy(b))),
        1 => vec(json_value(), 0..4).prop_map(|items| Some(Value::Array(items).to_string())),
        1 => (tricky_char(), 1_000_usize..=65_536)
            .prop_map(|(c, n)| Some(std::iter::repeat_n(c, n).collect())),
        1 => Just(Some(WEBTOON_SAMPLE.replacen(": ", ": \"\\u0000\", \"x\": ", 1))),
        4 => almost_valid(WEBTOON_SAMPLE).prop_map(move |b| Some(lossy(b))),
    ]
    .prop_filter("webtoon-sync refuses it", |body| {
        body.as_deref().is_none_or(|body| {
            domain::webtoon::parse_request(domain::webtoon::RequestKind::Create, body, Utc::now())
                .is_err()
        })
    });
    vec(body, 1..=4)
}

/// An SQS batch of `bodies` to the fixture's create queue, message ids `m-<n>`.
fn sqs_event(f: &Fixture, bodies: &[Option<String>]) -> anyhow::Result<SqsEvent> {
    let mut event = f.event("webtoon-sync-create.json")?;
    let template: SqsMessage = event.records.pop().context("a sample message")?;
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            let mut message = template.clone();
            message.message_id = Some(format!("m-{n}"));
            message.body = body.clone();
            message.md5_of_body = None;
            message
        })
        .collect();
    Ok(event)
}

#[derive(Clone, Debug)]
struct WebtoonBatch {
    good: Vec<String>,
    bad: Vec<Option<String>>,
    /// Delivery order: indexes into `good` then `bad`.
    order: Vec<usize>,
}

#[test]
fn webtoon_sync_applies_good_requests_once_and_reports_the_rest() {
    use domain::webtoon::{RequestKind, parse_request};
    use webtoon_sync::handle;
    let strategy = (creates(), bad_bodies()).prop_flat_map(|(good, bad)| {
        let good: Vec<String> = good.iter().map(Value::to_string).collect();
        let n = good.len() + bad.len();
        Just((0..n).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(move |order| WebtoonBatch {
                good: good.clone(),
                bad: bad.clone(),
                order,
            })
    });
    run_cases(async { Ok(()) }, strategy, async |_, batch| {
        let f = Fixture::new().await?;
        let (one, other) = (f.deps()?, f.deps()?);
        let bodies: Vec<Option<String>> = batch
            .order
            .iter()
            .map(|&i| match batch.good.get(i) {
                Some(good) => Some(good.clone()),
                None => batch.bad[i - batch.good.len()].clone(),
            })
            .collect();
        let event = sqs_event(&f, &bodies)?;
        let bad_ids = |tag: Option<&str>| {
            let mut ids: Vec<String> = batch
                .order
                .iter()
                .enumerate()
                .filter(|(_, i)| **i >= batch.good.len())
                .map(|(n, _)| match tag {
                    Some(tag) => format!("m-{n}-{tag}"),
                    None => format!("m-{n}"),
                })
                .collect();
            ids.sort();
            ids
        };

        let response = handle(event.clone(), &one).await;
        let failed = failed_ids(&response);
        ensure!(
            failed == bad_ids(None),
            "failed {failed:?}, want {:?}",
            bad_ids(None)
        );
        let mut want_completions = Vec::new();
        for body in &batch.good {
            let request = parse_request(RequestKind::Create, body, Utc::now())?;
            let row: Option<(String, String, Option<f64>, i64)> = sqlx::query_as(
                "SELECT w.title, w.status, w.rating, count(e.number)
                   FROM webtoons w LEFT JOIN episodes e ON e.webtoon_id = w.id
                  WHERE w.platform = $1 AND w.external_id = $2
                  GROUP BY w.id",
            )
            .bind(request.key.platform.as_str())
            .bind(&request.key.external_id)
            .fetch_optional(&f.db.pool)
            .await?;
            let fields = &request.fields;
            let want = (
                fields.title.clone().unwrap_or_default(),
                fields
                    .status
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                fields.rating,
                fields.episodes.len() as i64,
            );
            ensure!(row.as_ref() == Some(&want), "stored {row:?}, want {want:?}");
            want_completions.push((request.request_id.clone(), "created".to_owned()));
        }
        want_completions.sort();
        let completions = |sent: Vec<Value>| {
            let mut ids: Vec<(String, String)> = sent
                .iter()
                .map(|m| {
                    let text = |field: &str| m[field].as_str().unwrap_or_default().to_owned();
                    (text("request_id"), text("outcome"))
                })
                .collect();
            ids.sort();
            ids
        };
        let sent = completions(f.aws.drain("webtoon-create-complete").await?);
        ensure!(
            sent == want_completions,
            "completions {sent:?}\nwant {want_completions:?}"
        );
        let webtoons = f.db.count("SELECT count(*) FROM webtoons").await?;
        ensure!(webtoons == batch.good.len() as i64, "{webtoons} webtoons");

        let state = async || -> anyhow::Result<_> {
            Ok((f.db.snapshot().await?, f.aws.object_keys().await?))
        };
        let before = state().await?;
        let response = handle(redelivered(&event, "replay"), &one).await;
        ensure!(
            failed_ids(&response) == bad_ids(Some("replay")),
            "a replay: {response:?}"
        );
        ensure!(state().await? == before, "a replay changed the state");
        let (a, b) = tokio::join!(
            handle(redelivered(&event, "a"), &one),
            handle(redelivered(&event, "b"), &other)
        );
        ensure!(
            failed_ids(&a) == bad_ids(Some("a")),
            "a concurrent replay: {a:?}"
        );
        ensure!(
            failed_ids(&b) == bad_ids(Some("b")),
            "a concurrent replay: {b:?}"
        );
        ensure!(
            state().await? == before,
            "concurrent replays changed the state"
        );
        for queue in ["webtoon-create-complete", "webtoon-update-complete"] {
            let sent = f.aws.drain(queue).await?;
            if !sent.is_empty() {
                bail!("replays sent {sent:?} to {queue}");
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Scheduled jobs' input

/// A job's input: arbitrary JSON, or an object of the right shape whose date and scheduled
/// time range from 1990 to 2100 (past, today, future).
fn job_input() -> impl Strategy<Value = Value> {
    let shaped = (
        prop::option::of(day_between("1990-01-01T00:00:00Z", "2100-12-31T00:00:00Z")),
        prop::option::of(instant_between(
            "1990-01-01T00:00:00Z",
            "2100-12-31T00:00:00Z",
        )),
        any::<bool>(),
    )
        .prop_map(|(date, fired, dry_run)| {
            let mut input = Map::new();
            if let Some(date) = date {
                input.insert("date".to_owned(), json!(date));
            }
            if let Some(fired) = fired {
                input.insert("scheduled_time".to_owned(), json!(fired));
            }
            input.insert("dry_run".to_owned(), json!(dry_run));
            Value::Object(input)
        });
    prop_oneof![3 => shaped, 1 => json_value()]
}

/// Every job reads its input through the one `JobRun::start` (the pure properties of
/// `JobInput` cover its rules); here daily-rollup, on a database of its own, shows the end to
/// end: an input either runs a day before today in Seoul, or is refused permanently with
/// nothing written, no run recorded and no partition created.
#[test]
fn a_job_input_runs_a_finished_day_or_is_refused_with_nothing_written() {
    let world = async {
        let db = TestDb::new().await?;
        let mut aws = TestAws::new().await?;
        let deps = daily_rollup::Deps {
            reporter: adapters::jobs::Reporter {
                db: db.pool.clone(),
                sns: adapters::aws::sns(&aws.sdk),
                topic_arn: aws.subscribed_topic("operator-alerts").await?,
            },
        };
        anyhow::Ok((db, aws, deps))
    };
    run_cases(world, job_input(), async |(db, _aws, deps), input| {
        let state = async || -> anyhow::Result<Vec<String>> {
            let mut state = rows(
                &db.pool,
                &["job_runs", "campaign_daily_stats", "rollup_reviews"],
            )
            .await?;
            let partitions: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  ORDER BY 1",
            )
            .fetch_all(&db.pool)
            .await?;
            state.extend(partitions);
            Ok(state)
        };
        let before = state().await?;
        let today = domain::calendar::kst_date(Utc::now());
        match daily_rollup::handle(input.clone(), deps).await {
            Ok(summary) => {
                let day: NaiveDate = serde_json::from_value(summary["target_date"].clone())
                    .with_context(|| format!("{input} ran, but its summary names no day"))?;
                ensure!(day < today, "{input} ran {day}, not before today ({today})");
                ensure!(
                    day >= domain::schedule::FIRST_DAY,
                    "{input} ran {day}, before any data of ours"
                );
            }
            Err(err) => {
                ensure!(!err.is_retryable(), "{input} failed as retryable: {err}");
                let reason = storable(&err.to_string());
                ensure!(!reason.is_empty() && reason.len() <= MAX_TEXT_BYTES);
                ensure!(
                    state().await? == before,
                    "{input} was refused ({err}) but wrote something"
                );
            }
        }
        Ok(())
    });
}
