//! The adapters at the SDK boundary with aws-smithy-mocks: what EC2 and DynamoDB answers become,
//! including EC2's camelCase states, per-ID failures, throttling and the SDK's own retries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::accept_vpc_endpoint_connections::AcceptVpcEndpointConnectionsOutput;
use aws_sdk_ec2::operation::describe_vpc_endpoint_connections::{
    DescribeVpcEndpointConnectionsError, DescribeVpcEndpointConnectionsOutput,
};
use aws_sdk_ec2::types::{State, UnsuccessfulItem, UnsuccessfulItemError, VpcEndpointConnection};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use shared::adapters::dynamodb::DynamoDecisionLog;
use shared::adapters::ec2::Ec2Connections;
use shared::domain::record::{DecisionRecord, Kind};
use shared::domain::{
    AccountId, Connection, ConnectionState, Decision, EndpointId, Outcome, Reason, ServiceId, Trigger,
};
use shared::ports::{Claim, ConnectionFilter, Connections, DecisionLog, ErrorKind};

const SVC: &str = "vpce-svc-0123456789abcdef0";
const EP: &str = "vpce-0123456789abcdef0";

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r))
}

fn ec2(rules: &[&Rule], retry: RetryConfig) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .http_client(create_mock_http_client())
        .retry_config(retry)
        .interceptor(interceptor(rules))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

fn ddb(rules: &[&Rule]) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .http_client(create_mock_http_client())
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .interceptor(interceptor(rules))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn connection(state: &str) -> VpcEndpointConnection {
    connection_of("222222222222", state)
}

fn connection_of(owner: &str, state: &str) -> VpcEndpointConnection {
    VpcEndpointConnection::builder()
        .service_id(SVC)
        .vpc_endpoint_id(EP)
        .vpc_endpoint_owner(owner)
        .vpc_endpoint_state(State::from(state))
        .creation_timestamp(DateTime::from_millis(1_700_000_000_123))
        .vpc_endpoint_region("eu-west-1")
        .vpc_endpoint_connection_id("vpce-con-0123456789abcdef0")
        .build()
}

fn throttle() -> DescribeVpcEndpointConnectionsError {
    DescribeVpcEndpointConnectionsError::generic(
        ErrorMetadata::builder().code("RequestLimitExceeded").message("Request limit exceeded.").build(),
    )
}

fn svc() -> ServiceId {
    ServiceId::parse(SVC).unwrap()
}

#[tokio::test]
async fn describe_reads_camel_case_states_owner_region_creation_time_and_connection_id() {
    let rule = mock!(aws_sdk_ec2::Client::describe_vpc_endpoint_connections)
        .match_requests(|r| r.filters().iter().any(|f| f.name() == Some("service-id") && f.values() == [SVC]))
        .then_output(|| {
            DescribeVpcEndpointConnectionsOutput::builder()
                .vpc_endpoint_connections(connection("pendingAcceptance"))
                .build()
        });
    let conns = Ec2Connections::new(ec2(&[&rule], RetryConfig::disabled()))
        .describe(&svc(), &ConnectionFilter { endpoints: vec![EndpointId::parse(EP).unwrap()], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        conns,
        vec![Connection {
            service_id: svc(),
            endpoint_id: EndpointId::parse(EP).unwrap(),
            owner: AccountId::parse("222222222222").unwrap(),
            state: ConnectionState::PendingAcceptance,
            region: Some(shared::domain::Region::parse("eu-west-1").unwrap()),
            created_at_ms: 1_700_000_000_123,
            connection_id: Some("vpce-con-0123456789abcdef0".into()),
        }]
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn describe_refuses_a_connection_with_an_unusable_owner() {
    let rule = mock!(aws_sdk_ec2::Client::describe_vpc_endpoint_connections).then_output(|| {
        DescribeVpcEndpointConnectionsOutput::builder()
            .vpc_endpoint_connections(connection_of("*", "pendingAcceptance"))
            .build()
    });
    let err = Ec2Connections::new(ec2(&[&rule], RetryConfig::disabled()))
        .describe(&svc(), &ConnectionFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
}

#[tokio::test]
async fn throttling_is_retryable_and_keeps_the_code() {
    let rule = mock!(aws_sdk_ec2::Client::describe_vpc_endpoint_connections).then_error(throttle);
    let err = Ec2Connections::new(ec2(&[&rule], RetryConfig::disabled()))
        .describe(&svc(), &ConnectionFilter::default())
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (ErrorKind::Retryable, "RequestLimitExceeded"));
}

#[tokio::test]
async fn the_sdk_retries_throttling_before_the_adapter_sees_it() {
    let rule = mock!(aws_sdk_ec2::Client::describe_vpc_endpoint_connections)
        .sequence()
        .error(throttle)
        .times(2)
        .output(|| {
            DescribeVpcEndpointConnectionsOutput::builder().vpc_endpoint_connections(connection("available")).build()
        })
        .build();
    let retry = RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1));
    let conns = Ec2Connections::new(ec2(&[&rule], retry)).describe(&svc(), &ConnectionFilter::default()).await.unwrap();
    assert_eq!(conns[0].state, ConnectionState::Available);
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn accept_returns_unsuccessful_items_instead_of_failing() {
    let rule = mock!(aws_sdk_ec2::Client::accept_vpc_endpoint_connections)
        .match_requests(|r| r.service_id() == Some(SVC) && r.vpc_endpoint_ids().len() == 2)
        .then_output(|| {
            AcceptVpcEndpointConnectionsOutput::builder()
                .unsuccessful(
                    UnsuccessfulItem::builder()
                        .resource_id("vpce-0000000000000dead")
                        .error(
                            UnsuccessfulItemError::builder()
                                .code("InvalidVpcEndpointId.NotFound")
                                .message("gone")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let ids = [EndpointId::parse(EP).unwrap(), EndpointId::parse("vpce-0000000000000dead").unwrap()];
    let failures = Ec2Connections::new(ec2(&[&rule], RetryConfig::disabled())).accept(&svc(), &ids).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].is_not_found());
    assert_eq!(failures[0].endpoint_id, "vpce-0000000000000dead");
}

/// What EC2's endpoint does with each attempt, in turn: answers it throttled (the attempt went out), or the
/// HTTP client refuses it for a reason of the caller's (a user `DispatchFailure`: nothing of it went out).
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Throttled,
    RefusedByClient,
}

fn ec2_attempts(attempts: &[Attempt]) -> aws_sdk_ec2::Client {
    use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector};
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    #[derive(Debug)]
    struct Endpoint(std::sync::Mutex<std::collections::VecDeque<Attempt>>);
    impl HttpConnector for Endpoint {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            let next = self.0.lock().unwrap().pop_front().expect("an attempt more than the test planned");
            HttpConnectorFuture::ready(match next {
                Attempt::Throttled => Ok(aws_smithy_runtime_api::http::Response::new(
                    503.try_into().unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit \
                         exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>",
                    ),
                )),
                Attempt::RefusedByClient => Err(ConnectorError::user("an invalid request".into())),
            })
        }
    }
    let endpoint = SharedHttpConnector::new(Endpoint(std::sync::Mutex::new(attempts.iter().copied().collect())));
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .http_client(aws_smithy_runtime_api::client::http::http_client_fn(move |_, _| endpoint.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1)))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// Fails every attempt's signing from the `from`th on (counting from 1), as a credentials provider that
/// cannot refresh would.
#[derive(Debug)]
struct SigningFailsFrom(u32, std::sync::atomic::AtomicU32);

impl aws_smithy_runtime_api::client::interceptors::Intercept for SigningFailsFrom {
    fn name(&self) -> &'static str {
        "SigningFailsFrom"
    }

    fn read_before_signing(
        &self,
        _: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let attempt = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if attempt >= self.0 { Err("the credentials could not be refreshed".into()) } else { Ok(()) }
    }
}

/// `never_sent` ends a claim early (decide's retry takes it over at once), so it must never say so of a call
/// one of whose attempts went out and may have landed unanswered.
#[tokio::test]
async fn an_accept_is_never_sent_only_if_no_attempt_of_it_went_out() {
    use Attempt::*;
    let ids = [EndpointId::parse(EP).unwrap()];
    for (attempts, never_sent) in [(vec![RefusedByClient], true), (vec![Throttled, RefusedByClient], false)] {
        let err = Ec2Connections::new(ec2_attempts(&attempts)).accept(&svc(), &ids).await.unwrap_err();
        assert_eq!(err.code, "DispatchFailure", "{attempts:?}: {err:?}");
        assert_eq!(err.never_sent(), never_sent, "{attempts:?}: {err:?}");
        let kind = if never_sent { ErrorKind::Permanent } else { ErrorKind::Uncertain };
        assert_eq!(err.kind, kind, "{attempts:?}: {err:?}");
    }
    // A retry's signing failing after an attempt went out: the SDK reports a failure in an attempt before it is
    // sent (credentials, signing, endpoint) as a dispatch failure of its own kind, not the caller's, so it is
    // uncertain too (`ConstructionFailure` is only serialization's, before any attempt).
    let rule = mock!(aws_sdk_ec2::Client::accept_vpc_endpoint_connections).then_error(|| {
        aws_sdk_ec2::operation::accept_vpc_endpoint_connections::AcceptVpcEndpointConnectionsError::generic(
            ErrorMetadata::builder().code("RequestLimitExceeded").message("Request limit exceeded.").build(),
        )
    });
    let retry = RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1));
    let conf = ec2(&[&rule], retry).config().to_builder().interceptor(SigningFailsFrom(2, 0.into())).build();
    let err = Ec2Connections::new(aws_sdk_ec2::Client::from_conf(conf)).accept(&svc(), &ids).await.unwrap_err();
    assert_eq!(rule.num_calls(), 1, "the first attempt went out");
    assert!(!err.never_sent() && err.kind == ErrorKind::Uncertain, "{err:?}");
}

fn record() -> DecisionRecord {
    let conn = Connection {
        service_id: svc(),
        endpoint_id: EndpointId::parse(EP).unwrap(),
        owner: AccountId::parse("222222222222").unwrap(),
        state: ConnectionState::PendingAcceptance,
        region: None,
        created_at_ms: 5,
        connection_id: None,
    };
    let d = Decision {
        outcome: Outcome::Reject,
        reason: Reason::NotListed,
        matched_rule: None,
        detail: "x".into(),
        max_endpoints: None,
        tenant: Some("ACME Corp".into()),
    };
    DecisionRecord::claim(Kind::Decision, &conn, &d, Trigger::Sweep, 10, "inv", 1000, None)
}

#[tokio::test]
async fn a_claim_is_a_conditional_put_and_a_lost_race_is_not_an_error() {
    let won = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(endpoint_id)"))
        .then_output(|| PutItemOutput::builder().build());
    let lost = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        PutItemError::ConditionalCheckFailedException(
            aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder().message("no").build(),
        )
    });
    let log = DynamoDecisionLog::new(ddb(&[&won, &lost]), "decisions");
    assert_eq!(log.claim(&record(), None).await.unwrap(), Claim::Won);
    assert_eq!(log.claim(&record(), None).await.unwrap(), Claim::Lost(None), "no item returned: nothing to tell");
}

#[tokio::test]
async fn a_throttled_claim_is_a_retryable_error() {
    let rule = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
        PutItemError::ProvisionedThroughputExceededException(
            aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                .message("slow")
                .meta(ErrorMetadata::builder().code("ProvisionedThroughputExceededException").build())
                .build(),
        )
    });
    let err = DynamoDecisionLog::new(ddb(&[&rule]), "decisions").claim(&record(), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Retryable);
    assert_eq!(err.code, "ProvisionedThroughputExceededException");
}

/// An HTTP client for SNS that answers every call from `answer` (a dropped connection, or a status and the
/// error code of an awsQuery error body), and counts the calls that reach it, retries included.
/// What the SNS client's HTTP connection answers: a dropped connection, or a status and an error code.
type SnsAnswer = fn() -> Result<(u16, &'static str), ()>;

fn sns_answering(answer: SnsAnswer, calls: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> aws_sdk_sns::Client {
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    #[derive(Debug)]
    struct Answer(SnsAnswer, std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl HttpConnector for Answer {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            HttpConnectorFuture::ready(match (self.0)() {
                Err(()) => Err(ConnectorError::io("connection closed before message completed".into())),
                Ok((status, code)) => Ok(Response::new(
                    StatusCode::try_from(status).unwrap(),
                    SdkBody::from(format!(
                        "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>x</Message></Error></ErrorResponse>",
                        if status >= 500 { "Receiver" } else { "Sender" }
                    )),
                )),
            })
        }
    }
    let connector = SharedHttpConnector::new(Answer(answer, calls));
    let http: SharedHttpClient = http_client_fn(move |_, _| connector.clone());
    let conf = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1)))
        .build();
    aws_sdk_sns::Client::from_conf(conf)
}

#[tokio::test]
async fn a_publish_whose_answer_was_lost_is_not_retried_and_is_uncertain() {
    use shared::adapters::sns::SnsNotifier;
    use shared::domain::record::Announcement;
    use shared::ports::Notifier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let n = Announcement::for_record(&record());
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let sns = SnsNotifier::new(sns_answering(|| Err(()), calls.clone()), "arn:aws:sns:us-east-1:111111111111:t");
    let err = sns.notify(&n).await.unwrap_err();
    assert_eq!((err.kind, calls.load(Ordering::SeqCst)), (ErrorKind::Uncertain, 1), "{err}");

    // A refusal (5xx) means nothing went out: the SDK retries it as before.
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let sns = SnsNotifier::new(
        sns_answering(|| Ok((500, "InternalError")), calls.clone()),
        "arn:aws:sns:us-east-1:111111111111:t",
    );
    let err = sns.notify(&n).await.unwrap_err();
    assert_eq!((err.kind, calls.load(Ordering::SeqCst)), (ErrorKind::Retryable, 3), "{err}");
}

/// SNS's throttling of Publish has more than one documented face: the API reference's `ThrottledException`
/// (code `Throttled`, HTTP 429, which the SDK's standard retry does not take as throttling) and the
/// Knowledge Center's "ThrottlingException ... Rate exceeded" for publish (plus awsQuery's generic
/// `Throttling`). Under each, nothing went out: the publish is refused (retryable, so the record goes back to
/// `acted` and the retry publishes), never taken as uncertain or as a permanent failure.
#[tokio::test]
async fn a_publish_sns_throttles_is_refused_and_retryable_under_each_code_sns_may_answer() {
    use shared::adapters::sns::SnsNotifier;
    use shared::domain::record::Announcement;
    use shared::ports::Notifier;
    use std::sync::atomic::AtomicUsize;

    let n = Announcement::for_record(&record());
    let answers: [(SnsAnswer, &str); 3] = [
        (|| Ok((429, "Throttled")), "Throttled"),
        (|| Ok((400, "ThrottlingException")), "ThrottlingException"),
        (|| Ok((400, "Throttling")), "Throttling"),
    ];
    for (answer, code) in answers {
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let sns = SnsNotifier::new(sns_answering(answer, calls), "arn:aws:sns:us-east-1:111111111111:t");
        let err = sns.notify(&n).await.unwrap_err();
        assert_eq!((err.kind, err.code.as_str()), (ErrorKind::Retryable, code), "{err}");
    }
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_recognised_as_ours_by_the_item_that_stands() {
    use shared::adapters::dynamodb::record_to_item;
    let failed_on = |claim: &'static str| {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.return_values_on_condition_check_failure()
                    == Some(&aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_error(move || {
                let mut standing = record();
                standing.claim = claim.into();
                PutItemError::ConditionalCheckFailedException(
                    aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                        .message("The conditional request failed")
                        .set_item(Some(record_to_item(&standing)))
                        .build(),
                )
            })
    };
    let ours = failed_on("inv");
    let theirs = failed_on("another-invocation");
    let log = DynamoDecisionLog::new(ddb(&[&ours, &theirs]), "decisions");
    assert_eq!(log.claim(&record(), None).await.unwrap(), Claim::Won, "our own write, answered late");
    let mut standing = record();
    standing.claim = "another-invocation".into();
    assert_eq!(
        log.claim(&record(), None).await.unwrap(),
        Claim::Lost(Some(Box::new(standing))),
        "another's claim is answered, read from the failed condition's item"
    );
}

#[test]
fn a_decision_record_round_trips_through_its_item_with_its_tenant() {
    use shared::adapters::dynamodb::{item_to_record, record_to_item};
    let r = record();
    let item = record_to_item(&r);
    assert_eq!(item.get("tenant").and_then(|v| v.as_s().ok()).map(String::as_str), Some("ACME Corp"));
    assert_eq!(item_to_record(&item).unwrap(), r);
    let untenanted = DecisionRecord { tenant: None, ..record() };
    assert!(!record_to_item(&untenanted).contains_key("tenant"));
    assert_eq!(item_to_record(&record_to_item(&untenanted)).unwrap(), untenanted);
}

fn events(rules: &[&Rule]) -> aws_sdk_eventbridge::Client {
    let conf = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .http_client(create_mock_http_client())
        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
        .interceptor(interceptor(rules))
        .build();
    aws_sdk_eventbridge::Client::from_conf(conf)
}

/// A PutEvents answer with one entry per request entry, the `i`th failing with `code` where given.
fn put_answer(codes: &[Option<&str>]) -> aws_sdk_eventbridge::operation::put_events::PutEventsOutput {
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    let entries = codes.iter().map(|c| match c {
        Some(code) => PutEventsResultEntry::builder().error_code(*code).error_message("refused").build(),
        None => PutEventsResultEntry::builder().event_id("e").build(),
    });
    aws_sdk_eventbridge::operation::put_events::PutEventsOutput::builder()
        .failed_entry_count(i32::try_from(codes.iter().filter(|c| c.is_some()).count()).unwrap())
        .set_entries(Some(entries.collect()))
        .build()
}

fn two_requests() -> Vec<shared::domain::ConnectionRequest> {
    ["vpce-0aaaaaaaaaaaaaaa1", "vpce-0aaaaaaaaaaaaaaa2"]
        .iter()
        .map(|e| shared::domain::ConnectionRequest {
            service_id: svc(),
            endpoint_id: EndpointId::parse(e).unwrap(),
            trigger: Trigger::Sweep,
            requested_at: 1,
        })
        .collect()
}

#[tokio::test]
async fn an_entry_putevents_fails_with_a_retryable_code_is_sent_again_alone() {
    use shared::ports::RequestBus;
    let first =
        mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| put_answer(&[None, Some("ThrottlingException")]));
    let second = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| r.entries().len() == 1)
        .then_output(|| put_answer(&[None]));
    let bus = shared::adapters::eventbridge::EventBridgeBus::new(events(&[&first, &second]), "bus");
    bus.put(&two_requests()).await.unwrap();
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_putevents_answer_that_does_not_account_for_every_entry_sends_them_all_again() {
    use shared::ports::RequestBus;
    let short = || {
        let mut out = put_answer(&[None]);
        out.failed_entry_count = 0;
        out
    };
    let miscounted = || {
        let mut out = put_answer(&[None, None]);
        out.failed_entry_count = 1;
        out
    };
    for answer in [short as fn() -> _, miscounted] {
        let first = mock!(aws_sdk_eventbridge::Client::put_events).then_output(answer);
        let again = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|r| r.entries().len() == 2)
            .then_output(|| put_answer(&[None, None]));
        let bus = shared::adapters::eventbridge::EventBridgeBus::new(events(&[&first, &again]), "bus");
        bus.put(&two_requests()).await.unwrap();
        assert_eq!((first.num_calls(), again.num_calls()), (1, 1), "both entries sent again");
    }
    // Whatever else such an answer leaves out, a code EventBridge names as not retryable fails the put at once.
    let refused = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| put_answer(&[Some("MalformedDetail")]));
    let again = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| put_answer(&[None, None]));
    let bus = shared::adapters::eventbridge::EventBridgeBus::new(events(&[&refused, &again]), "bus");
    let e = bus.put(&two_requests()).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Permanent, "MalformedDetail"), "{e:?}");
    assert_eq!((refused.num_calls(), again.num_calls()), (1, 0), "not sent again");
}

#[tokio::test]
async fn an_entry_putevents_names_not_retryable_fails_the_put_at_once_as_permanent() {
    use shared::ports::RequestBus;
    for code in ["MalformedDetail", "AccessDeniedException", "NotAuthorizedForSourceException"] {
        let refused =
            mock!(aws_sdk_eventbridge::Client::put_events).then_output(move || put_answer(&[None, Some(code)]));
        let again = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| put_answer(&[None]));
        let bus = shared::adapters::eventbridge::EventBridgeBus::new(events(&[&refused, &again]), "bus");
        let e = bus.put(&two_requests()).await.unwrap_err();
        assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Permanent, code));
        assert_eq!((refused.num_calls(), again.num_calls()), (1, 0), "{code}: not sent again");
    }
}
