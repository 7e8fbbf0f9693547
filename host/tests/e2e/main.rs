//! End to end: the real `switchboard` binary (as `serve`, or as `demo --once`) on a real SQLite
//! file, against the Telegram simulator and each helpdesk, driven through its HTTP API as an
//! admin, the services and a person would. The harness is `switchboard_testkit::hub`.
//!
//! One binary for the whole group: every test binary links wasmtime, which dominates build
//! time and disk.

mod bad_input;
mod crash;
mod demo;
mod faults;
mod flow;
mod restart;
