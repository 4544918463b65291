//! The outside systems, each in its own module: DynamoDB ([`store`]) and
//! SES ([`mailer`]), with the SDK set-up they share (timeouts, retries) and
//! the reading of SDK errors ([`sdk_error`]). SDK types stay in here.

pub mod mailer;
pub mod sdk_error;
pub mod store;
pub mod tables;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Time allowed to open a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for one attempt of a call, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for a whole call, retries included. The SDK has no read
/// timeout of its own, so without this a silent peer would hold the request
/// until the Lambda timeout.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Attempts per call under the standard retry strategy (throttling included).
pub const MAX_ATTEMPTS: u32 = 3;
/// First retry back-off. The SDK's default (1 s) would spend half of
/// `OPERATION_TIMEOUT` on one wait; DynamoDB and SES answer in milliseconds.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Loads region and credentials the standard way (environment, profile, …),
/// with this function's timeouts and retries. Makes no network call.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(retry_config())
        .load()
        .await
}

/// The retry configuration every client uses.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
}

/// The timeout configuration every client uses.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
