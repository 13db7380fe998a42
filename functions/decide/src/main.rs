//! Wiring only: telemetry, configuration, clients, adapters, then the runtime loop.

use decide::config::Config;
use decide::handler::{Deps, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::sns::SnsNotifier;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let deps = Deps {
        connections: Ec2Connections::new(aws_sdk_ec2::Client::new(&aws)),
        allowlist: DynamoAllowlist::new(dynamodb.clone(), &config.allowlist_table),
        log: DynamoDecisionLog::new(dynamodb, &config.decisions_table),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(&aws), &config.topic_arn),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
