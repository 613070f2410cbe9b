//! Operations-console alerts (SPEC §2, seed 004): what an alert request must be, the records
//! on `alert-created-topic` and `user-alert-topic`, what each channel is sent, and a status
//! from its deliveries. Pure: the three alert functions do the I/O.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::WorkerError;
use crate::notice::Notice;

/// The topic alert-intake publishes to (through the outbox) and alert-fanout reads.
pub const ALERT_CREATED_TOPIC: &str = "alert-created-topic";
/// The topic alert-fanout publishes to, keyed by user id, and user-alert-delivery reads.
pub const USER_ALERT_TOPIC: &str = "user-alert-topic";

pub const MAX_KIND_LEN: usize = 64;
pub const MAX_APP_NAME_LEN: usize = 128;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 4000;
pub const MAX_DEDUPE_KEY_LEN: usize = 128;
pub const MAX_USER_ID_LEN: usize = 128;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// `POST /alerts`'s body. Unknown fields are refused: a console that misspells `dedupe_key`
/// must hear about it, not create duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRequest {
    pub alert_kind: String,
    pub app_name: String,
    pub title: String,
    pub body: String,
    pub severity: Severity,
    #[serde(default)]
    pub dedupe_key: Option<String>,
}

/// Checks an alert request's fields; the first flaw found is the answer.
pub fn validate(request: &AlertRequest) -> Result<(), WorkerError> {
    kind("alert_kind", &request.alert_kind)?;
    app("app_name", &request.app_name)?;
    title("title", &request.title)?;
    body("body", &request.body)?;
    if let Some(key) = &request.dedupe_key {
        token("dedupe_key", key, MAX_DEDUPE_KEY_LEN, |c| {
            c.is_ascii_graphic()
        })?;
    }
    Ok(())
}

/// An alert kind: `A-Z 0-9 _`, like `DEPLOYMENT`.
fn kind(field: &str, value: &str) -> Result<(), WorkerError> {
    token(field, value, MAX_KIND_LEN, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    })
}

/// An app name: `A-Z a-z 0-9 - _ .`, like `bank-api`.
fn app(field: &str, value: &str) -> Result<(), WorkerError> {
    token(field, value, MAX_APP_NAME_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    })
}

/// A non-empty identifier of at most `max` characters, each allowed by `allowed`.
fn token(
    field: &str,
    value: &str,
    max: usize,
    allowed: fn(char) -> bool,
) -> Result<(), WorkerError> {
    if value.is_empty() {
        return Err(WorkerError::missing(format_args!("{field} is empty")));
    }
    if value.len() > max {
        return Err(WorkerError::out_of_range(format_args!(
            "{field} is longer than {max} characters"
        )));
    }
    if !value.chars().all(allowed) {
        return Err(WorkerError::malformed(format_args!(
            "{field} has a character outside its alphabet"
        )));
    }
    Ok(())
}

/// What free text may hold besides printable characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaks {
    /// One line: no control character at all, and no Unicode line or paragraph separator
    /// (U+2028, U+2029), which a client would also show as a new line.
    None,
    /// Lines: tabs and line breaks (`\n`, or `\r\n`); a lone `\r` is refused, since a
    /// terminal shows it as a return to the start of the line, over what came before.
    Lines,
}

/// A title: not blank, at most [`MAX_TITLE_CHARS`] characters, one line.
fn title(field: &str, value: &str) -> Result<(), WorkerError> {
    text(field, value, MAX_TITLE_CHARS, Breaks::None)
}

/// A body: not blank, at most [`MAX_BODY_CHARS`] characters, lines and tabs allowed.
fn body(field: &str, value: &str) -> Result<(), WorkerError> {
    text(field, value, MAX_BODY_CHARS, Breaks::Lines)
}

/// Free text: not blank, at most `max` characters, no control characters but what `breaks`
/// allows.
fn text(field: &str, value: &str, max: usize, breaks: Breaks) -> Result<(), WorkerError> {
    if value.trim().is_empty() {
        return Err(WorkerError::missing(format_args!("{field} is blank")));
    }
    if value.chars().count() > max {
        return Err(WorkerError::out_of_range(format_args!(
            "{field} is longer than {max} characters"
        )));
    }
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let allowed = match (breaks, c) {
            (_, '\u{2028}' | '\u{2029}') => breaks == Breaks::Lines,
            (Breaks::Lines, '\n' | '\t') => true,
            (Breaks::Lines, '\r') => chars.next_if_eq(&'\n').is_some(),
            (_, c) => !c.is_control(),
        };
        if !allowed {
            let what = match breaks {
                Breaks::None => "control characters or line breaks",
                Breaks::Lines => "control characters other than tabs and line breaks",
            };
            return Err(WorkerError::malformed(format_args!(
                "{field} contains {what}"
            )));
        }
    }
    Ok(())
}

/// The record on `alert-created-topic` (the seed's `AlertCreatedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertCreated {
    pub alert_id: i64,
    pub alert_kind: String,
    pub app_name: String,
}

/// The outbox message that announces a stored alert: keyed by its id, one per alert.
pub fn alert_created(event: &AlertCreated) -> Notice {
    Notice {
        dedup_key: format!("alert-created:{}", event.alert_id),
        subject: "Alert created".to_owned(),
        body: json!(event),
        attributes: Vec::new(),
        key: Some(event.alert_id.to_string()),
    }
}

/// An `alert-created-topic` record, or why it is not one.
pub fn parse_alert_created(value: &[u8]) -> Result<AlertCreated, WorkerError> {
    let event: AlertCreated = crate::text::json_object(value)?;
    if event.alert_id <= 0 {
        return Err(WorkerError::out_of_range("alertId must be positive"));
    }
    kind("alertKind", &event.alert_kind)?;
    app("appName", &event.app_name)?;
    Ok(event)
}

/// The record on `user-alert-topic`: one alert for one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAlert {
    pub alert_id: i64,
    pub user_id: String,
}

/// A `user-alert-topic` record, or why it is not one.
pub fn parse_user_alert(value: &[u8]) -> Result<UserAlert, WorkerError> {
    let event: UserAlert = crate::text::json_object(value)?;
    if event.alert_id <= 0 {
        return Err(WorkerError::out_of_range("alertId must be positive"));
    }
    token("userId", &event.user_id, MAX_USER_ID_LEN, |c| {
        c.is_ascii_graphic()
    })?;
    Ok(event)
}

/// What a delivered alert says, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    pub alert_kind: String,
    pub app_name: String,
    pub title: String,
    pub body: String,
    pub severity: String,
}

/// A push platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Fcm,
    Apns,
}

impl Platform {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "FCM" => Some(Self::Fcm),
            "APNS" => Some(Self::Apns),
            _ => None,
        }
    }
}

/// The most of an alert's title and body a push carries, in bytes: APNs and FCM take 4 KiB per
/// notification, and the rest of the payload needs room. The whole alert is read in the app.
pub const PUSH_TITLE_BYTES: usize = 256;
pub const PUSH_BODY_BYTES: usize = 2048;

/// `text` cut so that it takes at most `max` bytes inside a JSON string — as the platform's
/// payload carries it, quotes, backslashes and line breaks escaped — on a character boundary,
/// ending in `…` when cut. (Counting raw bytes instead, a body of quotes would double in the
/// payload and pass APNs' and FCM's 4 KiB.)
pub fn clip(text: &str, max: usize) -> String {
    let escaped = |c: char| match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    };
    if text.chars().map(escaped).sum::<usize>() <= max {
        return text.to_owned();
    }
    let room = max.saturating_sub('…'.len_utf8());
    let mut used = 0;
    let mut end = 0;
    for (at, c) in text.char_indices() {
        used += escaped(c);
        if used > room {
            break;
        }
        end = at + c.len_utf8();
    }
    format!("{}…", &text[..end])
}

/// The SNS message (`MessageStructure=json`) for a platform endpoint: the platform's own
/// payload under its key, a plain `default` for any other; title and body clipped to
/// [`PUSH_TITLE_BYTES`] and [`PUSH_BODY_BYTES`].
pub fn push_message(alert: &Alert, platform: Platform) -> String {
    let title = clip(&alert.title, PUSH_TITLE_BYTES);
    let body = clip(&alert.body, PUSH_BODY_BYTES);
    let data =
        json!({ "alertId": alert.id, "appName": alert.app_name, "alertKind": alert.alert_kind });
    let (key, payload) = match platform {
        Platform::Fcm => (
            "GCM",
            json!({
                "fcmV1Message": { "message": {
                    "notification": { "title": title, "body": body },
                    "data": { "alertId": alert.id.to_string(), "appName": alert.app_name,
                              "alertKind": alert.alert_kind, "severity": alert.severity },
                }}
            }),
        ),
        Platform::Apns => (
            "APNS",
            json!({
                "aps": { "alert": { "title": title, "body": body }, "sound": "default" },
                "data": data,
            }),
        ),
    };
    json!({ "default": title, key: payload.to_string() }).to_string()
}

/// The WebSocket frame for a web client.
pub fn web_message(alert: &Alert) -> String {
    json!({ "type": "alert", "alert": alert }).to_string()
}

/// A channel delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// The endpoint or connection no longer exists; removed, never retried.
    Gone,
    /// The platform refused this message; never retried.
    Failed,
}

/// A user's alert status from its deliveries' states: `stored` with no live channel (none, or
/// every one gone), `delivered` once none is pending and one took it, else `delivering`.
pub fn status(deliveries: &[DeliveryState]) -> &'static str {
    if deliveries.contains(&DeliveryState::Pending) {
        "delivering"
    } else if deliveries.contains(&DeliveryState::Delivered) {
        "delivered"
    } else {
        "stored"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AlertRequest {
        AlertRequest {
            alert_kind: "DEPLOYMENT".into(),
            app_name: "ssok-bank-api".into(),
            title: "Deployed v1.2".into(),
            body: "Rolled out to 3 regions.\nNo errors.".into(),
            severity: Severity::Info,
            dedupe_key: Some("deploy-42".into()),
        }
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert!(validate(&request()).is_ok());
        let no_key = AlertRequest {
            dedupe_key: None,
            ..request()
        };
        assert!(validate(&no_key).is_ok());
    }

    #[test]
    fn each_field_is_checked_with_its_flaw() {
        let cases: Vec<(AlertRequest, &str)> = vec![
            (
                AlertRequest {
                    alert_kind: String::new(),
                    ..request()
                },
                "missing",
            ),
            (
                AlertRequest {
                    alert_kind: "deploy".into(),
                    ..request()
                },
                "malformed",
            ),
            (
                AlertRequest {
                    alert_kind: "X".repeat(65),
                    ..request()
                },
                "out_of_range",
            ),
            (
                AlertRequest {
                    app_name: "a b".into(),
                    ..request()
                },
                "malformed",
            ),
            (
                AlertRequest {
                    app_name: "'; DROP TABLE alerts;--".into(),
                    ..request()
                },
                "malformed",
            ),
            (
                AlertRequest {
                    title: "  ".into(),
                    ..request()
                },
                "missing",
            ),
            (
                AlertRequest {
                    title: "가".repeat(201),
                    ..request()
                },
                "out_of_range",
            ),
            (
                AlertRequest {
                    body: "a\0b".into(),
                    ..request()
                },
                "malformed",
            ),
            (
                AlertRequest {
                    body: "x".repeat(4001),
                    ..request()
                },
                "out_of_range",
            ),
            (
                AlertRequest {
                    dedupe_key: Some(String::new()),
                    ..request()
                },
                "missing",
            ),
            (
                AlertRequest {
                    dedupe_key: Some("a key".into()),
                    ..request()
                },
                "malformed",
            ),
        ];
        for (bad, flaw) in cases {
            let err = validate(&bad).expect_err("refused");
            assert_eq!(err.kind(), flaw, "{bad:?}");
        }
        // Multi-byte titles are counted in characters, not bytes.
        let korean = AlertRequest {
            title: "가".repeat(200),
            ..request()
        };
        assert!(validate(&korean).is_ok());
    }

    /// docs/functions/alert-intake.md: a title has no control characters; a body has none but
    /// line breaks and tabs. Each case's answer is the page's, not the code's.
    #[test]
    fn titles_are_one_line_and_bodies_may_break_lines() {
        let title = |t: &str| {
            validate(&AlertRequest {
                title: t.into(),
                ..request()
            })
            .map_err(|err| err.kind())
        };
        let body = |b: &str| {
            validate(&AlertRequest {
                body: b.into(),
                ..request()
            })
            .map_err(|err| err.kind())
        };
        for spoof in [
            "line one\nFAKE: all clear",
            "line one\r\nFAKE: all clear",
            "tab\there",
            "return\rFAKE",
            "separator\u{2028}FAKE",
            "paragraph\u{2029}FAKE",
            "escape \u{1b}[2J",
            "delete\u{7f}",
            "next line\u{85}FAKE",
        ] {
            assert_eq!(title(spoof), Err("malformed"), "title {spoof:?}");
        }
        assert_eq!(title("bank-api v2.4.1 배포 완료 ✅"), Ok(()));
        for fine in [
            "line one\nline two",
            "line one\r\nline two\r\n",
            "a\tb",
            "para one\u{2029}para two",
        ] {
            assert_eq!(body(fine), Ok(()), "body {fine:?}");
        }
        for bad in [
            "return\rFAKE",
            "trailing\r",
            "bell\u{7}",
            "nul\0",
            "escape \u{1b}[2J",
        ] {
            assert_eq!(body(bad), Err("malformed"), "body {bad:?}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let ok = r#"{"alert_kind":"DEPLOYMENT","app_name":"a","title":"t","body":"b","severity":"critical"}"#;
        assert!(serde_json::from_str::<AlertRequest>(ok).is_ok());
        for bad in [
            r#"{"alert_kind":"DEPLOYMENT","app_name":"a","title":"t","body":"b","severity":"critical","dedup_key":"x"}"#,
            r#"{"alert_kind":"DEPLOYMENT","app_name":"a","title":"t","body":"b","severity":"fatal"}"#,
            r#"{"alert_kind":1,"app_name":"a","title":"t","body":"b","severity":"info"}"#,
            r#"{"app_name":"a","title":"t","body":"b","severity":"info"}"#,
        ] {
            assert!(serde_json::from_str::<AlertRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_records_are_checked() {
        let created =
            parse_alert_created(br#"{"alertId":7,"alertKind":"DEPLOYMENT","appName":"api"}"#)
                .expect("valid");
        assert_eq!(created.alert_id, 7);
        assert_eq!(alert_created(&created).key.as_deref(), Some("7"));
        for bad in [
            &br#"{"alertId":0,"alertKind":"DEPLOYMENT","appName":"api"}"#[..],
            br#"{"alertId":"7","alertKind":"DEPLOYMENT","appName":"api"}"#,
            br#"{"alertId":7,"alertKind":"","appName":"api"}"#,
            br#"[7,"DEPLOYMENT","api"]"#,
            b"\xff",
        ] {
            assert!(parse_alert_created(bad).is_err());
        }
        let user = parse_user_alert(br#"{"alertId":7,"userId":"user001"}"#).expect("valid");
        assert_eq!(user.user_id, "user001");
        for bad in [
            &br#"{"alertId":7,"userId":""}"#[..],
            br#"{"alertId":-1,"userId":"u"}"#,
            br#"{"alertId":7,"userId":"a b"}"#,
            br#"{"alertId":7}"#,
        ] {
            assert!(parse_user_alert(bad).is_err());
        }
        let long = format!(r#"{{"alertId":7,"userId":"{}"}}"#, "u".repeat(129));
        assert_eq!(
            parse_user_alert(long.as_bytes())
                .expect_err("too long")
                .kind(),
            "out_of_range"
        );
    }

    fn alert() -> Alert {
        Alert {
            id: 9,
            alert_kind: "DEPLOYMENT".into(),
            app_name: "api".into(),
            title: "Deployed \"v2\"".into(),
            body: "ok".into(),
            severity: "info".into(),
        }
    }

    #[test]
    fn push_messages_carry_the_platforms_payload_as_a_string() {
        let fcm: serde_json::Value =
            serde_json::from_str(&push_message(&alert(), Platform::Fcm)).expect("json");
        assert_eq!(fcm["default"], "Deployed \"v2\"");
        let inner: serde_json::Value =
            serde_json::from_str(fcm["GCM"].as_str().expect("a string")).expect("json");
        assert_eq!(inner["fcmV1Message"]["message"]["data"]["alertId"], "9");
        let apns: serde_json::Value =
            serde_json::from_str(&push_message(&alert(), Platform::Apns)).expect("json");
        let inner: serde_json::Value =
            serde_json::from_str(apns["APNS"].as_str().expect("a string")).expect("json");
        assert_eq!(inner["aps"]["alert"]["title"], "Deployed \"v2\"");
        assert_eq!(Platform::parse("FCM"), Some(Platform::Fcm));
        assert_eq!(Platform::parse("ADM"), None);
    }

    #[test]
    fn long_alerts_fit_a_push() {
        let long = Alert {
            title: "제목".repeat(300),
            body: "본문".repeat(4000),
            ..alert()
        };
        // docs/functions/user-alert-delivery.md: titles and bodies clipped to 256 and 2,048
        // bytes so the platform's payload fits its 4 KiB — also when they are all quotes or
        // line breaks, which double when the payload is written.
        let escaping = Alert {
            title: "\"".repeat(300),
            body: "\n\"\\".repeat(2000),
            app_name: "a".repeat(MAX_APP_NAME_LEN),
            alert_kind: "K".repeat(MAX_KIND_LEN),
            ..alert()
        };
        for alert in [&long, &escaping] {
            for (platform, key) in [(Platform::Fcm, "GCM"), (Platform::Apns, "APNS")] {
                let message: serde_json::Value =
                    serde_json::from_str(&push_message(alert, platform)).expect("json");
                let payload = message[key].as_str().expect("payload");
                assert!(
                    payload.len() <= 4096,
                    "{platform:?}: {} bytes",
                    payload.len()
                );
                let title = serde_json::to_string(&message["default"]).expect("json");
                assert!(
                    title.len() - 2 <= 256,
                    "{platform:?}: title of {}",
                    title.len()
                );
            }
        }
        let clipped = clip(&"가".repeat(1000), 100);
        assert!(clipped.len() <= 100 && clipped.ends_with('…'));
        assert_eq!(clip("short", 100), "short");
        // Escaped length: 40 quotes are 80 bytes in a JSON string.
        let quotes = clip(&"\"".repeat(40), 50);
        assert_eq!(quotes, format!("{}…", "\"".repeat(23)));
    }

    #[test]
    fn web_messages_say_what_the_alert_says() {
        let frame: serde_json::Value = serde_json::from_str(&web_message(&alert())).expect("json");
        assert_eq!(frame["type"], "alert");
        assert_eq!(frame["alert"]["appName"], "api");
    }

    #[test]
    fn status_follows_the_deliveries() {
        use DeliveryState::*;
        assert_eq!(status(&[]), "stored");
        assert_eq!(status(&[Gone, Gone]), "stored");
        assert_eq!(status(&[Failed, Gone]), "stored");
        assert_eq!(status(&[Delivered, Gone]), "delivered");
        assert_eq!(status(&[Delivered, Pending]), "delivering");
        assert_eq!(status(&[Pending]), "delivering");
    }
}
