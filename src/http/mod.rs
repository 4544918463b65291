//! The HTTP edge: the API Gateway event in (made safe to convert, then
//! method, caller, `challengeId`), the JSON answer out.

pub mod caller;
pub mod event;
pub mod request;
pub mod response;
