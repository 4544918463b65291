//! SES v2: sending the rendered email.

use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::operation::send_email::builders::SendEmailFluentBuilder;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use aws_sdk_sesv2::Client;

use super::sdk_error::{self, dependency_error, AttemptLog, ErrorAnswers};
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
    /// returns SES's message id once SES has accepted it. A failure that
    /// certainly did not reach SES's acceptance (an error answer, or a
    /// request that never left) is tried once more when it was transient.
    /// A failure that may have been accepted (the request was sent and the
    /// answer lost, or a success without a message id) is never repeated and
    /// says so in `may_have_applied`.
    pub async fn send(
        &self,
        recipients: &[String],
        email: &RenderedEmail,
    ) -> Result<String, DependencyError> {
        let input = self.input(recipients, email)?;
        let mut attempt = 1;
        loop {
            let log = AttemptLog::new(ErrorAnswers::NeverApplied);
            let result = input
                .clone()
                .customize()
                .config_override(
                    aws_sdk_sesv2::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .interceptor(log.clone())
                .send()
                .await;
            let error = match result {
                Ok(out) => {
                    return match out.message_id {
                        Some(id) if !id.is_empty() => Ok(id),
                        _ => Err(sdk_error::answer_without(
                            SERVICE,
                            "SendEmail",
                            "a message id",
                        )),
                    }
                }
                Err(err) => dependency_error(SERVICE, "SendEmail", &err, &log),
            };
            let transient = error.kind == FaultKind::Unavailable;
            if error.may_have_applied || !transient || attempt >= MAX_SEND_ATTEMPTS {
                return Err(error);
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

fn build_error() -> DependencyError {
    sdk_error::not_built(SERVICE, "SendEmail", "message")
}
