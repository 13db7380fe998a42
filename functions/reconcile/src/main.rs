//! Wiring only.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use reconcile::config::Config;
use reconcile::handler::handle;

// One thread, as decide (its main.rs says why: CPU per invocation, measured by `make bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = reconcile::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
