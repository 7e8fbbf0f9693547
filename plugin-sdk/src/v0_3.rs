//! Bindings of contract `switchboard:connector@0.3.0` (`wit/v0.3`), for plugins built for it.
//!
//! The rest of this SDK (the `SocialConnector`/`HelpdeskConnector` traits, `http`, `Context`)
//! speaks contract 0.2, which the host keeps loading. A 0.3 plugin enables feature
//! `social-v0_3` or `helpdesk-v0_3` (not `social`/`helpdesk`), implements the generated
//! `Guest` trait of its world directly, and registers it with `export_social_v0_3!` or
//! `export_helpdesk_v0_3!`. The host interfaces are in [`host`]: `http::send`, `log::log`,
//! `clock::now_ms`, and `metering::report_billable`, new in 0.3.
//!
//! What 0.3 adds: author signals, whether a message addresses the brand, referral and
//! conversation ownership on social events; delivery statuses and ownership changes beside
//! them; channel capabilities, billable kinds and a per-part text reserve in the manifest; the
//! part index and the answer's visibility on `send`; the customer context on `new-ticket`.

/// World `host-imports` of 0.3: the shared types and the host's interfaces.
pub mod host {
    wit_bindgen::generate!({
        world: "host-imports",
        path: "wit/v0.3",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// World `social` of 0.3: exports `social-connector@0.3.0`.
#[cfg(feature = "social-v0_3")]
pub mod social {
    wit_bindgen::generate!({
        // Wrapped in a world of the SDK's own: wit-bindgen names a world's export macro after
        // the world and exports it at the crate root, so 0.2's `social` and 0.3's would clash
        // in a build with both features.
        inline: "package switchboard:plugin-sdk; world social-v3 { include switchboard:connector/social@0.3.0; }",
        world: "switchboard:plugin-sdk/social-v3",
        path: "wit/v0.3",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "switchboard:connector/types@0.3.0": crate::v0_3::host::switchboard::connector::types,
            "switchboard:connector/http@0.3.0": crate::v0_3::host::switchboard::connector::http,
            "switchboard:connector/log@0.3.0": crate::v0_3::host::switchboard::connector::log,
            "switchboard:connector/clock@0.3.0": crate::v0_3::host::switchboard::connector::clock,
            "switchboard:connector/metering@0.3.0": crate::v0_3::host::switchboard::connector::metering,
        },
        pub_export_macro: true,
        export_macro_name: "__export_social_v0_3_world",
        default_bindings_module: "::switchboard_plugin_sdk::v0_3::social",
    });

    /// Type-checks a connector in native builds, where nothing is exported.
    #[doc(hidden)]
    pub fn __assert_guest<T: exports::switchboard::connector::social_connector::Guest>() {}
}

/// World `helpdesk` of 0.3: exports `helpdesk-connector@0.3.0`.
#[cfg(feature = "helpdesk-v0_3")]
pub mod helpdesk {
    wit_bindgen::generate!({
        // Wrapped in a world of the SDK's own: wit-bindgen names a world's export macro after
        // the world and exports it at the crate root, so 0.2's `helpdesk` and 0.3's would clash
        // in a build with both features.
        inline: "package switchboard:plugin-sdk; world helpdesk-v3 { include switchboard:connector/helpdesk@0.3.0; }",
        world: "switchboard:plugin-sdk/helpdesk-v3",
        path: "wit/v0.3",
        runtime_path: "::switchboard_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "switchboard:connector/types@0.3.0": crate::v0_3::host::switchboard::connector::types,
            "switchboard:connector/http@0.3.0": crate::v0_3::host::switchboard::connector::http,
            "switchboard:connector/log@0.3.0": crate::v0_3::host::switchboard::connector::log,
            "switchboard:connector/clock@0.3.0": crate::v0_3::host::switchboard::connector::clock,
            "switchboard:connector/metering@0.3.0": crate::v0_3::host::switchboard::connector::metering,
        },
        pub_export_macro: true,
        export_macro_name: "__export_helpdesk_v0_3_world",
        default_bindings_module: "::switchboard_plugin_sdk::v0_3::helpdesk",
    });

    /// Type-checks a connector in native builds, where nothing is exported.
    #[doc(hidden)]
    pub fn __assert_guest<T: exports::switchboard::connector::helpdesk_connector::Guest>() {}
}

/// Exports a type implementing the 0.3 `social-connector` `Guest` trait as the plugin's
/// connector. Call it once, at the top level of the plugin crate.
#[cfg(feature = "social-v0_3")]
#[macro_export]
macro_rules! export_social_v0_3 {
    ($connector:ty) => {
        // Native builds (unit tests, workspace checks) only type-check the connector: the
        // component exports' names aren't valid in native linker scripts.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::v0_3::social::__assert_guest::<$connector>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __SwitchboardSocialV0_3Export = $connector;
            $crate::v0_3::social::__export_social_v0_3_world!(
                __SwitchboardSocialV0_3Export with_types_in $crate::v0_3::social
            );
        };
    };
}

/// Exports a type implementing the 0.3 `helpdesk-connector` `Guest` trait as the plugin's
/// connector.
#[cfg(feature = "helpdesk-v0_3")]
#[macro_export]
macro_rules! export_helpdesk_v0_3 {
    ($connector:ty) => {
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::v0_3::helpdesk::__assert_guest::<$connector>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __SwitchboardHelpdeskV0_3Export = $connector;
            $crate::v0_3::helpdesk::__export_helpdesk_v0_3_world!(
                __SwitchboardHelpdeskV0_3Export with_types_in $crate::v0_3::helpdesk
            );
        };
    };
}
