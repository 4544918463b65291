//! Test support shared by the tests (through `tests/common`) and the
//! benchmark: a Lambda Runtime API emulator that runs the real `bootstrap`.
//! Never part of the function.

pub mod runtime_api;
