//! The runtime's guarantees: a component is checked against the contract when it loads, and a
//! plugin that misbehaves fails only its own call, with a clear error, within its limits.

mod contract;
mod limits;
