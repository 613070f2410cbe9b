//! Image download and storage. Image URLs come from outside, so they are fetched through the
//! [`GuardedClient`] (SSRF rules, size cap, timeouts); what arrives must be an image by its
//! bytes, not only by its declared type.
//!
//! Stored images are content-addressed: the key is the SHA-256 of the bytes, so the same image
//! is one object however often and from whichever URL it arrives.

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use domain::WorkerError;
use sha2::{Digest, Sha256};
use url::Url;

use crate::guarded_http::GuardedClient;
pub use crate::guarded_http::{FetchError, FetchPolicy};

/// A downloaded image whose bytes were checked to be what they claim.
#[derive(Debug, Clone)]
pub struct Image {
    pub bytes: Bytes,
    pub format: ImageFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// Recognises the format from the file's magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => Some(Self::Png),
            [0xff, 0xd8, 0xff, ..] => Some(Self::Jpeg),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

/// Downloads images through the [`GuardedClient`]. Built once per cold start.
#[derive(Debug, Clone)]
pub struct ImageFetcher {
    client: GuardedClient,
}

impl ImageFetcher {
    pub fn new(policy: &FetchPolicy) -> anyhow::Result<Self> {
        Ok(Self {
            client: GuardedClient::new(policy, "image-fetcher")?,
        })
    }

    pub async fn fetch(&self, url: &Url) -> Result<Image, FetchError> {
        let fetched = self
            .client
            .get(url, "image/*", "image/")
            .await
            .map_err(|err| match err {
                FetchError::Unexpected(what) => FetchError::NotAnImage(what),
                other => other,
            })?;
        let format = ImageFormat::sniff(&fetched.bytes).ok_or_else(|| {
            FetchError::NotAnImage(format!(
                "bytes are not PNG, JPEG, GIF or WebP (declared {})",
                fetched.content_type
            ))
        })?;
        Ok(Image {
            bytes: fetched.bytes,
            format,
        })
    }
}

/// Content-addressed image storage in S3.
#[derive(Debug, Clone)]
pub struct ImageStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl ImageStore {
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }

    pub fn key_for(image: &Image) -> String {
        let digest = hex::encode(Sha256::digest(&image.bytes));
        format!(
            "images/{}/{digest}.{}",
            &digest[..2],
            image.format.extension()
        )
    }

    /// Stores the image unless an object with its hash is already there; returns the key.
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket))]
    pub async fn put(&self, image: &Image) -> Result<String, WorkerError> {
        let key = Self::key_for(image);
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        match head {
            Ok(_) => return Ok(key),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {}
            Err(err) => {
                return Err(WorkerError::retryable(
                    anyhow::Error::new(err).context(format!("S3 HeadObject {key}")),
                ));
            }
        }
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(image.format.content_type())
            .cache_control("public, max-age=31536000, immutable")
            .body(ByteStream::from(image.bytes.clone()))
            .send()
            .await
            .map_err(|err| {
                WorkerError::retryable(
                    anyhow::Error::new(err).context(format!("S3 PutObject {key}")),
                )
            })?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_bytes() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"\xff\xd8\xff\xe0"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a..."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"<html>"), None);
    }

    #[test]
    fn keys_are_content_hashes() {
        let image = Image {
            bytes: Bytes::from_static(b"\x89PNG\r\n\x1a\n"),
            format: ImageFormat::Png,
        };
        let key = ImageStore::key_for(&image);
        assert!(key.starts_with("images/") && key.ends_with(".png"), "{key}");
        assert_eq!(key, ImageStore::key_for(&image.clone()));
        assert_eq!(key.len(), "images/xx/".len() + 64 + ".png".len());
    }
}
