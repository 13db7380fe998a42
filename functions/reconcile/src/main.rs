//! Wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use reconcile::config::Config;
use reconcile::handler::{Deps, handle};
use shared::adapters::dynamodb::DynamoAllowlist;
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = Deps {
        connections: Ec2Connections::new(aws_sdk_ec2::Client::new(&aws)),
        allowlist: DynamoAllowlist::new(aws_sdk_dynamodb::Client::new(&aws), &config.allowlist_table),
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws), &config.bus_name),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
