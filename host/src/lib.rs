//! Switchboard: a self-hosted hub that syncs social conversations with helpdesk tickets through
//! sandboxed WebAssembly connector plugins.

pub mod runtime;
