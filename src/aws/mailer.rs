//! SES v2: sending the rendered email.

use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::operation::send_email::builders::SendEmailFluentBuilder;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use aws_sdk_sesv2::Client;

use super::sdk_error::{self, dependency_error, may_have_been_applied};
use crate::config::Config;
use crate::domain::error::{DependencyError, FaultKind};
use crate::email::RenderedEmail;

/// Attempts at one message. The SDK's own retries are off for `SendEmail`:
/// it would also retry a timed-out attempt that SES may have accepted, and
/// then a refusal of the retry would hide that.
const MAX_SEND_ATTEMPTS: u32 = 2;
/// Pause before the second attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

const SERVICE: &str = "SES";
/// The email tag that names why this message was sent.
pub const PURPOSE_TAG: (&str, &str) = ("purpose", "two-factor-email-code");

/// Sends email through SES v2 from the configured sender.
#[derive(Debug, Clone)]
pub struct Mailer {
    client: Client,
    sender: String,
    configuration_set: Option<String>,
}

impl Mailer {
    /// Wraps a client with the sender and configuration set from the configuration.
    pub fn new(client: Client, config: &Config) -> Self {
        Self {
            client,
            sender: config.sender_email.clone(),
            configuration_set: config.ses_configuration_set.clone(),
        }
    }

    /// Sends one message to all `recipients` (one user's own addresses) and
    /// returns SES's message id once SES has accepted it. A refusal, or a
    /// connection that never opened, is tried once more when it was
    /// transient; an attempt whose outcome is unknown is never repeated.
    pub async fn send(
        &self,
        recipients: &[String],
        email: &RenderedEmail,
    ) -> Result<String, SendFailure> {
        let input = self.input(recipients, email).map_err(|error| SendFailure {
            error,
            maybe_accepted: false,
        })?;
        let mut attempt = 1;
        loop {
            let result = input
                .clone()
                .customize()
                .config_override(
                    aws_sdk_sesv2::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await;
            let err = match result {
                Ok(out) => return Ok(out.message_id.unwrap_or_default()),
                Err(err) => err,
            };
            let failure = SendFailure {
                error: dependency_error(SERVICE, "SendEmail", &err),
                maybe_accepted: may_have_been_applied(&err),
            };
            let transient = failure.error.kind == FaultKind::Unavailable;
            if failure.maybe_accepted || !transient || attempt >= MAX_SEND_ATTEMPTS {
                return Err(failure);
            }
            attempt += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn input(
        &self,
        recipients: &[String],
        email: &RenderedEmail,
    ) -> Result<SendEmailFluentBuilder, DependencyError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|_| build_error())
        };
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let tag = MessageTag::builder()
            .name(PURPOSE_TAG.0)
            .value(PURPOSE_TAG.1)
            .build()
            .map_err(|_| build_error())?;
        Ok(self
            .client
            .send_email()
            .from_email_address(&self.sender)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(recipients.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .email_tags(tag)
            .set_configuration_set_name(self.configuration_set.clone()))
    }
}

/// Why SES did not take a message, and whether it may have anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// What failed, for the answer and the log.
    pub error: DependencyError,
    /// True when the request may have reached SES and been accepted (it
    /// timed out after it was sent): the send is not given back then.
    pub maybe_accepted: bool,
}

fn build_error() -> DependencyError {
    sdk_error::not_built(SERVICE, "SendEmail", "message")
}
