//! Wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use reconcile::config::Config;
use reconcile::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = reconcile::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
