//! `decide`: Connection Request events (SQS batches from the gatekeeper bus) → verified, evaluated,
//! acted on, recorded once and announced once.

pub mod config;
pub mod error;
pub mod handler;
pub mod wiring;
