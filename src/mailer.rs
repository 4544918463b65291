//! SES v2: sending the rendered email.

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageTag};
use aws_sdk_sesv2::Client;

use crate::aws::dependency_error;
use crate::config::Config;
use crate::email::RenderedEmail;
use crate::error::{DependencyError, FaultKind};

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

    /// Sends one message to all `recipients` (one user's own addresses).
    /// Returns only once SES has accepted it.
    pub async fn send(
        &self,
        recipients: &[String],
        email: &RenderedEmail,
    ) -> Result<(), DependencyError> {
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
        self.client
            .send_email()
            .from_email_address(&self.sender)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(recipients.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .email_tags(tag)
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| dependency_error(SERVICE, "SendEmail", &e))?;
        Ok(())
    }
}

fn build_error() -> DependencyError {
    DependencyError {
        service: SERVICE,
        operation: "SendEmail",
        kind: FaultKind::Internal,
        detail: "message could not be built".into(),
    }
}
