//! `sendEmailCode`: the Rocket.Chat `POST /api/v1/twoFactorChallenges.sendEmailCode`
//! endpoint as one AWS Lambda function.
//!
//! The flow is event → parse → rate limit → load → decide → write → send →
//! response; [`handler::handle`] reads top to bottom in that order. Pure
//! decisions live in the domain modules and take `now` as an argument; each
//! AWS service is wrapped by exactly one module ([`store`], [`mailer`]).

pub mod aws;
pub mod caller;
pub mod challenge;
pub mod code;
pub mod config;
pub mod email;
pub mod error;
pub mod handler;
pub mod mailer;
pub mod metrics;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod store;
pub mod time;
pub mod user;

pub use code::verify;
pub use config::Config;
pub use handler::{handle, handle_traced, App, ReservationFate, Trace};
pub use time::{EpochSeconds, Timestamp};
