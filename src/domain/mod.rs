//! The domain: challenges, codes, callers, rate windows, users, times and
//! errors. No SDK type and no network; every decision is pure and takes the
//! request's time as an argument. The only two reads of the outside world
//! here, the clock (`Timestamp::now`) and the OS random source
//! (`Code::generate`), are called by the handler, once per request.

pub mod caller;
pub mod challenge;
pub mod code;
pub mod error;
pub mod rate_window;
pub mod time;
pub mod user;
