//! The contract the host speaks internally: the newest version it binds,
//! `switchboard:connector@0.3.0` (see [`super::contract`]). Components built for an older
//! version are bound with that version's own bindings, and their values are converted to
//! these types at the call boundary ([`super::contract::adapter`]), so nothing outside the
//! runtime knows which version a plugin was built for.

pub use super::contract::v0_3::{
    clock, helpdesk, http, log, metering, social, types, CONTRACT, HELPDESK_EXPORT, SOCIAL_EXPORT,
};
