//! `reconcile`: keeps decisions true over time. On a schedule it re-requests every pending connection
//! (a missed notification, a failed invocation, a `hold` since allowed) and, with revocation on, every
//! `available` connection the allowlist no longer accepts (removed, denied, expired by time). On the
//! allowlist's stream it re-requests the changed account's connections.

pub mod config;
pub mod error;
pub mod event;
pub mod handler;
pub mod wiring;
