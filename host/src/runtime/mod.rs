//! The sandboxed plugin runtime.

pub mod bindings;
pub mod engine;
pub mod http;
