//! The HTTP server: the admin API under `/api/v1` and `/webhooks/{installation}`, through the
//! real server on a real SQLite file with the real plugins ([`support::TestServer`]).

mod api;
mod support;
mod webhooks;
