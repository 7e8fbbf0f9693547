//! The contract versions this host binds, one bindgen per frozen `wit/vX.Y` folder, and the
//! adapter that turns an older version's values into the current one's (Zed's `since_vX`
//! model). The rest of the host speaks only the current contract ([`super::bindings`]).

pub mod adapter;
pub mod v0_2;
pub mod v0_3;

/// A contract version a component can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContractVersion {
    V0_2,
    V0_3,
}

impl ContractVersion {
    /// Newest first: the order in which a component's exports are matched.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_3, ContractVersion::V0_2];

    /// The package name plugins use.
    pub fn package(self) -> &'static str {
        match self {
            ContractVersion::V0_2 => v0_2::CONTRACT,
            ContractVersion::V0_3 => v0_3::CONTRACT,
        }
    }

    /// The fully qualified names of the social and helpdesk exports.
    pub fn exports(self) -> (&'static str, &'static str) {
        match self {
            ContractVersion::V0_2 => (v0_2::SOCIAL_EXPORT, v0_2::HELPDESK_EXPORT),
            ContractVersion::V0_3 => (v0_3::SOCIAL_EXPORT, v0_3::HELPDESK_EXPORT),
        }
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.package())
    }
}
