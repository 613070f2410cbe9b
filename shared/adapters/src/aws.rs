//! AWS SDK clients, built once per cold start from one shared configuration. The SDK reads
//! `AWS_ENDPOINT_URL` (and per-service variants) itself, which is how local runs reach moto.

use aws_config::{BehaviorVersion, SdkConfig};

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// S3 client. With a custom endpoint (moto, MinIO) buckets are addressed by path, because
/// `bucket.127.0.0.1` does not resolve.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn sns(config: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(config)
}

pub fn secrets(config: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(config)
}

/// The last segment of an ARN (`arn:aws:sqs:region:account:name` → `name`).
pub fn arn_resource(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_resource_is_the_last_segment() {
        assert_eq!(
            arn_resource("arn:aws:sqs:ap-northeast-2:123456789012:webtoon-create-request"),
            "webtoon-create-request"
        );
        assert_eq!(arn_resource("plain"), "plain");
    }
}
