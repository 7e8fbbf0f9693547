//! Each connector plugin, loaded in the real runtime, against its service: the simulators of
//! Telegram, Zendesk, Freshdesk and Salesforce, and a real Request Tracker 5 ([`rt_server`]).

mod acceptance;
mod freshdesk;
mod helpdesk;
mod rt;
mod rt_server;
mod salesforce;
mod telegram;
mod zendesk;
