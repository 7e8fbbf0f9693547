//! Host-side bindings of the `switchboard:connector@0.2.0` contract, generated from `wit/v0.2`.
//!
//! One module per world. The host interfaces (`types`, `http`, `log`, `clock`) are generated once,
//! in [`social`], and the [`helpdesk`] world reuses them through `with:`, so the host implements
//! each import once. When a new contract version ships, it gets its own folder under `wit/` and
//! its own module here, with an adapter into the types the rest of the host uses (Zed's
//! `since_vX` model).

/// The contract this host implements, as plugins name it.
pub const CONTRACT: &str = "switchboard:connector@0.2.0";

pub mod social {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "social",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub mod helpdesk {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "helpdesk",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
        with: {
            "switchboard:connector/types": super::social::switchboard::connector::types,
            "switchboard:connector/http": super::social::switchboard::connector::http,
            "switchboard:connector/log": super::social::switchboard::connector::log,
            "switchboard:connector/clock": super::social::switchboard::connector::clock,
        },
    });
}

/// The host interfaces, shared by both worlds.
pub use social::switchboard::connector::{clock, http, log, types};

/// Fully qualified export names, used to tell which world a component implements.
pub const SOCIAL_EXPORT: &str = "switchboard:connector/social-connector@0.2.0";
pub const HELPDESK_EXPORT: &str = "switchboard:connector/helpdesk-connector@0.2.0";
