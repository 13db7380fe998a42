//! Wiring only: telemetry, configuration, the SDK configuration, then the runtime loop.

use decide::config::Config;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// One thread: an execution environment runs one invocation at a time, and Lambda gives a function CPU in
// proportion to its memory (one vCPU at 1,769 MB; docs/aws-facts.md), so a second worker thread adds no
// CPU, only the cost of waking it: `make bench` measured 5.5 ms of CPU per warm invocation with the
// multi-threaded runtime and 3.6 ms with this one (the futex and eventfd wakes between threads).
// The calls of one invocation still run concurrently (`join!`, buffered streams) on this thread.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = shared::adapters::sdk_defaults().load().await;
    let deps = decide::wiring::deps(&aws, config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| deps.handle(event))).await
}
