//! The daily collection's rules (SPEC §3, issue 19): which platforms' catalog feeds to read, the
//! feed's wire format, the content hash that tells a changed title from an unchanged one, and
//! the webtoon-sync request each new or changed title becomes.
//!
//! A feed is JSON pages: `{"entries": [...], "next": "<url>" | null}`. An entry carries the
//! fields of a webtoon-sync request (SPEC §1) without `request_id`, `platform` and
//! `requested_at`, which the collection adds. Entries are checked one by one with webtoon-sync's
//! own validation, so a bad entry is counted and reported, never sent, and never stops the rest.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::WorkerError;
use crate::webtoon::{
    AgeRating, Author, Episode, Platform, RequestKind, Status, Weekday, parse_request,
};

/// One platform's feed, from `CATALOG_FEEDS` (`NAVER=https://…,KAKAO=https://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub platform: Platform,
    pub url: Url,
}

/// Reads `CATALOG_FEEDS`: comma-separated `PLATFORM=URL` pairs, each platform at most once.
pub fn parse_feeds(raw: &str) -> Result<Vec<Feed>, WorkerError> {
    let mut feeds: Vec<Feed> = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = pair.split_once('=').ok_or_else(|| {
            WorkerError::malformed(format_args!("catalog feed {pair:?} is not PLATFORM=URL"))
        })?;
        let platform: Platform = serde_json::from_value(Value::String(name.trim().to_owned()))
            .map_err(|_| WorkerError::malformed(format_args!("unknown platform {name:?}")))?;
        let url = Url::parse(url.trim())
            .map_err(|err| WorkerError::malformed(format_args!("catalog feed of {name}: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WorkerError::malformed(format_args!(
                "catalog feed of {name} is not http(s)"
            )));
        }
        if feeds.iter().any(|f| f.platform == platform) {
            return Err(WorkerError::inconsistent(format_args!(
                "platform {name} has two catalog feeds"
            )));
        }
        feeds.push(Feed { platform, url });
    }
    Ok(feeds)
}

/// One page of a feed, its entries still raw: each is checked on its own.
#[derive(Debug, Deserialize)]
pub struct FeedPage {
    pub entries: Vec<Value>,
    #[serde(default)]
    pub next: Option<String>,
}

/// Decodes a page. A page that is not this shape fails the platform (permanently: the same
/// bytes fail the same way).
pub fn parse_page(bytes: &[u8]) -> Result<FeedPage, WorkerError> {
    crate::text::json_object(bytes)
}

/// The next page's URL, resolved against the page that named it. It must stay on the feed's
/// origin: a feed that points elsewhere is not followed (that is how a compromised or confused
/// feed would make the collection fetch for someone else).
pub fn next_page(feed: &Url, current: &Url, next: &str) -> Result<Url, WorkerError> {
    let url = current
        .join(next)
        .map_err(|err| WorkerError::malformed(format_args!("next page {next:?}: {err}")))?;
    if url.origin() != feed.origin() {
        return Err(WorkerError::inconsistent(format_args!(
            "next page {url} leaves the feed's origin {}",
            feed.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

/// The descriptive content of an entry, in a fixed field order: what the content hash covers
/// and what a request carries. Unknown fields in the feed are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub external_id: String,
    pub title: Option<String>,
    pub status: Option<Status>,
    pub rating: Option<f64>,
    pub age_rating: Option<AgeRating>,
    pub authors: Option<Vec<Author>>,
    pub genres: Option<Vec<String>>,
    pub publish_days: Option<Vec<Weekday>>,
    pub thumbnail_url: Option<Url>,
    pub cover_image_url: Option<Url>,
    #[serde(default)]
    pub episodes: Vec<Episode>,
}

/// An entry ready to send: its key, hash and the request body for either queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub external_id: String,
    pub content_hash: String,
    entry: Entry,
}

/// Whether a title is new, changed or unchanged since the last collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
}

impl Change {
    /// New titles are created, changed ones updated (with every field: the entry is whole).
    pub fn kind(self) -> Option<RequestKind> {
        match self {
            Self::New => Some(RequestKind::Create),
            Self::Changed => Some(RequestKind::Update),
            Self::Unchanged => None,
        }
    }
}

/// Compares an entry's hash with the one stored by the last collection.
pub fn classify(stored_hash: Option<&str>, content_hash: &str) -> Change {
    match stored_hash {
        None => Change::New,
        Some(stored) if stored == content_hash => Change::Unchanged,
        Some(_) => Change::Changed,
    }
}

/// Checks one raw entry of `platform`'s feed exactly as webtoon-sync will check its request, and
/// hashes its content. The hash covers the typed fields in a fixed order, so key order and
/// unknown fields in the feed do not make a title look changed.
pub fn prepare(
    platform: Platform,
    raw: Value,
    now: DateTime<Utc>,
) -> Result<Prepared, WorkerError> {
    let entry: Entry = serde_json::from_value(raw)
        .map_err(|err| WorkerError::malformed(format_args!("catalog entry: {err}")))?;
    let canonical = serde_json::to_vec(&entry)
        .map_err(|err| WorkerError::malformed(format_args!("catalog entry: {err}")))?;
    let content_hash = hex::encode(Sha256::digest(&canonical));
    let prepared = Prepared {
        external_id: entry.external_id.clone(),
        content_hash,
        entry,
    };
    // The request a new title becomes (the strictest: create needs a title and a status).
    let probe = prepared.request(platform, RequestKind::Create, now)?;
    parse_request(RequestKind::Create, &probe.body, now)?;
    Ok(prepared)
}

/// One request for a webtoon queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_id: String,
    pub kind: RequestKind,
    pub body: String,
}

impl Prepared {
    /// The request for this content. Its id is derived from the platform, the title and the
    /// content hash, so the same content is always the same request: a re-run, or a resend after
    /// a crash, is deduplicated by webtoon-sync instead of applied twice.
    pub fn request(
        &self,
        platform: Platform,
        kind: RequestKind,
        requested_at: DateTime<Utc>,
    ) -> Result<Request, WorkerError> {
        let request_id = request_id(platform, &self.external_id, &self.content_hash);
        let mut body = serde_json::to_value(&self.entry)
            .map_err(|err| WorkerError::malformed(format_args!("catalog entry: {err}")))?;
        if let Value::Object(fields) = &mut body {
            fields.retain(|_, v| !v.is_null());
            fields.insert("request_id".into(), Value::String(request_id.clone()));
            fields.insert("platform".into(), Value::String(platform.as_str().into()));
            fields.insert(
                "requested_at".into(),
                Value::String(requested_at.to_rfc3339()),
            );
        }
        Ok(Request {
            request_id,
            kind,
            body: body.to_string(),
        })
    }
}

/// `catalog:NAVER:<external id>:<first 16 hex of the content hash>`.
pub fn request_id(platform: Platform, external_id: &str, content_hash: &str) -> String {
    let short = content_hash.get(..16).unwrap_or(content_hash);
    format!("catalog:{}:{external_id}:{short}", platform.as_str())
}

/// What happened to one platform in a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlatformSummary {
    pub fetched: i64,
    pub new: i64,
    pub changed: i64,
    pub unchanged: i64,
    /// Entries refused (invalid, duplicated in the feed) or not sent.
    pub failed: i64,
    pub pages: i64,
    /// Titles earlier collections stored that the feed, read to its end, no longer lists
    /// (reported, not deleted); `None` when the feed was not read to its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone: Option<i64>,
    /// Why the platform could not be read to its end; what was read before still counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether that error may pass on a retry (an outage, not a broken feed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

impl fmt::Display for PlatformSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fetched {} new {} changed {} unchanged {} failed {}",
            self.fetched, self.new, self.changed, self.unchanged, self.failed
        )
    }
}

/// The titles stored for a platform that its feed no longer lists, with the day each was last
/// listed: the most recently listed first (the newly gone), then by id. Only a feed read to its
/// end says what it no longer lists.
pub fn gone<'a>(
    stored: impl IntoIterator<Item = (&'a str, NaiveDate)>,
    listed: &HashSet<String>,
) -> Vec<(&'a str, NaiveDate)> {
    let mut gone: Vec<(&str, NaiveDate)> = stored
        .into_iter()
        .filter(|(id, _)| !listed.contains(*id))
        .collect();
    gone.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    gone
}

/// The longest body SQS takes in one message (256 KiB); a larger entry is refused, not sent.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// At most ten messages, and 256 KiB, per SendMessageBatch.
pub const MAX_BATCH_MESSAGES: usize = 10;

/// Splits requests into SendMessageBatch calls: at most ten messages and 256 KiB each.
/// Requests larger than one message allows are returned apart.
pub fn batches(requests: Vec<Request>) -> (Vec<Vec<Request>>, Vec<Request>) {
    let mut out: Vec<Vec<Request>> = Vec::new();
    let mut oversized = Vec::new();
    let mut current: Vec<Request> = Vec::new();
    let mut bytes = 0;
    for request in requests {
        let size = request.body.len();
        if size > MAX_MESSAGE_BYTES {
            oversized.push(request);
            continue;
        }
        if current.len() == MAX_BATCH_MESSAGES || bytes + size > MAX_MESSAGE_BYTES {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(request);
    }
    if !current.is_empty() {
        out.push(current);
    }
    (out, oversized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-23T17:00:00Z".parse().expect("time")
    }

    fn entry(id: &str, title: &str) -> Value {
        json!({
            "external_id": id, "title": title, "status": "ONGOING",
            "genres": ["ROMANCE"], "authors": [{"name": "Kim", "role": "WRITER"}],
            "episodes": [{"number": 1, "title": "1화"}]
        })
    }

    #[test]
    fn feeds_are_platform_url_pairs() {
        let feeds =
            parse_feeds("NAVER=https://a.example/n.json, KAKAO=http://b.example/k").expect("feeds");
        assert_eq!(feeds.len(), 2);
        assert_eq!(feeds[1].platform, Platform::Kakao);
        assert!(parse_feeds("").expect("none").is_empty());
        for bad in [
            "NAVER",
            "MARS=https://a.example",
            "NAVER=ftp://a.example",
            "NAVER=https://a.example,NAVER=https://b.example",
        ] {
            assert!(parse_feeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hash_ignores_key_order_and_unknown_fields() {
        let a = prepare(Platform::Naver, entry("7", "하늘"), now()).expect("valid");
        let mut reordered = json!({"extra": 1, "title": "하늘", "external_id": "7"});
        for (k, v) in entry("7", "하늘").as_object().expect("object") {
            reordered[k] = v.clone();
        }
        let b = prepare(Platform::Naver, reordered, now()).expect("valid");
        assert_eq!(a.content_hash, b.content_hash);
        let c = prepare(Platform::Naver, entry("7", "바다"), now()).expect("valid");
        assert_ne!(a.content_hash, c.content_hash);
    }

    #[test]
    fn titles_are_new_changed_or_unchanged() {
        assert_eq!(classify(None, "h"), Change::New);
        assert_eq!(classify(Some("h"), "h"), Change::Unchanged);
        assert_eq!(classify(Some("g"), "h"), Change::Changed);
        assert_eq!(Change::New.kind(), Some(RequestKind::Create));
        assert_eq!(Change::Changed.kind(), Some(RequestKind::Update));
        assert_eq!(Change::Unchanged.kind(), None);
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason_webtoon_sync_would_give() {
        for bad in [
            json!({"title": "no id", "status": "ONGOING"}),
            json!({"external_id": "1", "status": "ONGOING"}),
            json!({"external_id": "1", "title": "x", "status": "ONGOING", "rating": 11.0}),
            json!({"external_id": "1", "title": "x", "status": "ONGOING",
                   "thumbnail_url": "ftp://images.example/a.png"}),
            json!({"external_id": " ", "title": "x", "status": "ONGOING"}),
            json!([1, 2]),
        ] {
            let err = prepare(Platform::Naver, bad.clone(), now()).expect_err("refused");
            assert!(!err.is_retryable(), "{bad}");
        }
    }

    #[test]
    fn the_same_content_is_the_same_request() {
        let prepared = prepare(Platform::Kakao, entry("42", "별"), now()).expect("valid");
        let first = prepared
            .request(Platform::Kakao, RequestKind::Create, now())
            .expect("request");
        let again = prepared
            .request(Platform::Kakao, RequestKind::Create, now())
            .expect("request");
        assert_eq!(first, again);
        assert!(first.request_id.starts_with("catalog:KAKAO:42:"));
        let sent = parse_request(RequestKind::Create, &first.body, now()).expect("valid request");
        assert_eq!(sent.request_id, first.request_id);
        assert_eq!(sent.key.external_id, "42");
    }

    #[test]
    fn next_pages_stay_on_the_feed_origin() {
        let feed = Url::parse("https://feeds.example/naver/catalog.json").expect("url");
        let page2 = next_page(&feed, &feed, "catalog.json?page=2").expect("same origin");
        assert_eq!(
            page2.as_str(),
            "https://feeds.example/naver/catalog.json?page=2"
        );
        assert!(next_page(&feed, &feed, "https://evil.example/x").is_err());
        assert!(next_page(&feed, &feed, "http://feeds.example/x").is_err());
    }

    #[test]
    fn batches_hold_ten_messages_and_256_kib() {
        let request = |n: usize| Request {
            request_id: n.to_string(),
            kind: RequestKind::Create,
            body: "x".repeat(n),
        };
        let (small, oversized) = batches((0..25).map(|_| request(10)).collect());
        assert_eq!(
            small.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert!(oversized.is_empty());
        let (large, oversized) = batches(vec![
            request(200 * 1024),
            request(100 * 1024),
            request(MAX_MESSAGE_BYTES + 1),
        ]);
        assert_eq!(large.len(), 2);
        assert_eq!(oversized.len(), 1);
    }

    #[test]
    fn gone_titles_are_the_stored_ones_no_longer_listed_newly_gone_first() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).expect("day");
        let listed: HashSet<String> = ["a", "c"].map(String::from).into();
        let stored = [
            ("a", day(23)),
            ("b", day(20)),
            ("c", day(23)),
            ("d", day(22)),
            ("e", day(22)),
        ];
        assert_eq!(
            gone(stored, &listed),
            vec![("d", day(22)), ("e", day(22)), ("b", day(20))]
        );
        assert!(gone([("a", day(23))], &listed).is_empty());
    }
}
