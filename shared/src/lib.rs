//! PrivateLink Gatekeeper's shared crate: the pure domain, the ports the functions need, the AWS adapters
//! behind them, and telemetry.

#[cfg(feature = "aws")]
pub mod adapters;
pub mod config;
pub mod domain;
pub mod ports;
pub mod producers;
pub mod services;
#[cfg(feature = "aws")]
pub mod telemetry;
