//! `ingest`: endpoint connection notifications (SNS) → Connection Request events.

pub mod config;
pub mod error;
pub mod handler;
pub mod wiring;
