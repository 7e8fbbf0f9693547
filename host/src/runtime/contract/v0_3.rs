//! Host-side bindings of `switchboard:connector@0.3.0`, generated from `wit/v0.3`: the current
//! contract, whose types the rest of the host uses (through [`crate::runtime::bindings`]).
//!
//! The host interfaces (`types`, `http`, `log`, `clock`, `metering`) are generated once, in
//! [`social`], and the [`helpdesk`] world reuses them through `with:`, so the host implements
//! each import once.

pub const CONTRACT: &str = "switchboard:connector@0.3.0";

pub mod social {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3",
        world: "social",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub mod helpdesk {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3",
        world: "helpdesk",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
        with: {
            "switchboard:connector/types": super::social::switchboard::connector::types,
            "switchboard:connector/http": super::social::switchboard::connector::http,
            "switchboard:connector/log": super::social::switchboard::connector::log,
            "switchboard:connector/clock": super::social::switchboard::connector::clock,
            "switchboard:connector/metering": super::social::switchboard::connector::metering,
        },
    });
}

/// The host interfaces, shared by both worlds.
pub use social::switchboard::connector::{clock, http, log, metering, types};

/// Fully qualified export names, used to tell which world a component implements.
pub const SOCIAL_EXPORT: &str = "switchboard:connector/social-connector@0.3.0";
pub const HELPDESK_EXPORT: &str = "switchboard:connector/helpdesk-connector@0.3.0";
