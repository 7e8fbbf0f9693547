//! In-memory simulators of the vendor APIs our connectors talk to, for tests and the demo.
//!
//! Each simulator is an axum [`Router`](axum::Router) over shared in-memory state, with a
//! `/_control/*` API that tests use to play the customer or the agent and to inject faults.

pub mod faults;
pub mod freshdesk;
pub mod salesforce;
pub mod telegram;
pub mod zendesk;
