//! Input we did not write, made safe to keep and to decode.
//!
//! Every string we store or send about a record (a rejection's reason above all) goes through
//! [`storable`]: PostgreSQL `text` refuses NUL, and a Kafka header or a log line has to stay
//! small whatever the producer sent. Every JSON record goes through [`json_object`]: serde reads
//! a struct from an array by position, so `[1, 2, 3]` would otherwise pass as a record.

use serde::de::DeserializeOwned;

use crate::WorkerError;

/// The longest reason or other free text we keep, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// `text` with every NUL replaced by U+FFFD and cut to at most [`MAX_TEXT_BYTES`] bytes on a
/// character boundary (ending in `…` when cut), so PostgreSQL, Kafka headers and logs take it.
pub fn storable(text: &str) -> String {
    const ELLIPSIS: char = '…';
    let clean = text.replace('\0', "\u{FFFD}");
    if clean.len() <= MAX_TEXT_BYTES {
        return clean;
    }
    let mut end = MAX_TEXT_BYTES - ELLIPSIS.len_utf8();
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = clean[..end].to_owned();
    cut.push(ELLIPSIS);
    cut
}

/// Decodes a record that must be one JSON object. Anything else (an array, a number, a string,
/// `null`, bytes that are not JSON) is a permanent error.
pub fn json_object<T: DeserializeOwned>(value: &[u8]) -> Result<T, WorkerError> {
    if value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(serde_json::from_slice(value)?);
    }
    // Not an object: say whether it is JSON of another kind or not JSON at all.
    serde_json::from_slice::<serde::de::IgnoredAny>(value)?;
    Err(WorkerError::malformed("a record must be a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read by Debug only: the tests look at which inputs decode
    struct Grant {
        user: i64,
        coupon: i64,
    }

    #[test]
    fn nul_bytes_never_reach_storage() {
        assert_eq!(storable("5m\0"), "5m\u{FFFD}");
        assert!(!storable("\0\0\0").contains('\0'));
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "가".repeat(1000); // 3 bytes each
        let cut = storable(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES);
        assert!(cut.ends_with('…'));
        assert_eq!(storable("short"), "short");
        assert_eq!(storable(&"x".repeat(MAX_TEXT_BYTES)).len(), MAX_TEXT_BYTES);
    }

    #[test]
    fn only_objects_are_records() {
        assert!(json_object::<Grant>(br#" {"user": 1, "coupon": 2}"#).is_ok());
        for bad in [
            &b"[1, 2]"[..],
            b"1",
            b"\"x\"",
            b"null",
            b"",
            b"  \n",
            b"\xff",
        ] {
            let err = json_object::<Grant>(bad).expect_err("not an object");
            assert!(!err.is_retryable(), "{bad:?}");
        }
    }
}

/// Strategies every parser's property tests share (arbitrary bytes, arbitrary JSON, a valid
/// sample with a field replaced), the checks they share, and this module's own properties.
#[cfg(test)]
pub(crate) mod properties {
    use chrono::{DateTime, NaiveDate, Utc};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use serde_json::{Number, Value};

    use super::*;

    /// The three properties every record parser has, each judged by `$check(bytes, at)` with
    /// `at` an arbitrary instant (the record's time, for parsers that read one): arbitrary
    /// bytes, arbitrary JSON, and `$sample` with a field changed.
    macro_rules! parser_properties {
        ($sample:expr, $check:expr) => {
            proptest! {
                #![proptest_config($crate::text::properties::config())]

                #[test]
                fn arbitrary_bytes_are_parsed_or_refused(
                    value in $crate::text::properties::bytes(),
                    at in $crate::text::properties::instant(),
                ) {
                    ($check)(&value, at)?;
                }

                #[test]
                fn arbitrary_json_is_parsed_or_refused(
                    value in $crate::text::properties::json(),
                    at in $crate::text::properties::instant(),
                ) {
                    ($check)(value.to_string().as_bytes(), at)?;
                }

                #[test]
                fn the_sample_with_a_field_changed_is_parsed_or_refused(
                    value in $crate::text::properties::almost_valid($sample),
                    at in $crate::text::properties::instant(),
                ) {
                    ($check)(&value, at)?;
                }
            }
        };
    }
    pub(crate) use parser_properties;

    /// `PROPTEST_CASES` cases (256 unless set), and no regressions file in the work tree.
    pub(crate) fn config() -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// The earliest day PostgreSQL's `date` and `timestamptz` hold (4714-11-24 BC, Julian day
    /// 0). Their latest days (5874897 AD, 294276 AD) are past anything chrono can represent.
    pub(crate) fn postgres_min_date() -> NaiveDate {
        NaiveDate::from_ymd_opt(-4713, 11, 24).unwrap_or(NaiveDate::MIN)
    }

    pub(crate) fn postgres_holds_date(day: NaiveDate) -> bool {
        day >= postgres_min_date()
    }

    pub(crate) fn postgres_holds_timestamp(at: DateTime<Utc>) -> bool {
        postgres_holds_date(at.date_naive())
    }

    /// PostgreSQL `text` and `jsonb` refuse NUL; every other string is storable.
    pub(crate) fn postgres_holds_text(text: &str) -> bool {
        !text.contains('\0')
    }

    /// What every refusal must be: permanent, with a reason that stays storable.
    pub(crate) fn refused(err: &WorkerError) -> Result<(), TestCaseError> {
        prop_assert!(!err.is_retryable(), "a parser error is retryable: {err}");
        let reason = storable(&err.to_string());
        prop_assert!(!reason.contains('\0'), "{reason:?}");
        prop_assert!(reason.len() <= MAX_TEXT_BYTES, "{} bytes", reason.len());
        prop_assert!(!reason.is_empty());
        Ok(())
    }

    /// Every field name of every record and job input, so objects often look like records.
    const FIELDS: &[&str] = &[
        "campaign_id",
        "advertiser_id",
        "window_size",
        "window_start",
        "impressions",
        "clicks",
        "conversions",
        "cost",
        "score",
        "computed_at",
        "redis_spent",
        "db_spent",
        "accuracy_ratio",
        "sync_action",
        "campaign_action",
        "spend_date",
        "request_id",
        "coupon_id",
        "user_id",
        "requested_at",
        "platform",
        "external_id",
        "title",
        "status",
        "rating",
        "age_rating",
        "authors",
        "genres",
        "publish_days",
        "thumbnail_url",
        "cover_image_url",
        "episodes",
        "number",
        "published_at",
        "name",
        "role",
        "date",
        "scheduled_time",
        "dry_run",
    ];

    /// Words of the records' enums and other strings a parser looks into.
    const WORDS: &[&str] = &[
        "",
        " ",
        "1m",
        "5m",
        "1h",
        "2m",
        "adjust_redis",
        "pause_if_exceeded",
        "none",
        "NAVER",
        "KAKAO_PAGE",
        "MYSPACE",
        "ONGOING",
        "HIATUS",
        "ALL",
        "19",
        "WRITER",
        "MON",
        "12345",
        " 42 ",
        "-7",
        "9223372036854775808",
        "1e3",
        "https://img.example.com/a.png",
        "http://127.0.0.1:8089/thumbnail.png",
        "ftp://img.example.com/a.png",
        "http://",
        "data:image/png;base64,AAAA",
        "2026-11-20",
        "2026-13-01",
        "2026-11-20T15:05:00Z",
        "2026-11-20T15:05:00+09:00",
        "2026-11-20 15:05:00",
        "-5000-01-01",
        "-5000-01-01T00:00:00Z",
        "+200000-01-01T00:00:00Z",
        "9999-12-31T23:00:00Z",
        "1999-12-31T23:59:00Z",
    ];

    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => proptest::char::range(' ', '~'),
            3 => any::<char>(),
            1 => prop::sample::select(vec![
                '\0', '\u{1}', '\u{1f}', '\u{7f}', '\u{85}', '\u{a0}', '\u{200b}', '\u{feff}',
                '\u{fffd}', '가', '😀', '\u{10ffff}', '"', '\\', '\n', '\t', ' ',
            ]),
        ]
    }

    /// Instants from all over chrono's range, most in the years a record plausibly carries.
    pub(crate) fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let seconds = prop_oneof![
            // 1990 to 2100
            5 => 631_152_000_i64..4_102_444_800,
            3 => DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            2 => prop::sample::select(vec![
                0,
                946_684_800,
                253_402_297_200,
                253_402_300_799,
                -210_866_803_200,
                -210_898_425_600,
            ]),
        ];
        (
            seconds,
            prop_oneof![3 => Just(0_u32), 1 => 0_u32..1_000_000_000],
        )
            .prop_filter_map("in chrono's range", |(s, n)| {
                DateTime::<Utc>::from_timestamp(s, n)
            })
    }

    /// Days from all over chrono's range, most of them recent.
    pub(crate) fn day() -> impl Strategy<Value = NaiveDate> {
        instant().prop_map(|at| at.date_naive())
    }

    /// Strings: short ones of any characters (NUL, controls, unicode), the words parsers look
    /// for, dates and times in and out of range, and long ones around and far past the limits.
    pub(crate) fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => vec(tricky_char(), 0..24).prop_map(String::from_iter),
            3 => prop::sample::select(WORDS).prop_map(str::to_owned),
            1 => instant().prop_map(|at| at.to_rfc3339()),
            1 => day().prop_map(|d| d.to_string()),
            1 => (tricky_char(), prop_oneof![
                prop::sample::select(vec![99_usize, 100, 101, 128, 129, 199, 200, 201, 500, 501]),
                1_000_usize..70_000,
            ])
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            (-20.0_f64..20.0).prop_map(Value::from),
            (-20_i64..20).prop_map(Value::from),
            prop::sample::select(vec![
                i64::MIN,
                i64::MAX,
                1_000_000_000_000,
                1_000_000_000_001,
                1_000_000_000_000_000,
                1_000_000_000_000_001,
                i64::from(i32::MAX) + 1,
            ])
            .prop_map(Value::from),
            prop::sample::select(vec![
                -0.0,
                0.5,
                1.000_000_1,
                10.000_000_001,
                1e12,
                1.000_000_000_001e12,
                1e308,
                -1e308,
                5e-324,
                f64::MAX,
                f64::MIN,
            ])
            .prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => prop::sample::select(FIELDS).prop_map(str::to_owned),
            1 => text(),
        ]
    }

    /// Any JSON value: nested objects and arrays, strings with NUL and unicode, numbers huge,
    /// negative and fractional.
    pub(crate) fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((key(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// Tokens that are not (all) a `serde_json::Value`: numbers past f64 and u64, non-JSON
    /// literals, escapes of NUL and lone surrogates, invalid UTF-8.
    const RAW: &[&[u8]] = &[
        b"1e400",
        b"-1e400",
        b"123456789012345678901234567890",
        b"-9223372036854775809",
        b"NaN",
        b"Infinity",
        b"-0",
        b"\"\\u0000\"",
        b"\"\\ud800\"",
        b"\"a\\u0000b\"",
        b"\"\xff\xfe\"",
        b"\"\xc3\"",
        b"\xff",
        b"",
        b"[",
        b"{\"a\": 1, \"a\": 2}",
    ];

    /// A record's bytes, shown as a byte string when a property fails.
    #[derive(Clone, PartialEq, Eq)]
    pub(crate) struct Bytes(pub(crate) Vec<u8>);

    impl std::fmt::Debug for Bytes {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("b\"")?;
            for byte in &self.0 {
                write!(f, "{}", std::ascii::escape_default(*byte))?;
            }
            f.write_str("\"")
        }
    }

    impl std::ops::Deref for Bytes {
        type Target = [u8];

        fn deref(&self) -> &[u8] {
            &self.0
        }
    }

    /// Any bytes: random ones, JSON texts, JSON with bytes spliced in (invalid UTF-8, NUL,
    /// truncations).
    pub(crate) fn bytes() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            vec(any::<u8>(), 0..256),
            json().prop_map(|v| v.to_string().into_bytes()),
            (json(), any::<prop::sample::Index>(), vec(any::<u8>(), 0..4)).prop_map(
                |(v, at, junk)| {
                    let mut text = v.to_string().into_bytes();
                    let at = at.index(text.len() + 1);
                    text.splice(at..at, junk);
                    text
                }
            ),
            (json(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
                let mut text = v.to_string().into_bytes();
                text.truncate(at.index(text.len() + 1));
                text
            }),
        ]
        .prop_map(Bytes)
    }

    #[derive(Debug, Clone)]
    enum Change {
        Replace(Value),
        /// A value of the kind the sample has there (a day for a day, an instant for an
        /// instant, a string for a string, a number for a number, anything for the rest), so
        /// the parser's checks past decoding run.
        Similar(Box<Similar>),
        Remove,
        Raw(&'static [u8]),
    }

    /// Candidates for [`Change::Similar`], one per kind of value.
    #[derive(Debug, Clone)]
    struct Similar {
        text: String,
        day: NaiveDate,
        instant: DateTime<Utc>,
        number: Value,
        other: Value,
    }

    impl Similar {
        /// The candidate of the kind `old` is.
        fn to(&self, old: &Value) -> Value {
            match old {
                Value::String(old) if old.parse::<NaiveDate>().is_ok() => {
                    Value::String(self.day.to_string())
                }
                Value::String(old) if old.parse::<DateTime<Utc>>().is_ok() => {
                    Value::String(self.instant.to_rfc3339())
                }
                Value::String(_) => Value::String(self.text.clone()),
                Value::Number(_) => self.number.clone(),
                _ => self.other.clone(),
            }
        }
    }

    /// A JSON pointer to every value inside `value` (the root included).
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (name, inner) in fields {
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    pointers(inner, format!("{at}/{escaped}"), out);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    pointers(inner, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    /// Stands in for a raw token until the text is written.
    const PLACEHOLDER: &str = "\u{1}raw\u{1}";

    fn apply(sample: &Value, changes: &[(String, Change)]) -> Vec<u8> {
        let mut value = sample.clone();
        let mut raw: Option<&[u8]> = None;
        for (pointer, change) in changes {
            match change {
                Change::Remove => remove(&mut value, pointer),
                Change::Replace(new) => {
                    if let Some(slot) = value.pointer_mut(pointer) {
                        *slot = new.clone();
                    }
                }
                Change::Similar(similar) => {
                    if let Some(slot) = value.pointer_mut(pointer) {
                        *slot = similar.to(slot);
                    }
                }
                Change::Raw(token) => {
                    if let Some(slot) = value.pointer_mut(pointer) {
                        *slot = Value::String(PLACEHOLDER.to_owned());
                        raw = Some(token);
                    }
                }
            }
        }
        let text = value.to_string().into_bytes();
        let Some(token) = raw else {
            return text;
        };
        // The placeholder as serde_json writes it, replaced by the token at its first place.
        let written = Value::String(PLACEHOLDER.to_owned())
            .to_string()
            .into_bytes();
        match text.windows(written.len()).position(|w| w == written) {
            Some(at) => [&text[..at], token, &text[at + written.len()..]].concat(),
            None => text,
        }
    }

    fn remove(value: &mut Value, pointer: &str) {
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            return;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        match value.pointer_mut(parent) {
            Some(Value::Object(fields)) => {
                fields.remove(&last);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }

    /// A valid `sample` with one to three of its values (at any depth) replaced by arbitrary
    /// JSON or a raw token, or removed; sometimes with a field added.
    pub(crate) fn almost_valid(sample: &str) -> impl Strategy<Value = Bytes> + use<> {
        let sample: Value = serde_json::from_str(sample).unwrap_or(Value::Null);
        let mut paths = Vec::new();
        pointers(&sample, String::new(), &mut paths);
        paths.retain(|p| !p.is_empty());
        paths.push("/extra".to_owned());
        let change = prop_oneof![
            4 => json().prop_map(Change::Replace),
            6 => (text(), day(), instant(), number(), json()).prop_map(
                |(text, day, instant, number, other)| Change::Similar(Box::new(Similar {
                    text,
                    day,
                    instant,
                    number,
                    other,
                }))
            ),
            2 => Just(Change::Remove),
            1 => prop::sample::select(RAW).prop_map(Change::Raw),
        ];
        vec((prop::sample::select(paths), change), 1..=3).prop_map(move |changes| {
            let mut sample = sample.clone();
            if let Some(fields) = sample.as_object_mut()
                && changes.iter().any(|(p, _)| p == "/extra")
            {
                fields.insert("extra".to_owned(), Value::Null);
            }
            Bytes(apply(&sample, &changes))
        })
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read by Debug only
    struct Anything {
        #[serde(default)]
        campaign_id: Option<i64>,
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn storable_text_has_no_nul_fits_the_bound_and_is_stable(text in text()) {
            let kept = storable(&text);
            prop_assert!(!kept.contains('\0'));
            prop_assert!(kept.len() <= MAX_TEXT_BYTES);
            prop_assert_eq!(storable(&kept), kept.clone(), "storing twice changes nothing");
            let clean = text.replace('\0', "\u{FFFD}");
            if clean.len() <= MAX_TEXT_BYTES {
                prop_assert_eq!(kept, clean);
            } else {
                let cut = kept.strip_suffix('…').unwrap_or_default();
                prop_assert!(!cut.is_empty() && clean.starts_with(cut), "a prefix of the text");
            }
        }

        #[test]
        fn only_objects_decode_and_every_refusal_is_permanent(value in bytes()) {
            let first = value.iter().find(|b| !b.is_ascii_whitespace());
            match json_object::<Anything>(&value) {
                Ok(_) => prop_assert_eq!(first, Some(&b'{')),
                Err(err) => refused(&err)?,
            }
        }

        #[test]
        fn a_sample_with_a_field_changed_is_decoded_or_refused(
            value in almost_valid(r#"{"campaign_id": 1, "nested": {"a": [1, "x"]}}"#),
        ) {
            if let Err(err) = json_object::<Anything>(&value) {
                refused(&err)?;
            }
        }
    }
}
