//! Wiring only.

use ingest::config::Config;
use ingest::handler::{Deps, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = Deps {
        connections: Ec2Connections::new(aws_sdk_ec2::Client::new(&aws)),
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws), &config.bus_name),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
