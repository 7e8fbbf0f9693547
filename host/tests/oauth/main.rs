//! OAuth2: the host's token sources against a provider in this process, a real authorization
//! server (`oidc-provider`, [`support::Provider`]), and the Salesforce simulator.

mod mock;
mod provider;
mod salesforce;
mod support;
