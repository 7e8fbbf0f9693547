//! Host-side bindings of `switchboard:connector@0.2.0`, generated from the frozen `wit/v0.2`,
//! so that components built for 0.2 keep loading. Their host imports are served by the 0.3
//! implementations through the [`super::adapter`]; nothing here has behaviour of its own.

use super::adapter::Adapt;
use crate::runtime::state::PluginState;

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

pub use social::switchboard::connector::{clock, http, log, types};

pub const SOCIAL_EXPORT: &str = "switchboard:connector/social-connector@0.2.0";
pub const HELPDESK_EXPORT: &str = "switchboard:connector/helpdesk-connector@0.2.0";

use super::v0_3 as latest;

impl types::Host for PluginState {}

impl http::Host for PluginState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        <Self as latest::http::Host>::send(self, request.adapt())
            .await
            .map(Adapt::adapt)
            .map_err(Adapt::adapt)
    }
}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        <Self as latest::log::Host>::log(self, level.adapt(), message, fields).await
    }
}

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        <Self as latest::clock::Host>::now_ms(self).await
    }
}
