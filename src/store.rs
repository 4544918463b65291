//! DynamoDB: the rate-limit counter, challenges and users. Domain types
//! outward, SDK types inward.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use crate::aws::dependency_error;
use crate::challenge::{Challenge, EMAIL_METHOD};
use crate::code::CodeHash;
use crate::config::Config;
use crate::error::{DependencyError, FaultKind};
use crate::request::ChallengeId;
use crate::user::{EmailEntry, User};

type Item = HashMap<String, AttributeValue>;

const SERVICE: &str = "DynamoDB";

/// The three tables, behind one client.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    challenges_table: String,
    users_table: String,
    rate_limit_table: String,
}

/// The result of counting one request against its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Counted; the counter now holds this value.
    Counted(u32),
    /// The counter was already at the limit; nothing was written.
    LimitReached,
}

/// A code rotation to attempt.
#[derive(Debug, Clone, Copy)]
pub struct Rotation<'a> {
    /// The challenge as read in this request.
    pub challenge: &'a Challenge,
    /// The new code's hash.
    pub code_hash: &'a CodeHash,
    /// The new code's expiry (epoch seconds).
    pub code_expire_at: i64,
    /// Now, epoch seconds.
    pub now_secs: i64,
    /// `MAX_CODES_PER_CHALLENGE`.
    pub max_codes: u32,
}

/// What the challenge held before a rotation, to put back if the request fails.
#[derive(Debug, Clone)]
pub struct PreviousCode {
    values: Item,
}

/// The result of a conditional rotation.
#[derive(Debug, Clone)]
pub enum Rotated {
    /// The new code is stored; `PreviousCode` can undo it.
    Done(PreviousCode),
    /// A condition failed; this is the item as it was then (`None`: gone).
    Refused(Option<Challenge>),
}

/// The attributes a rotation writes besides `codesSent`.
const CODE_ATTRIBUTES: [&str; 3] = ["codeHash", "codeExpireAt", "lastCodeSentAt"];

impl Store {
    /// Wraps a client with the table names from the configuration.
    pub fn new(client: Client, config: &Config) -> Self {
        Self {
            client,
            challenges_table: config.challenges_table.clone(),
            users_table: config.users_table.clone(),
            rate_limit_table: config.rate_limit_table.clone(),
        }
    }

    /// Adds one to the counter `key` unless it already holds `limit`, in one
    /// conditional write (never read-then-write), and sets its TTL.
    pub async fn count_request(
        &self,
        key: &str,
        expire_at: i64,
        limit: u32,
    ) -> Result<Count, DependencyError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.rate_limit_table)
            .key("pk", s(key))
            .update_expression("ADD #count :one SET expireAt = :expireAt")
            .condition_expression("attribute_not_exists(pk) OR #count < :limit")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expireAt", n(expire_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let count = out
                    .attributes()
                    .and_then(|a| number::<u32>(a, "count"))
                    .ok_or_else(|| malformed("UpdateItem", "counter without a count"))?;
                Ok(Count::Counted(count))
            }
            Err(err) if is_condition_failure(&err) => Ok(Count::LimitReached),
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err)),
        }
    }

    /// Reads a challenge with a consistent read.
    pub async fn get_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<Challenge>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(id.as_str()))
            .consistent_read(true)
            .projection_expression("#id, #user, #method, #expire, #sent")
            .expression_attribute_names("#id", "challengeId")
            .expression_attribute_names("#user", "userId")
            .expression_attribute_names("#method", "method")
            .expression_attribute_names("#expire", "expireAt")
            .expression_attribute_names("#sent", "codesSent")
            .send()
            .await
            .map_err(|e| dependency_error(SERVICE, "GetItem", &e))?;
        out.item().map(challenge_from_item).transpose()
    }

    /// Reads a user (an eventually consistent read is enough: users are not
    /// written by this flow).
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, DependencyError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .key("userId", s(user_id))
            .projection_expression("#id, #emails, #email, #name, #username, #language")
            .expression_attribute_names("#id", "userId")
            .expression_attribute_names("#emails", "emails")
            .expression_attribute_names("#email", "email")
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#username", "username")
            .expression_attribute_names("#language", "language")
            .send()
            .await
            .map_err(|e| dependency_error(SERVICE, "GetItem", &e))?;
        Ok(out.item().map(|item| user_from_item(user_id, item)))
    }

    /// Stores a new code on the challenge in one conditional write that
    /// re-checks everything this request decided on: the challenge still
    /// exists for the same user, is unexpired, is by email, and is under the cap.
    pub async fn rotate_code(&self, rotation: Rotation<'_>) -> Result<Rotated, DependencyError> {
        let challenge = rotation.challenge;
        let result = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(&challenge.id))
            .update_expression(
                "SET codeHash = :hash, codeExpireAt = :codeExpireAt, lastCodeSentAt = :now \
                 ADD codesSent :one",
            )
            .condition_expression(
                "attribute_exists(challengeId) AND userId = :user AND #method = :email \
                 AND expireAt > :now AND (attribute_not_exists(codesSent) OR codesSent < :max)",
            )
            .expression_attribute_names("#method", "method")
            .expression_attribute_values(":hash", s(rotation.code_hash.as_str()))
            .expression_attribute_values(":codeExpireAt", n(rotation.code_expire_at))
            .expression_attribute_values(":now", n(rotation.now_secs))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":user", s(&challenge.user_id))
            .expression_attribute_values(":email", s(EMAIL_METHOD))
            .expression_attribute_values(":max", n(rotation.max_codes))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let mut values = out.attributes.unwrap_or_default();
                values.retain(|k, _| CODE_ATTRIBUTES.contains(&k.as_str()) || k == "codesSent");
                Ok(Rotated::Done(PreviousCode { values }))
            }
            Err(err) if is_condition_failure(&err) => {
                let old = err
                    .as_service_error()
                    .and_then(|e| match e {
                        UpdateItemError::ConditionalCheckFailedException(c) => c.item(),
                        _ => None,
                    })
                    .map(challenge_from_item)
                    .transpose()?;
                Ok(Rotated::Refused(old))
            }
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err)),
        }
    }

    /// Undoes a rotation this request made. `codesSent` always goes back down
    /// by one (the failed send must not use up the cap); the code fields are
    /// restored only if our code is still the current one, so a newer code
    /// from a concurrent request is never clobbered.
    pub async fn undo_rotation(
        &self,
        challenge_id: &str,
        our_hash: &CodeHash,
        previous: &PreviousCode,
    ) -> Result<(), DependencyError> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(challenge_id))
            .condition_expression("codeHash = :ours")
            .expression_attribute_values(":ours", s(our_hash.as_str()));
        for name in CODE_ATTRIBUTES {
            match previous.values.get(name) {
                Some(value) => {
                    set.push(format!("{name} = :old{name}"));
                    request =
                        request.expression_attribute_values(format!(":old{name}"), value.clone());
                }
                None => remove.push(name),
            }
        }
        // Our code is current, so no later rotation counted: a counter we
        // created is removed again rather than left at zero.
        let give_back = if previous.values.contains_key("codesSent") {
            request = request.expression_attribute_values(":minusOne", n(-1));
            "ADD codesSent :minusOne"
        } else {
            remove.push("codesSent");
            ""
        };
        let mut expression = String::new();
        if !set.is_empty() {
            expression.push_str(&format!("SET {} ", set.join(", ")));
        }
        if !remove.is_empty() {
            expression.push_str(&format!("REMOVE {} ", remove.join(", ")));
        }
        expression.push_str(give_back);
        match request.update_expression(expression).send().await {
            Ok(_) => return Ok(()),
            Err(err) if is_condition_failure(&err) => {}
            Err(err) => return Err(dependency_error(SERVICE, "UpdateItem", &err)),
        }
        // Someone else's code is current: only give back the send.
        let result = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(challenge_id))
            .update_expression("ADD codesSent :minusOne")
            .condition_expression("attribute_exists(challengeId) AND codesSent > :zero")
            .expression_attribute_values(":minusOne", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing left to undo.
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err)),
        }
    }
}

fn is_condition_failure(
    err: &aws_sdk_dynamodb::error::SdkError<
        UpdateItemError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|raw| raw.parse().ok())
}

fn malformed(operation: &'static str, what: &str) -> DependencyError {
    DependencyError {
        service: SERVICE,
        operation,
        kind: FaultKind::Internal,
        detail: format!("malformed item: {what}"),
    }
}

fn challenge_from_item(item: &Item) -> Result<Challenge, DependencyError> {
    let bad = |what: &str| malformed("GetItem", &format!("challenge {what}"));
    let codes_sent = match item.get("codesSent") {
        None => 0,
        Some(_) => {
            number::<u32>(item, "codesSent").ok_or_else(|| bad("codesSent is not a count"))?
        }
    };
    Ok(Challenge {
        id: string(item, "challengeId").ok_or_else(|| bad("has no challengeId"))?,
        user_id: string(item, "userId").ok_or_else(|| bad("has no userId"))?,
        method: string(item, "method").ok_or_else(|| bad("has no method"))?,
        expire_at: number::<i64>(item, "expireAt").ok_or_else(|| bad("has no numeric expireAt"))?,
        codes_sent,
    })
}

fn user_from_item(user_id: &str, item: &Item) -> User {
    let emails = item
        .get("emails")
        .and_then(|v| v.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|entry| entry.as_m().ok())
                .filter_map(|entry| {
                    Some(EmailEntry {
                        address: string(entry, "address")?,
                        verified: entry
                            .get("verified")
                            .and_then(|v| v.as_bool().ok())
                            .copied()
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    User::new(
        user_id.to_string(),
        emails,
        string(item, "email"),
        string(item, "name"),
        string(item, "username"),
        string(item, "language"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn challenge_items_parse_and_default_codes_sent_to_zero() {
        let parsed = challenge_from_item(&item(&[
            ("challengeId", s("c")),
            ("userId", s("u")),
            ("method", s("email")),
            ("expireAt", n(100)),
        ]))
        .unwrap();
        assert_eq!(parsed.codes_sent, 0);
        assert_eq!(parsed.expire_at, 100);
    }

    #[test]
    fn malformed_challenge_items_are_internal_errors() {
        for broken in [
            item(&[
                ("challengeId", s("c")),
                ("method", s("email")),
                ("expireAt", n(1)),
            ]),
            item(&[
                ("challengeId", s("c")),
                ("userId", s("u")),
                ("method", s("email")),
                ("expireAt", s("soon")),
            ]),
            item(&[
                ("challengeId", s("c")),
                ("userId", s("u")),
                ("method", s("email")),
                ("expireAt", n(1)),
                ("codesSent", n(-2)),
            ]),
        ] {
            let err = challenge_from_item(&broken).unwrap_err();
            assert_eq!(err.kind, FaultKind::Internal);
        }
    }

    #[test]
    fn user_items_keep_verified_addresses_and_skip_broken_entries() {
        let entry = |address: AttributeValue, verified: Option<bool>| {
            let mut m = item(&[("address", address)]);
            if let Some(v) = verified {
                m.insert("verified".into(), AttributeValue::Bool(v));
            }
            AttributeValue::M(m)
        };
        let user = user_from_item(
            "u",
            &item(&[
                (
                    "emails",
                    AttributeValue::L(vec![
                        entry(s("a@x.test"), Some(true)),
                        entry(s("b@x.test"), Some(false)),
                        entry(s("c@x.test"), None),
                        entry(n(5), Some(true)),
                        s("not-a-map"),
                    ]),
                ),
                ("email", s("d@x.test")),
                ("language", s("de")),
            ]),
        );
        assert_eq!(user.verified_addresses, ["a@x.test", "d@x.test"]);
        assert_eq!(user.language.as_deref(), Some("de"));
    }
}
