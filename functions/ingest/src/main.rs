//! Wiring only.

use ingest::config::Config;
use ingest::handler::handle;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = ingest::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
