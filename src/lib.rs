//! `sendEmailCode`: the Rocket.Chat `POST /api/v1/twoFactorChallenges.sendEmailCode`
//! endpoint as one AWS Lambda function.
//!
//! The flow is event → parse → rate limit → read → decide → reserve → send →
//! commit → response; [`handler::handle`] reads top to bottom in that order.
//! [`domain`] holds the pure decisions (they take `now` as an argument),
//! [`aws`] the outside systems (one module each), [`http`] the edge, and
//! [`email`] the message.

pub mod aws;
pub mod build_info;
pub mod config;
pub mod domain;
pub mod email;
pub mod handler;
pub mod http;
pub mod metrics;

pub use config::Config;
pub use domain::code::{verify, CodeEntry};
pub use domain::time::{EpochSeconds, Timestamp};
pub use handler::{handle, handle_traced, App, ReservationFate, Trace};
