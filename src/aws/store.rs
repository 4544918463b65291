//! DynamoDB: the rate-limit counters, challenges and users. Domain types
//! outward, SDK types inward.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::SdkError;

use super::sdk_error::{self, dependency_error, AttemptLog, ErrorAnswers};
use crate::config::Config;
use crate::domain::challenge::{Challenge, ChallengeId, ChallengeMethod, SendRules};
use crate::domain::code::CodeHash;
use crate::domain::error::DependencyError;
use crate::domain::time::{EpochSeconds, Timestamp};
use crate::domain::user::{EmailEntry, StoredUser, User};

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

/// A write's result, with what its attempts leave uncertain.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted<T> {
    /// The result of the last attempt (a refusal after an attempt that may
    /// have been applied is an error whose `may_have_applied` is set).
    pub result: Result<T, DependencyError>,
    /// How many times the SDK sent the write.
    pub attempts: u32,
    /// An attempt before the last may have been carried out too: a write
    /// that succeeded may have counted twice.
    pub may_count_twice: bool,
}

impl<T> Attempted<T> {
    fn from_log(result: Result<T, DependencyError>, log: &AttemptLog) -> Self {
        Self {
            result,
            attempts: log.count(),
            may_count_twice: log.earlier_may_have_applied(),
        }
    }
}

/// The result of counting one request against its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Counted; the counter now holds this value.
    Counted(u32),
    /// The counter was already at the limit; nothing was written.
    LimitReached,
}

/// One send to reserve on a challenge: the conditions this request decided on.
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    /// The challenge, as read in this request.
    pub challenge: &'a Challenge,
    /// When the request started.
    pub now: Timestamp,
    /// The cap and the cooldown.
    pub rules: SendRules,
}

/// The result of a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserved {
    /// `codesSent` went up by one (or more, if the SDK retried the write:
    /// see [`Store::reserve_send`]).
    Taken,
    /// A condition failed; this is the item as it was then (`None`: gone).
    Refused(Option<Challenge>),
}

/// The code attributes a commit writes, after SES accepted the message.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The challenge the code was sent for.
    pub challenge: &'a Challenge,
    /// The code's hash.
    pub code_hash: &'a CodeHash,
    /// When the code stops working.
    pub code_expire_at: EpochSeconds,
    /// When it was sent: the request's start, whole seconds.
    pub sent_at: EpochSeconds,
    /// SES's id of the message.
    pub message_id: &'a str,
}

/// The result of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The entry for this message is stored.
    Stored,
    /// The challenge was deleted, or given to another user, meanwhile.
    ChallengeGone,
}

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
    pub async fn count(&self, key: &str, expire_at: EpochSeconds, limit: u32) -> Attempted<Count> {
        let log = attempt_log();
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
            .expression_attribute_values(":expireAt", whole(expire_at))
            .return_values(ReturnValue::UpdatedNew)
            .customize()
            .interceptor(log.clone())
            .send()
            .await;
        let counted = match result {
            Ok(out) => out
                .attributes()
                .and_then(|a| number::<u32>(a, "count"))
                .map(Count::Counted)
                .ok_or_else(|| malformed("UpdateItem", "counter without a count")),
            Err(err) if is_condition_failure(&err) => {
                sdk_error::refusal(SERVICE, "UpdateItem", &log).map(|()| Count::LimitReached)
            }
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err, &log)),
        };
        Attempted::from_log(counted, &log)
    }

    /// Gives one back to the counter `key`, at most once: retried only
    /// after attempts that certainly did not apply, so it can never count
    /// less than what was taken.
    pub async fn give_back_count(&self, key: &str) -> Result<(), DependencyError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.rate_limit_table)
            .key("pk", s(key))
            .update_expression("ADD #count :minusOne")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":minusOne", n(-1))
            .expression_attribute_values(":zero", n(0))
            // Expired and deleted meanwhile: nothing left to give back.
            .condition_expression("attribute_exists(pk) AND #count > :zero");
        give_back(request).await
    }

    /// Reads a challenge with a consistent read.
    pub async fn get_challenge(
        &self,
        id: &ChallengeId,
    ) -> Result<Option<Challenge>, DependencyError> {
        let log = attempt_log();
        let out = self
            .client
            .get_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(id.as_str()))
            .consistent_read(true)
            .projection_expression("#id, #user, #method, #expire, #sent, #last")
            .expression_attribute_names("#id", "challengeId")
            .expression_attribute_names("#user", "userId")
            .expression_attribute_names("#method", "method")
            .expression_attribute_names("#expire", "expireAt")
            .expression_attribute_names("#sent", "codesSent")
            .expression_attribute_names("#last", "lastCodeSentAt")
            .customize()
            .interceptor(log.clone())
            .send()
            .await
            .map_err(|e| dependency_error(SERVICE, "GetItem", &e, &log))?;
        out.item().map(challenge_from_item).transpose()
    }

    /// Reads a user (an eventually consistent read is enough: users are not
    /// written by this flow).
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, DependencyError> {
        let log = attempt_log();
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
            .customize()
            .interceptor(log.clone())
            .send()
            .await
            .map_err(|e| dependency_error(SERVICE, "GetItem", &e, &log))?;
        Ok(out.item().map(|item| user_from_item(user_id, item)))
    }

    /// Takes one send from the challenge (`ADD codesSent 1`, and an empty
    /// `codes` map if it has none yet, for the commit to add its entry to)
    /// in one conditional write that re-checks everything this request
    /// decided on: the challenge still exists for the same user, is by
    /// email, unexpired, under the cap and outside the cooldown. No code
    /// entry is touched. A retried write may have counted twice (see
    /// [`Attempted`]).
    pub async fn reserve_send(&self, r: Reservation<'_>) -> Attempted<Reserved> {
        let mut condition = String::from(
            "attribute_exists(challengeId) AND userId = :user AND #method = :email \
             AND expireAt > :now AND (attribute_not_exists(codesSent) OR codesSent < :max)",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(&r.challenge.id))
            .update_expression("SET codes = if_not_exists(codes, :noCodes) ADD codesSent :one")
            .expression_attribute_names("#method", "method")
            .expression_attribute_values(":noCodes", AttributeValue::M(Item::new()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":user", s(&r.challenge.user_id))
            .expression_attribute_values(":email", s(ChallengeMethod::EMAIL))
            .expression_attribute_values(":now", AttributeValue::N(r.now.decimal_secs()))
            .expression_attribute_values(":max", n(r.rules.max_codes));
        if r.rules.cooldown_secs > 0 {
            // lastCodeSentAt + cooldown > now  ⇔  lastCodeSentAt > now - cooldown
            let edge =
                Timestamp::from_millis(r.now.millis() - i64::from(r.rules.cooldown_secs) * 1000);
            condition.push_str(
                " AND (attribute_not_exists(lastCodeSentAt) OR lastCodeSentAt <= :cooldownEdge)",
            );
            request = request.expression_attribute_values(
                ":cooldownEdge",
                AttributeValue::N(edge.decimal_secs()),
            );
        }
        let log = attempt_log();
        let result = request
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(log.clone())
            .send()
            .await;
        let reserved = match result {
            Ok(_) => Ok(Reserved::Taken),
            Err(err) if is_condition_failure(&err) => {
                sdk_error::refusal(SERVICE, "UpdateItem", &log).and_then(|()| {
                    refused_item(&err)
                        .map(challenge_from_item)
                        .transpose()
                        .map(Reserved::Refused)
                })
            }
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err, &log)),
        };
        Attempted::from_log(reserved, &log)
    }

    /// Gives a reserved send back (`codesSent` down by one), at most once:
    /// retried only after attempts that certainly did not apply, so a
    /// reservation is never given back twice. Only while the challenge is
    /// still the same user's.
    pub async fn give_back_send(&self, challenge: &Challenge) -> Result<(), DependencyError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(&challenge.id))
            .update_expression("ADD codesSent :minusOne")
            .expression_attribute_values(":minusOne", n(-1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":user", s(&challenge.user_id))
            .condition_expression(
                "attribute_exists(challengeId) AND userId = :user AND codesSent > :zero",
            );
        // Deleted or given to another user meanwhile: nothing to give back.
        give_back(request).await
    }

    /// Adds the entry `codes.<MessageId>` for the code SES accepted, on
    /// condition that the challenge still exists for the same user, and
    /// moves `lastCodeSentAt` up to this send. It never changes another
    /// entry, and never moves `lastCodeSentAt` back: when a later send
    /// already set it (this commit landing last), only the entry is
    /// written. Every shape is idempotent, so a retried or late attempt can
    /// only write this same entry again.
    pub async fn commit_code(&self, c: Commit<'_>) -> Result<Committed, DependencyError> {
        // What the item looked like when a condition last refused: the
        // first try assumes the usual case (a map the reservation made, no
        // later send).
        let mut shape = CommitShape {
            map_exists: true,
            set_time: true,
        };
        for _ in 0..MAX_COMMIT_ROUNDS {
            let (found, unknown) = match self.commit_once(&c, shape).await? {
                CommitAttempt::Written => return Ok(Committed::Stored),
                CommitAttempt::Refused { item, unknown } => (item, unknown),
            };
            let ours = found.filter(|item| {
                string(item, "userId").as_deref() == Some(c.challenge.user_id.as_str())
            });
            let Some(item) = ours else {
                // Gone or given to another user; after an attempt that may
                // have written the entry first, the outcome is unknown.
                return match unknown {
                    Some(err) => Err(err),
                    None => Ok(Committed::ChallengeGone),
                };
            };
            shape = CommitShape {
                map_exists: item.contains_key("codes"),
                set_time: time(&item, "lastCodeSentAt").is_none_or(|last| last <= c.sent_at),
            };
        }
        Err(unexplained_refusal())
    }

    /// One commit write of the given shape.
    async fn commit_once(
        &self,
        c: &Commit<'_>,
        shape: CommitShape,
    ) -> Result<CommitAttempt, DependencyError> {
        let entry = AttributeValue::M(Item::from([
            ("codeHash".to_string(), s(c.code_hash.as_str())),
            ("expireAt".to_string(), whole(c.code_expire_at)),
            ("sentAt".to_string(), whole(c.sent_at)),
        ]));
        let mut condition = String::from("attribute_exists(challengeId) AND userId = :user");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.challenges_table)
            .key("challengeId", s(&c.challenge.id))
            .expression_attribute_values(":user", s(&c.challenge.user_id));
        let mut set = if shape.map_exists {
            condition.push_str(" AND attribute_exists(codes)");
            request = request
                .expression_attribute_names("#message", c.message_id)
                .expression_attribute_values(":entry", entry);
            String::from("SET codes.#message = :entry")
        } else {
            // Replaced since the reservation: start its map with this entry.
            condition.push_str(" AND attribute_not_exists(codes)");
            request = request.expression_attribute_values(
                ":codes",
                AttributeValue::M(Item::from([(c.message_id.to_string(), entry)])),
            );
            String::from("SET codes = :codes")
        };
        if shape.set_time {
            condition.push_str(
                " AND (attribute_not_exists(lastCodeSentAt) OR lastCodeSentAt <= :sentAt)",
            );
            set.push_str(", lastCodeSentAt = :sentAt");
            request = request.expression_attribute_values(":sentAt", whole(c.sent_at));
        }
        let log = attempt_log();
        let result = request
            .update_expression(set)
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(log.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CommitAttempt::Written),
            Err(err) if is_condition_failure(&err) => Ok(CommitAttempt::Refused {
                item: refused_item(&err).cloned(),
                unknown: sdk_error::refusal(SERVICE, "UpdateItem", &log).err(),
            }),
            Err(err) => Err(dependency_error(SERVICE, "UpdateItem", &err, &log)),
        }
    }
}

/// What one commit write did.
enum CommitAttempt {
    /// The entry is stored.
    Written,
    /// A condition refused it: the item as it was then (`None`: gone), and
    /// the unknown-outcome error when an earlier attempt may have applied.
    Refused {
        item: Option<Item>,
        unknown: Option<DependencyError>,
    },
}

/// A log of a DynamoDB call's attempts: a write answered 5xx may still
/// have been applied.
fn attempt_log() -> AttemptLog {
    AttemptLog::new(ErrorAnswers::ServerErrorsMayHaveApplied)
}

/// Rounds of the commit: each refusal shows the item, so the next round
/// fits it; three cover a replaced item and a later send meanwhile.
const MAX_COMMIT_ROUNDS: usize = 3;

/// Which commit write fits the item.
#[derive(Debug, Clone, Copy)]
struct CommitShape {
    /// The item has a `codes` map to add the entry to.
    map_exists: bool,
    /// `lastCodeSentAt` is absent or not after this send, so it moves up.
    set_time: bool,
}

/// Sends a give-back (a decrement), attempt by attempt: an attempt that
/// certainly did not apply (never sent, or answered 4xx, throttling
/// included) is tried again, up to `MAX_ATTEMPTS`; one whose outcome is
/// unknown never is, so a give-back can never count twice. A refused
/// condition means there is nothing left to give back.
async fn give_back(request: UpdateItemFluentBuilder) -> Result<(), DependencyError> {
    let mut attempt = 1;
    loop {
        let single_attempt =
            aws_sdk_dynamodb::config::Builder::default().retry_config(RetryConfig::disabled());
        let log = attempt_log();
        let error = match request
            .clone()
            .customize()
            .config_override(single_attempt)
            .interceptor(log.clone())
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if is_condition_failure(&err) => return Ok(()),
            Err(err) => dependency_error(SERVICE, "UpdateItem", &err, &log),
        };
        if error.may_have_applied || attempt >= crate::aws::MAX_ATTEMPTS {
            return Err(error);
        }
        attempt += 1;
        tokio::time::sleep(crate::aws::INITIAL_BACKOFF).await;
    }
}

/// The item a refused condition returned (`ReturnValuesOnConditionCheckFailure`).
fn refused_item(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<&Item> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item(),
        _ => None,
    }
}

fn is_condition_failure(err: &SdkError<UpdateItemError, HttpResponse>) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A time this function writes: always whole seconds, rounded down, so a
/// fractional time read from a table can never be written back as one.
fn whole(time: EpochSeconds) -> AttributeValue {
    n(time.floor())
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
    sdk_error::malformed_item(SERVICE, operation, what)
}

/// A reservation refused although the challenge it found passes every
/// condition (see [`crate::domain::challenge::reservation_refusal`]).
pub fn unexplained_refusal() -> DependencyError {
    sdk_error::unexplained_refusal(SERVICE, "UpdateItem")
}

fn time(item: &Item, name: &str) -> Option<EpochSeconds> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|raw| EpochSeconds::parse(raw))
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
        method: string(item, "method")
            .map(|m| ChallengeMethod::from_stored(&m))
            .ok_or_else(|| bad("has no method"))?,
        expire_at: time(item, "expireAt").ok_or_else(|| bad("has no numeric expireAt"))?,
        codes_sent,
        last_code_sent_at: time(item, "lastCodeSentAt"),
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
    User::from(StoredUser {
        id: user_id.to_string(),
        emails,
        email: string(item, "email"),
        name: string(item, "name"),
        username: string(item, "username"),
        language: string(item, "language"),
    })
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
    fn times_are_written_as_whole_seconds() {
        let written = |t: EpochSeconds| whole(t).as_n().unwrap().clone();
        assert_eq!(written(EpochSeconds::from(1_796_002_191)), "1796002191");
        assert_eq!(
            written(EpochSeconds::parse("1796002191.999").unwrap()),
            "1796002191"
        );
        assert_eq!(written(EpochSeconds::parse("-0.5").unwrap()), "-1");
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
        assert_eq!(parsed.expire_at, EpochSeconds::from(100));
        assert_eq!(parsed.last_code_sent_at, None);
        let fractional = challenge_from_item(&item(&[
            ("challengeId", s("c")),
            ("userId", s("u")),
            ("method", s("email")),
            ("expireAt", AttributeValue::N("1796002191.291".into())),
            ("lastCodeSentAt", AttributeValue::N("1796002000.5".into())),
        ]))
        .unwrap();
        assert_eq!(
            fractional.expire_at,
            EpochSeconds::parse("1796002191.291").unwrap()
        );
        assert_eq!(
            fractional.last_code_sent_at,
            EpochSeconds::parse("1796002000.5")
        );
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
            assert_eq!(err.kind, crate::domain::error::FaultKind::Internal);
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
