//! Test support shared by the tests (through `tests/common`) and the
//! benchmark: a Lambda Runtime API emulator that runs the real `bootstrap`,
//! and a TLS front with a test CA for the plain-HTTP stand-ins.
//! Never part of the function.

pub mod runtime_api;
pub mod tls_front;
