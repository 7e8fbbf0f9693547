//! In-memory simulators of the vendor APIs our connectors talk to, for tests and the demo.
//!
//! Each simulator is an axum [`Router`](axum::Router) over shared in-memory state, with a
//! `/_control/*` API that tests use to play the customer or the agent and to inject faults.
//! All of them are built on the [`kit`]: one clock, one way to serve, one fault layer, one
//! control-API convention. New simulators start there.

/// The fault layer's types, where the host's tests have always found them.
pub use kit::faults;

pub mod freshdesk;
pub mod kit;
pub mod meta;
pub mod salesforce;
pub mod telegram;
pub mod zendesk;
