//! Webtoon sync requests (SPEC §1): the wire schema, its validation, and the completion message.
//!
//! Create and update requests share one schema; an update may leave any descriptive field out,
//! meaning "unchanged". `requested_at` orders requests for the same webtoon, so a late, older
//! update never overwrites newer data (SQS standard queues do not preserve order).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::WorkerError;

const MAX_TITLE_CHARS: usize = 500;
const MAX_EXTERNAL_ID_CHARS: usize = 100;
const MAX_EPISODES_PER_REQUEST: usize = 2_000;

/// Which inbound queue a request came from; it decides the completion queue and the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Create,
    Update,
}

impl RequestKind {
    /// Recognises the inbound queue by the end of its name, so prefixed names (one stack per
    /// stage, or per test) still resolve.
    pub fn from_queue_name(queue: &str) -> Option<Self> {
        if queue.ends_with("webtoon-create-request") {
            Some(Self::Create)
        } else if queue.ends_with("webtoon-update-request") {
            Some(Self::Update)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Platform {
    Naver,
    Kakao,
    KakaoPage,
    Lezhin,
    Bomtoon,
    Toptoon,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Naver => "NAVER",
            Self::Kakao => "KAKAO",
            Self::KakaoPage => "KAKAO_PAGE",
            Self::Lezhin => "LEZHIN",
            Self::Bomtoon => "BOMTOON",
            Self::Toptoon => "TOPTOON",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Ongoing,
    Completed,
    Hiatus,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ongoing => "ONGOING",
            Self::Completed => "COMPLETED",
            Self::Hiatus => "HIATUS",
        }
    }
}

/// Korean content ratings as the platforms publish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgeRating {
    #[serde(rename = "ALL")]
    All,
    #[serde(rename = "12")]
    Twelve,
    #[serde(rename = "15")]
    Fifteen,
    #[serde(rename = "19")]
    Nineteen,
}

impl AgeRating {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::Twelve => "12",
            Self::Fifteen => "15",
            Self::Nineteen => "19",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "MON",
            Self::Tue => "TUE",
            Self::Wed => "WED",
            Self::Thu => "THU",
            Self::Fri => "FRI",
            Self::Sat => "SAT",
            Self::Sun => "SUN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorRole {
    Writer,
    Artist,
    Original,
}

impl AuthorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Writer => "WRITER",
            Self::Artist => "ARTIST",
            Self::Original => "ORIGINAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
    pub role: AuthorRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub number: i32,
    pub title: String,
    #[serde(default)]
    pub thumbnail_url: Option<Url>,
    #[serde(default)]
    pub published_at: Option<NaiveDate>,
}

/// The natural key of a webtoon: one row per platform and platform id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebtoonKey {
    pub platform: Platform,
    pub external_id: String,
}

impl fmt::Display for WebtoonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform.as_str(), self.external_id)
    }
}

/// The descriptive fields of a request; `None` means "leave as stored" (updates only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebtoonFields {
    pub title: Option<String>,
    pub status: Option<Status>,
    pub rating: Option<f64>,
    pub age_rating: Option<AgeRating>,
    pub authors: Option<Vec<Author>>,
    pub genres: Option<Vec<String>>,
    pub publish_days: Option<Vec<Weekday>>,
    pub thumbnail_url: Option<Url>,
    pub cover_image_url: Option<Url>,
    /// Episodes are upserted by number; an episode left out is never deleted.
    pub episodes: Vec<Episode>,
}

/// A validated create or update request.
#[derive(Debug, Clone, PartialEq)]
pub struct WebtoonRequest {
    pub kind: RequestKind,
    pub request_id: String,
    pub key: WebtoonKey,
    pub requested_at: DateTime<Utc>,
    pub fields: WebtoonFields,
}

/// The message body exactly as producers send it (documented in docs/functions/webtoon-sync.md).
#[derive(Deserialize)]
struct WireRequest {
    request_id: String,
    platform: Platform,
    external_id: String,
    requested_at: DateTime<Utc>,
    title: Option<String>,
    status: Option<Status>,
    rating: Option<f64>,
    age_rating: Option<AgeRating>,
    authors: Option<Vec<Author>>,
    genres: Option<Vec<String>>,
    publish_days: Option<Vec<Weekday>>,
    thumbnail_url: Option<Url>,
    cover_image_url: Option<Url>,
    #[serde(default)]
    episodes: Vec<Episode>,
}

/// How far ahead of the time a request is received its `requested_at` may be (clock skew).
pub const MAX_REQUEST_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Decodes and validates one request body received at `received_at`. Every error is permanent:
/// the same bytes will fail the same way on every delivery. A `requested_at` from the future is
/// refused: it would make every real update of that webtoon look older, and answer `stale`.
pub fn parse_request(
    kind: RequestKind,
    body: &str,
    received_at: DateTime<Utc>,
) -> Result<WebtoonRequest, WorkerError> {
    let wire: WireRequest = crate::text::json_object(body.as_bytes())?;
    if wire.requested_at > received_at + MAX_REQUEST_CLOCK_SKEW {
        return Err(WorkerError::out_of_range(format_args!(
            "requested_at {} is in the future (received at {received_at})",
            wire.requested_at
        )));
    }
    if wire.requested_at.year() < 2000 {
        return Err(WorkerError::out_of_range(format_args!(
            "requested_at {} is before 2000",
            wire.requested_at
        )));
    }
    let request_id = non_blank("request_id", wire.request_id, 200)?;
    let external_id = non_blank("external_id", wire.external_id, MAX_EXTERNAL_ID_CHARS)?;
    let title = wire
        .title
        .map(|t| non_blank("title", t, MAX_TITLE_CHARS))
        .transpose()?;

    if kind == RequestKind::Create {
        if title.is_none() {
            return Err(WorkerError::missing(
                "create request: missing field `title`",
            ));
        }
        if wire.status.is_none() {
            return Err(WorkerError::missing(
                "create request: missing field `status`",
            ));
        }
    }
    if let Some(rating) = wire.rating
        && !(0.0..=10.0).contains(&rating)
    {
        return Err(WorkerError::out_of_range(format_args!(
            "rating {rating} is outside 0.0..=10.0"
        )));
    }
    let authors = wire.authors.map(validate_authors).transpose()?;
    let genres = wire.genres.map(validate_genres).transpose()?;
    let publish_days = wire.publish_days.map(dedup);
    for url in [&wire.thumbnail_url, &wire.cover_image_url]
        .into_iter()
        .flatten()
    {
        check_image_url(url)?;
    }
    let episodes = validate_episodes(wire.episodes)?;

    Ok(WebtoonRequest {
        kind,
        request_id,
        key: WebtoonKey {
            platform: wire.platform,
            external_id,
        },
        requested_at: wire.requested_at,
        fields: WebtoonFields {
            title,
            status: wire.status,
            rating: wire.rating,
            age_rating: wire.age_rating,
            authors,
            genres,
            publish_days,
            thumbnail_url: wire.thumbnail_url,
            cover_image_url: wire.cover_image_url,
            episodes,
        },
    })
}

impl WebtoonRequest {
    /// Every distinct image URL the request refers to, webtoon images first.
    pub fn image_urls(&self) -> Vec<&Url> {
        let f = &self.fields;
        let mut seen = HashSet::new();
        [&f.thumbnail_url, &f.cover_image_url]
            .into_iter()
            .flatten()
            .chain(f.episodes.iter().filter_map(|e| e.thumbnail_url.as_ref()))
            .filter(|url| seen.insert(url.as_str()))
            .collect()
    }
}

fn non_blank(field: &str, value: String, max_chars: usize) -> Result<String, WorkerError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(WorkerError::missing(format_args!("`{field}` is blank")));
    }
    // PostgreSQL text and jsonb refuse NUL: refused here, with its reason, not by the database.
    if trimmed.contains('\0') {
        return Err(WorkerError::malformed(format_args!(
            "`{field}` contains a NUL character"
        )));
    }
    if trimmed.chars().count() > max_chars {
        return Err(WorkerError::out_of_range(format_args!(
            "`{field}` is longer than {max_chars} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

fn validate_authors(authors: Vec<Author>) -> Result<Vec<Author>, WorkerError> {
    let authors = authors
        .into_iter()
        .map(|a| {
            Ok(Author {
                name: non_blank("authors[].name", a.name, 200)?,
                role: a.role,
            })
        })
        .collect::<Result<Vec<_>, WorkerError>>()?;
    Ok(dedup(authors))
}

fn validate_genres(genres: Vec<String>) -> Result<Vec<String>, WorkerError> {
    let genres = genres
        .into_iter()
        .map(|g| non_blank("genres[]", g, 100))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedup(genres))
}

fn validate_episodes(episodes: Vec<Episode>) -> Result<Vec<Episode>, WorkerError> {
    if episodes.len() > MAX_EPISODES_PER_REQUEST {
        return Err(WorkerError::out_of_range(format_args!(
            "{} episodes in one request; at most {MAX_EPISODES_PER_REQUEST}",
            episodes.len()
        )));
    }
    let mut numbers = HashSet::new();
    episodes
        .into_iter()
        .map(|e| {
            if e.number < 1 {
                return Err(WorkerError::out_of_range(format_args!(
                    "episode number {} is below 1",
                    e.number
                )));
            }
            if !numbers.insert(e.number) {
                return Err(WorkerError::inconsistent(format_args!(
                    "episode number {} appears twice",
                    e.number
                )));
            }
            if let Some(url) = &e.thumbnail_url {
                check_image_url(url)?;
            }
            if let Some(day) = e.published_at
                && !(1900..=9999).contains(&day.year())
            {
                return Err(WorkerError::out_of_range(format_args!(
                    "episode {} published_at {day} is outside the years 1900-9999",
                    e.number
                )));
            }
            Ok(Episode {
                title: non_blank("episodes[].title", e.title, MAX_TITLE_CHARS)?,
                ..e
            })
        })
        .collect()
}

fn check_image_url(url: &Url) -> Result<(), WorkerError> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(WorkerError::malformed(format_args!(
            "image URL {url} is not an http(s) URL with a host"
        ))),
    }
}

/// Keeps the first of each value, in order.
fn dedup<T: Eq + std::hash::Hash + Clone>(items: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// What became of a request; sold to downstream consumers in the completion message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    /// An update older than the data already stored; nothing was changed.
    Stale,
    /// An update for a webtoon that was never created.
    NotFound,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Stale => "stale",
            Self::NotFound => "not_found",
        }
    }
}

/// An image that could not be stored; the webtoon itself was still saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFailure {
    pub url: String,
    pub reason: String,
}

/// The completion message, one per request. It is recorded with the request, so a resend after
/// a crash carries exactly the same body; consumers de-duplicate on `request_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub request_id: String,
    pub kind: RequestKind,
    pub platform: Platform,
    pub external_id: String,
    pub webtoon_id: Option<i64>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_failures: Vec<ImageFailure>,
    pub completed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = r#"{
        "request_id": "req-1", "platform": "NAVER", "external_id": " 783053 ",
        "requested_at": "2026-11-20T01:02:03Z", "title": "Tower", "status": "ONGOING",
        "rating": 9.8, "age_rating": "12", "genres": ["FANTASY", "FANTASY", "ACTION"],
        "authors": [{"name": "SIU", "role": "WRITER"}, {"name": "SIU", "role": "WRITER"}],
        "publish_days": ["MON", "MON"],
        "thumbnail_url": "https://img.example.com/t.png",
        "cover_image_url": "https://img.example.com/t.png",
        "episodes": [{"number": 1, "title": "Ep 1", "thumbnail_url": "https://img.example.com/e1.png",
                      "published_at": "2010-06-30"}]
    }"#;

    /// When the test messages arrive: a day after they were requested.
    fn received() -> DateTime<Utc> {
        "2026-11-21T00:00:00Z".parse().expect("instant")
    }

    fn parse(kind: RequestKind, body: &str) -> Result<WebtoonRequest, WorkerError> {
        parse_request(kind, body, received())
    }

    #[test]
    fn a_request_from_the_future_is_refused() {
        let body = CREATE.replace("2026-11-20T01:02:03Z", "2099-01-01T00:00:00Z");
        assert!(reason(parse(RequestKind::Create, &body)).contains("in the future"));
        let skewed = CREATE.replace("2026-11-20T01:02:03Z", "2026-11-21T00:04:00Z");
        assert!(
            parse(RequestKind::Create, &skewed).is_ok(),
            "within the clock skew"
        );
    }

    fn reason(result: Result<WebtoonRequest, WorkerError>) -> String {
        match result {
            Err(WorkerError::Rejected(rejection)) => rejection.reason().to_owned(),
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn a_full_create_request_is_normalised() {
        let req = parse(RequestKind::Create, CREATE).expect("valid");
        assert_eq!(req.key.to_string(), "NAVER:783053");
        assert_eq!(
            req.fields.genres.as_deref(),
            Some(&["FANTASY".to_owned(), "ACTION".to_owned()][..])
        );
        assert_eq!(req.fields.authors.as_ref().map(Vec::len), Some(1));
        assert_eq!(req.fields.publish_days, Some(vec![Weekday::Mon]));
        let urls: Vec<_> = req.image_urls().iter().map(|u| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://img.example.com/t.png",
                "https://img.example.com/e1.png"
            ]
        );
    }

    #[test]
    fn an_update_may_be_partial() {
        let body = r#"{"request_id": "r", "platform": "KAKAO", "external_id": "9",
                       "requested_at": "2026-11-20T00:00:00Z", "rating": 7.5}"#;
        let req = parse(RequestKind::Update, body).expect("partial update is valid");
        assert_eq!(req.fields.rating, Some(7.5));
        assert_eq!(req.fields.title, None);
        assert!(req.fields.episodes.is_empty());
    }

    #[test]
    fn a_create_needs_title_and_status() {
        let body = r#"{"request_id": "r", "platform": "KAKAO", "external_id": "9",
                       "requested_at": "2026-11-20T00:00:00Z", "status": "ONGOING"}"#;
        assert!(reason(parse(RequestKind::Create, body)).contains("`title`"));
    }

    #[test]
    fn bad_input_is_permanent_with_a_reason() {
        let unknown_platform = CREATE.replace("NAVER", "MYSPACE");
        assert!(
            reason(parse(RequestKind::Create, &unknown_platform))
                .contains("unknown variant `MYSPACE`")
        );

        let missing_id = CREATE.replace(r#""request_id": "req-1","#, "");
        assert!(
            reason(parse(RequestKind::Create, &missing_id)).contains("missing field `request_id`")
        );

        assert!(reason(parse(RequestKind::Create, "not json")).starts_with("malformed JSON"));

        let bad_rating = CREATE.replace("9.8", "11.5");
        assert!(reason(parse(RequestKind::Create, &bad_rating)).contains("outside 0.0..=10.0"));

        let ftp = CREATE.replace(
            "https://img.example.com/e1.png",
            "ftp://img.example.com/e1.png",
        );
        assert!(reason(parse(RequestKind::Create, &ftp)).contains("not an http(s) URL"));

        let blank_title = CREATE.replace(r#""Tower""#, r#""   ""#);
        assert!(reason(parse(RequestKind::Create, &blank_title)).contains("`title` is blank"));
    }

    #[test]
    fn episode_numbers_are_positive_and_unique() {
        let twice = CREATE.replace(
            r#""episodes": ["#,
            r#""episodes": [{"number": 1, "title": "again"},"#,
        );
        assert!(reason(parse(RequestKind::Create, &twice)).contains("appears twice"));
        let zero = CREATE.replace(r#""number": 1"#, r#""number": 0"#);
        assert!(reason(parse(RequestKind::Create, &zero)).contains("below 1"));
    }

    #[test]
    fn queues_are_recognised_by_suffix() {
        assert_eq!(
            RequestKind::from_queue_name("webtoon-create-request"),
            Some(RequestKind::Create)
        );
        assert_eq!(
            RequestKind::from_queue_name("t42-webtoon-update-request"),
            Some(RequestKind::Update)
        );
        assert_eq!(
            RequestKind::from_queue_name("webtoon-create-complete"),
            None
        );
    }

    #[test]
    fn completion_round_trips_and_omits_empty_failures() {
        let completion = Completion {
            request_id: "r".into(),
            kind: RequestKind::Update,
            platform: Platform::KakaoPage,
            external_id: "1".into(),
            webtoon_id: None,
            outcome: Outcome::NotFound,
            image_failures: vec![],
            completed_at: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&completion).expect("serialises");
        assert_eq!(json["outcome"], "not_found");
        assert_eq!(json["platform"], "KAKAO_PAGE");
        assert!(json.get("image_failures").is_none());
        let back: Completion = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, completion);
    }
}

/// Properties of [`parse_request`] over arbitrary bodies, both kinds and any receiving time: it
/// never panics, refuses with a permanent, storable reason, and accepts only requests whose
/// every value the webtoon tables (and the completion's `jsonb`) hold.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::text::properties::{
        almost_valid, bytes, config, instant, json, postgres_holds_date, postgres_holds_text,
        postgres_holds_timestamp, refused,
    };

    const SAMPLE: &str = r#"{
        "request_id": "req-1", "platform": "NAVER", "external_id": " 783053 ",
        "requested_at": "2026-11-20T01:02:03Z", "title": "Tower", "status": "ONGOING",
        "rating": 9.8, "age_rating": "12", "genres": ["FANTASY", "ACTION"],
        "authors": [{"name": "SIU", "role": "WRITER"}], "publish_days": ["MON", "SAT"],
        "thumbnail_url": "https://img.example.com/t.png",
        "cover_image_url": "https://img.example.com/c.png",
        "episodes": [{"number": 1, "title": "Ep 1", "thumbnail_url": "https://img.example.com/e1.png",
                      "published_at": "2010-06-30"}, {"number": 2, "title": "Ep 2"}]
    }"#;

    fn received() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            3 => Just(DateTime::<Utc>::from_timestamp(1_795_219_200, 0).unwrap_or_default()),
            1 => instant(),
        ]
    }

    fn kind() -> impl Strategy<Value = RequestKind> {
        prop_oneof![Just(RequestKind::Create), Just(RequestKind::Update)]
    }

    /// Trimmed, not blank, within `max` characters, and storable.
    fn field(name: &str, text: &str, max: usize) -> Result<(), TestCaseError> {
        prop_assert!(!text.is_empty() && text.trim() == text, "{name} {text:?}");
        prop_assert!(text.chars().count() <= max, "{name} is too long");
        prop_assert!(
            postgres_holds_text(text),
            "{name} {text:?} has a NUL, which PostgreSQL text and jsonb refuse"
        );
        Ok(())
    }

    fn image(url: &Url) -> Result<(), TestCaseError> {
        prop_assert!(matches!(url.scheme(), "http" | "https") && url.host().is_some());
        prop_assert!(postgres_holds_text(url.as_str()));
        Ok(())
    }

    fn check(
        kind: RequestKind,
        body: &str,
        received_at: DateTime<Utc>,
    ) -> Result<(), TestCaseError> {
        let request = match parse_request(kind, body, received_at) {
            Ok(request) => request,
            Err(err) => return refused(&err),
        };
        prop_assert_eq!(request.kind, kind);
        field("request_id", &request.request_id, 200)?;
        field(
            "external_id",
            &request.key.external_id,
            MAX_EXTERNAL_ID_CHARS,
        )?;
        prop_assert!(request.requested_at <= received_at + MAX_REQUEST_CLOCK_SKEW);
        prop_assert!(
            postgres_holds_timestamp(request.requested_at),
            "requested_at {} is outside PostgreSQL's timestamptz",
            request.requested_at
        );
        let f = &request.fields;
        if kind == RequestKind::Create {
            prop_assert!(f.title.is_some() && f.status.is_some());
        }
        if let Some(title) = &f.title {
            field("title", title, MAX_TITLE_CHARS)?;
        }
        if let Some(rating) = f.rating {
            prop_assert!((0.0..=10.0).contains(&rating));
        }
        for author in f.authors.iter().flatten() {
            field("authors[].name", &author.name, 200)?;
        }
        for genre in f.genres.iter().flatten() {
            field("genres[]", genre, 100)?;
        }
        for url in [&f.thumbnail_url, &f.cover_image_url].into_iter().flatten() {
            image(url)?;
        }
        prop_assert!(f.episodes.len() <= MAX_EPISODES_PER_REQUEST);
        let mut numbers = HashSet::new();
        for episode in &f.episodes {
            prop_assert!(episode.number >= 1 && numbers.insert(episode.number));
            field("episodes[].title", &episode.title, MAX_TITLE_CHARS)?;
            if let Some(url) = &episode.thumbnail_url {
                image(url)?;
            }
            if let Some(day) = episode.published_at {
                prop_assert!(
                    postgres_holds_date(day),
                    "published_at {day} is outside PostgreSQL's date"
                );
            }
        }
        let urls = request.image_urls();
        let distinct: HashSet<&str> = urls.iter().map(|u| u.as_str()).collect();
        prop_assert_eq!(distinct.len(), urls.len());
        Ok(())
    }

    #[test]
    fn the_sample_is_valid() {
        let at = "2026-11-21T00:00:00Z".parse().expect("instant");
        assert!(parse_request(RequestKind::Create, SAMPLE, at).is_ok());
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_are_parsed_or_refused(
            kind in kind(),
            body in bytes(),
            at in received(),
        ) {
            check(kind, &String::from_utf8_lossy(&body), at)?;
        }

        #[test]
        fn arbitrary_json_is_parsed_or_refused(kind in kind(), body in json(), at in received()) {
            check(kind, &body.to_string(), at)?;
        }

        #[test]
        fn a_request_with_a_field_changed_is_parsed_or_refused(
            kind in kind(),
            body in almost_valid(SAMPLE),
            at in received(),
        ) {
            check(kind, &String::from_utf8_lossy(&body), at)?;
        }
    }
}
