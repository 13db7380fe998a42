//! EC2: `DescribeVpcEndpointConnections` (the truth), `Accept/RejectVpcEndpointConnections` (the actions).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Tag, UnsuccessfulItem, VpcEndpointConnection};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{bad_data, classify};
use crate::domain::service::ServiceHealth;
use crate::domain::{AccountId, Connection, ConnectionState, EndpointId, ItemFailure, Region, ServiceId};
use crate::ports::{ConnectionFilter, Connections, PortResult};
use crate::ports::{ErrorKind, PortError};

/// How many endpoint IDs go into one filter, and the most a caller should pass to one accept/reject
/// (each accept/reject is exactly one EC2 call, so its outcome is all-or-per-item, never partial).
pub const MAX_IDS_PER_CALL: usize = 100;

/// `decide`'s own budget for each of AcceptVpcEndpointConnections and RejectVpcEndpointConnections, shared
/// by all its invocations through the decisions table ([`crate::ports::CallBudget`]): at most
/// `ACT_CALLS_PER_WINDOW` calls in every `ACT_WINDOW_MS`. EC2's bucket for each holds 10 tokens and refills
/// 1 a second (docs/aws-facts.md): two full windows back to back (10 calls) fit in it, and the average rate
/// (1 a second) is its refill, so Gatekeeper's concurrent invocations together are never throttled.
pub const ACT_CALLS_PER_WINDOW: u32 = 5;
pub const ACT_WINDOW_MS: i64 = 5_000;

#[derive(Clone, Debug)]
pub struct Ec2Connections {
    client: Client,
}

impl Ec2Connections {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder().name(name).set_values(Some(values.into_iter().collect())).build()
}

/// Converts one SDK connection; `None` (logged) when EC2 sent something unusable.
fn to_connection(c: &VpcEndpointConnection) -> Result<Connection, String> {
    let service_id = ServiceId::parse(c.service_id().unwrap_or_default()).map_err(|e| e.to_string())?;
    let endpoint_id = EndpointId::parse(c.vpc_endpoint_id().unwrap_or_default()).map_err(|e| e.to_string())?;
    let owner = AccountId::parse(c.vpc_endpoint_owner().unwrap_or_default()).map_err(|e| e.to_string())?;
    // The SDK parses camelCase states as `Unknown`: compare the wire string (ARCHITECTURE.md fact 4).
    let state = ConnectionState::from_wire(c.vpc_endpoint_state().map(|s| s.as_str()).unwrap_or_default());
    let region = match c.vpc_endpoint_region() {
        None | Some("") => None,
        Some(r) => Some(Region::parse(r).map_err(|e| e.to_string())?),
    };
    let created = c.creation_timestamp().ok_or("no CreationTimestamp")?;
    let created_at_ms = created.to_millis().map_err(|e| e.to_string())?;
    let connection_id = c.vpc_endpoint_connection_id().filter(|id| !id.is_empty()).map(str::to_owned);
    Ok(Connection { service_id, endpoint_id, owner, state, region, created_at_ms, connection_id })
}

fn to_failures(items: &[UnsuccessfulItem]) -> Vec<ItemFailure> {
    items
        .iter()
        .map(|u| ItemFailure {
            endpoint_id: u.resource_id().unwrap_or_default().to_owned(),
            code: u.error().and_then(|e| e.code()).unwrap_or("Unknown").to_owned(),
            message: u.error().and_then(|e| e.message()).unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Counts the attempts of one call that reached the point of being sent (`read_before_transmit`: after its
/// endpoint, credentials and signature, just before the HTTP client). A user `DispatchFailure` (the HTTP
/// client refusing the request for a reason of the caller's, hyper's user errors among them) is one
/// attempt's own: the call was never sent only if no earlier attempt reached this point. (A
/// `ConstructionFailure` is serialization's, before any attempt; a failure inside an attempt before it is
/// sent, such as signing, the SDK reports as a dispatch failure that is not the user's: uncertain already.
/// aws-smithy-runtime-api, `OrchestratorError::into_sdk_error`.)
#[derive(Debug, Clone, Default)]
struct Transmits(Arc<AtomicU32>);

impl Intercept for Transmits {
    fn name(&self) -> &'static str {
        "Transmits"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// [`classify`] for an Accept/Reject whose attempts `transmits` counted: an error that would say the call
/// was never sent ([`PortError::never_sent`]) after an earlier attempt reached the point of being sent
/// is `Uncertain` instead: that attempt may have landed unanswered (a timeout, a dropped connection).
fn classify_act<E>(operation: &'static str, err: SdkError<E, Response>, transmits: &Transmits) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut e = classify("ec2", operation, err);
    // A dispatch failure comes after its own attempt's `read_before_transmit`; a construction failure before any.
    let reached = transmits.0.load(Ordering::SeqCst);
    let earlier = if e.code == "DispatchFailure" { reached > 1 } else { reached > 0 };
    if e.never_sent() && earlier {
        e.kind = ErrorKind::Uncertain;
        e.message = format!("after an earlier attempt was sent: {}", e.message);
    }
    e
}

impl Connections for Ec2Connections {
    async fn describe(&self, service: &ServiceId, f: &ConnectionFilter) -> PortResult<Vec<Connection>> {
        let mut out = Vec::new();
        let id_chunks: Vec<Option<&[EndpointId]>> =
            if f.endpoints.is_empty() { vec![None] } else { f.endpoints.chunks(MAX_IDS_PER_CALL).map(Some).collect() };
        for ids in id_chunks {
            let mut req =
                self.client.describe_vpc_endpoint_connections().filters(filter("service-id", [service.to_string()]));
            if let Some(ids) = ids {
                req = req.filters(filter("vpc-endpoint-id", ids.iter().map(ToString::to_string)));
            }
            if let Some(owner) = &f.owner {
                req = req.filters(filter("vpc-endpoint-owner", [owner.to_string()]));
            }
            if !f.states.is_empty() {
                req = req.filters(filter("vpc-endpoint-state", f.states.iter().cloned()));
            }
            let mut pages = req.max_results(1000).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("ec2", "DescribeVpcEndpointConnections", e))?;
                for c in page.vpc_endpoint_connections() {
                    match to_connection(c) {
                        // The filter is the contract; a connection of another service is not ours to act on.
                        Ok(conn) if &conn.service_id == service => out.push(conn),
                        Ok(conn) => {
                            tracing::warn!(service = %service, got = %conn.service_id, "EC2 returned a connection of another service; ignored")
                        }
                        Err(why) => {
                            return Err(bad_data(
                                "ec2",
                                "DescribeVpcEndpointConnections",
                                format!("unusable connection: {why}"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    async fn accept(&self, service: &ServiceId, ids: &[EndpointId]) -> PortResult<Vec<ItemFailure>> {
        let transmits = Transmits::default();
        let out = self
            .client
            .accept_vpc_endpoint_connections()
            .service_id(service.as_str())
            .set_vpc_endpoint_ids(Some(ids.iter().map(ToString::to_string).collect()))
            .customize()
            .interceptor(transmits.clone())
            .send()
            .await
            .map_err(|e| classify_act("AcceptVpcEndpointConnections", e, &transmits))?;
        Ok(to_failures(out.unsuccessful()))
    }

    async fn reject(&self, service: &ServiceId, ids: &[EndpointId]) -> PortResult<Vec<ItemFailure>> {
        let transmits = Transmits::default();
        let out = self
            .client
            .reject_vpc_endpoint_connections()
            .service_id(service.as_str())
            .set_vpc_endpoint_ids(Some(ids.iter().map(ToString::to_string).collect()))
            .customize()
            .interceptor(transmits.clone())
            .send()
            .await
            .map_err(|e| classify_act("RejectVpcEndpointConnections", e, &transmits))?;
        Ok(to_failures(out.unsuccessful()))
    }

    async fn tag(&self, connection_ids: &[String], key: &str, value: &str) -> PortResult<()> {
        self.client
            .create_tags()
            .set_resources(Some(connection_ids.to_vec()))
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| classify("ec2", "CreateTags", e))?;
        Ok(())
    }
}

impl crate::ports::EndpointServices for Ec2Connections {
    async fn configurations(&self, services: &[ServiceId]) -> PortResult<Vec<ServiceHealth>> {
        let mut out = Vec::new();
        for chunk in services.chunks(MAX_IDS_PER_CALL) {
            let mut pages = self
                .client
                .describe_vpc_endpoint_service_configurations()
                .set_service_ids(Some(chunk.iter().map(ToString::to_string).collect()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("ec2", "DescribeVpcEndpointServiceConfigurations", e))?;
                for c in page.service_configurations() {
                    let Ok(service_id) = ServiceId::parse(c.service_id().unwrap_or_default()) else {
                        tracing::warn!(id = ?c.service_id(), "EC2 sent a service configuration without a usable ID");
                        continue;
                    };
                    out.push(ServiceHealth {
                        service_id,
                        state: c.service_state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                        // Not sent: read as off, so a missing answer raises the warning rather than hides it.
                        acceptance_required: c.acceptance_required().unwrap_or(false),
                        private_dns_name: c.private_dns_name().filter(|n| !n.is_empty()).map(str::to_owned),
                        private_dns_state: c
                            .private_dns_name_configuration()
                            .and_then(|p| p.state())
                            .map(|s| s.as_str().to_owned()),
                        regions: c
                            .supported_regions()
                            .iter()
                            .map(|r| {
                                (
                                    r.region().unwrap_or_default().to_owned(),
                                    r.service_state().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn allowed_principals(&self, service: &ServiceId) -> PortResult<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .describe_vpc_endpoint_service_permissions()
            .service_id(service.as_str())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ec2", "DescribeVpcEndpointServicePermissions", e))?;
            out.extend(page.allowed_principals().iter().filter_map(|p| p.principal().map(str::to_owned)));
        }
        Ok(out)
    }

    async fn change_principals(&self, service: &ServiceId, add: &[String], remove: &[String]) -> PortResult<()> {
        let mut req = self.client.modify_vpc_endpoint_service_permissions().service_id(service.as_str());
        if !add.is_empty() {
            req = req.set_add_allowed_principals(Some(add.to_vec()));
        }
        if !remove.is_empty() {
            req = req.set_remove_allowed_principals(Some(remove.to_vec()));
        }
        let out = req.send().await.map_err(|e| classify("ec2", "ModifyVpcEndpointServicePermissions", e))?;
        // `ReturnValue` false: EC2 says the change did not happen; the caller retries from a new read.
        if out.return_value() == Some(false) {
            return Err(bad_data(
                "ec2",
                "ModifyVpcEndpointServicePermissions",
                format!("EC2 answered ReturnValue false for {service}"),
            ));
        }
        Ok(())
    }
}
