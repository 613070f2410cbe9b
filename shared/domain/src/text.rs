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
    Err(WorkerError::permanent("a record must be a JSON object"))
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
