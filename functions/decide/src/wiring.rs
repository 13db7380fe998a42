//! The one wiring of `decide`: what `main.rs` runs in Lambda and what the local runner runs, built from
//! an SDK configuration and the function's config, so the two cannot drift.

use aws_config::SdkConfig;
use shared::adapters::dynamodb::{DynamoAllowlist, DynamoDecisionLog};
use shared::adapters::ec2::{ACT_CALLS_PER_WINDOW, ACT_WINDOW_MS, Ec2Connections};
use shared::adapters::ledgers::{DynamoCallBudget, DynamoQuotaLedger};
use shared::adapters::sns::SnsNotifier;

use crate::config::Config;
use crate::handler::Deps;

/// `decide` over AWS.
pub type AwsDeps =
    Deps<Ec2Connections, DynamoAllowlist, DynamoDecisionLog, SnsNotifier, DynamoQuotaLedger, DynamoCallBudget>;

/// Its clients give up on a call that does not answer (`shared::adapters::with_call_timeouts`).
pub fn deps(aws: &SdkConfig, config: Config) -> AwsDeps {
    let aws = &shared::adapters::with_call_timeouts(aws);
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    Deps {
        connections: Ec2Connections::new(aws_sdk_ec2::Client::new(aws)),
        allowlist: DynamoAllowlist::new(dynamodb.clone(), &config.allowlist_table),
        log: DynamoDecisionLog::new(dynamodb.clone(), &config.decisions_table),
        quota: DynamoQuotaLedger::new(dynamodb.clone(), &config.decisions_table),
        budget: DynamoCallBudget::new(dynamodb, &config.decisions_table, ACT_CALLS_PER_WINDOW, ACT_WINDOW_MS),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(aws), &config.topic_arn),
        config,
    }
}
