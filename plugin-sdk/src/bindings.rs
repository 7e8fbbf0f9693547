//! Generated bindings for the `switchboard:connector@0.2.0` contract.
//!
//! The host interfaces (`types`, `http`, `log`, `clock`) are generated once, from world
//! `host-imports`. Each connector world is generated in its own module, behind its own feature,
//! and reuses those modules through `with:` so that `CallContext` and friends are one type no
//! matter which world a value came from.
//!
//! A world is generated only when its feature is on because `generate!` embeds a component-type
//! section describing the world into every binary that links it: a plugin built with both worlds
//! would claim to export both interfaces and fail to encode as a component.

/// World `host-imports`: the shared types and the host's interfaces.
pub mod host {
    wit_bindgen::generate!({
        world: "host-imports",
        path: "wit/v0.2",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// World `social`: exports `social-connector`.
#[cfg(feature = "social")]
pub mod social {
    wit_bindgen::generate!({
        world: "social",
        path: "wit/v0.2",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "switchboard:connector/types@0.2.0": crate::bindings::host::switchboard::connector::types,
            "switchboard:connector/http@0.2.0": crate::bindings::host::switchboard::connector::http,
            "switchboard:connector/log@0.2.0": crate::bindings::host::switchboard::connector::log,
            "switchboard:connector/clock@0.2.0": crate::bindings::host::switchboard::connector::clock,
        },
        // The export macro is expanded in the plugin's crate, which only knows the SDK.
        pub_export_macro: true,
        export_macro_name: "__export_social_world",
        default_bindings_module: "::switchboard_plugin_sdk::__private::social_bindings",
    });
}

/// World `helpdesk`: exports `helpdesk-connector`.
#[cfg(feature = "helpdesk")]
pub mod helpdesk {
    wit_bindgen::generate!({
        world: "helpdesk",
        path: "wit/v0.2",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "switchboard:connector/types@0.2.0": crate::bindings::host::switchboard::connector::types,
            "switchboard:connector/http@0.2.0": crate::bindings::host::switchboard::connector::http,
            "switchboard:connector/log@0.2.0": crate::bindings::host::switchboard::connector::log,
            "switchboard:connector/clock@0.2.0": crate::bindings::host::switchboard::connector::clock,
        },
        pub_export_macro: true,
        export_macro_name: "__export_helpdesk_world",
        default_bindings_module: "::switchboard_plugin_sdk::__private::helpdesk_bindings",
    });
}
