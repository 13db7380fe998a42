//! The one wiring of `reconcile`, used by `main.rs` and by the local runner.

use aws_config::SdkConfig;
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::Ec2Connections;
use shared::adapters::eventbridge::EventBridgeBus;
use shared::adapters::ledgers::DynamoPrincipalLedger;

use crate::config::Config;
use crate::handler::Deps;

/// `reconcile` over AWS.
pub type AwsDeps =
    Deps<Ec2Connections, DynamoAllowlist, EventBridgeBus, DynamoDecisionLog, Ec2Connections, DynamoPrincipalLedger>;

/// Its clients give up on a call that does not answer (`shared::adapters::with_call_timeouts`).
pub fn deps(aws: &SdkConfig, config: Config) -> AwsDeps {
    let aws = &shared::adapters::with_call_timeouts(aws);
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let ec2 = Ec2Connections::new(aws_sdk_ec2::Client::new(aws));
    Deps {
        connections: ec2.clone(),
        allowlist: DynamoAllowlist::new(dynamodb.clone(), &config.allowlist_table),
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(aws), &config.bus_name),
        owed: DynamoDecisionLog::new(dynamodb.clone(), &config.decisions_table),
        services: ec2,
        ledger: DynamoPrincipalLedger::new(dynamodb, &config.decisions_table),
        config,
    }
}
