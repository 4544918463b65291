//! The domain: challenges, codes, callers, rate windows, users, times and
//! errors. Pure: no SDK type and no I/O; every decision takes the request's
//! time as an argument (the handler reads the clock once, `Timestamp::now`).

pub mod caller;
pub mod challenge;
pub mod code;
pub mod error;
pub mod rate_window;
pub mod time;
pub mod user;
