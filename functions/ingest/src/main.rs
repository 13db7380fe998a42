//! Wiring only.

use ingest::config::Config;
use ingest::handler::handle;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread, as decide (its main.rs says why: CPU per invocation, measured by `make bench`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = ingest::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
