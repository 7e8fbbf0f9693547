//! The hub in process: the real runtime and plugins, the simulators and a SQLite file, driven
//! through the `Hub` facade ([`support::World`]).

mod admin;
mod contract03;
mod faults;
mod flow;
mod support;
