//! Switchboard: a self-hosted hub that syncs social conversations with helpdesk tickets through
//! sandboxed WebAssembly connector plugins.

pub mod acceptance;
pub mod cli;
pub mod config;
pub mod exchange;
pub mod hub;
pub mod manifest;
pub mod oauth;
pub mod plugin_build;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod secrets;
pub mod server;
pub mod store;
