//! The HTTP edge: the API Gateway event in (method, caller, `challengeId`),
//! the JSON answer out.

pub mod caller;
pub mod request;
pub mod response;
