//! The local AWS for Gatekeeper: moto's server with the project's extension (loopback only), the stack
//! deployed from `infra/template.yaml` through its CloudFormation, and the wiring that runs the real
//! handlers as AWS would, each under its own template role.
//!
//! - `emulator`: the server, its control API, SDK configurations per account and per function role;
//! - `deployment`: the provider's endpoint service and the stack, read back from what was deployed;
//! - `wiring`: the event sources (SQS, SNS, the stream, the schedule) driving the handlers;
//! - `events`: Lambda's event shapes for what the wiring reads;
//! - `stream_source`: Lambda's stream event source mapping for one shard (batches, checkpoints, retries,
//!   bisection, discards), as deployed.

pub mod deployment;
pub mod emulator;
pub mod events;
pub mod stream_source;
pub mod wiring;

pub use deployment::{Deployment, Options, StackInfo, create_endpoint, network, provision};
pub use emulator::{Emulator, PROVIDER, REGION, account_config, control, free_port, http, role_config, root};
pub use wiring::{DecideDeps, PumpStats, Wiring, decide_config, decide_deps};
