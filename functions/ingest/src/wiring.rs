//! The one wiring of `ingest`, used by `main.rs` and by the local runner.

use aws_config::SdkConfig;
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;

use crate::config::Config;
use crate::handler::Deps;

/// `ingest` over AWS.
pub type AwsDeps = Deps<Ec2Connections, EventBridgeBus>;

/// Its clients give up on a call that does not answer (`shared::adapters::with_call_timeouts`).
pub fn deps(aws: &SdkConfig, config: Config) -> AwsDeps {
    let aws = &shared::adapters::with_call_timeouts(aws);
    Deps {
        connections: Ec2Connections::new(aws_sdk_ec2::Client::new(aws)),
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(aws), &config.bus_name),
        config,
    }
}
