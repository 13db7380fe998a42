//! Wiring only: telemetry, configuration, the SDK configuration, then the runtime loop.

use decide::config::Config;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = decide::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| deps.handle(event))).await
}
