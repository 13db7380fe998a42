//! `reevaluate`: asks `decide` to decide again, by putting Connection Request events on the bus.

use std::io::Write;

use serde_json::json;
use shared::domain::time::now_ms;
use shared::domain::{ConnectionRequest, ConnectionState, EndpointId, ServiceId, Trigger};
use shared::ports::{Connections, RequestBus};
use shared::producers::requests_for;

use super::query::find;
use super::{Out, R, usage};
use crate::Output;
use crate::context::{CliError, Settings};

/// What `reevaluate --service`/`--all` asks about: connections waiting for acceptance, and accepted ones
/// (`available`, or `pending` on its way there), which `decide` revokes when revocation is on.
const REEVALUATED: [&str; 3] = ["pendingAcceptance", ConnectionState::ACCEPTED[0], ConnectionState::ACCEPTED[1]];

/// Which connections to decide again.
pub enum Which {
    Endpoint(EndpointId),
    Service(ServiceId),
    All,
}

pub fn which(endpoint: Option<&str>, service: Option<&str>, all: bool) -> R<Which> {
    match (endpoint, service, all) {
        (Some(e), _, _) => EndpointId::parse(e).map(Which::Endpoint).map_err(usage),
        (None, Some(s), _) => ServiceId::parse(s).map(Which::Service).map_err(usage),
        (None, None, true) => Ok(Which::All),
        (None, None, false) => Err(usage("name an ENDPOINT_ID, --service ID or --all")),
    }
}

pub async fn reevaluate<C: Connections, B: RequestBus>(
    conns: &C,
    bus: &B,
    settings: &Settings,
    which: &Which,
    out: &mut Out<impl Write>,
) -> R<()> {
    let requests: Vec<ConnectionRequest> = match which {
        Which::Endpoint(e) => {
            let c = find(conns, settings, e)
                .await?
                .ok_or_else(|| CliError::Service(format!("no managed service has a connection {e}")))?;
            vec![ConnectionRequest {
                service_id: c.service_id,
                endpoint_id: c.endpoint_id,
                trigger: Trigger::Manual,
                requested_at: now_ms(),
            }]
        }
        Which::Service(s) => {
            // decide ignores a request for a service the stack does not manage: say so rather than report
            // requests nothing will decide.
            if let Ok(managed) = settings.managed()
                && !managed.contains(s)
            {
                let list = managed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                return Err(usage(format!("--service {s} is not a service the stack manages ({list})")));
            }
            requests_for(conns, s, None, &REEVALUATED, Trigger::Manual).await?
        }
        Which::All => {
            let mut all = Vec::new();
            for s in settings.managed()? {
                all.extend(requests_for(conns, s, None, &REEVALUATED, Trigger::Manual).await?);
            }
            all
        }
    };
    bus.put(&requests).await?;
    match out.format {
        Output::Json => {
            out.json(&json!({"requested": requests.iter().map(|r| r.endpoint_id.to_string()).collect::<Vec<_>>()}))
        }
        Output::Table | Output::Csv | Output::NginxMap => {
            out.line(format!("asked Gatekeeper to decide {} connection(s) again", requests.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::commands::fakes::{FakeBus, FakeConnections, connection, out, settings};

    const SVC: &str = "vpce-svc-0123456789abcdef0";

    #[tokio::test]
    async fn when_reevaluating_all_should_put_a_manual_request_per_connection() {
        let conns = FakeConnections(vec![
            connection("vpce-0123456789abcdef0", SVC, "222222222222"),
            connection("vpce-0123456789abcdef1", SVC, "333333333333"),
        ]);
        let bus = FakeBus::default();
        let mut o = out(Output::Table);
        reevaluate(&conns, &bus, &settings(&[SVC], 0), &which(None, None, true).unwrap(), &mut o).await.unwrap();
        assert_eq!(o.text(), "asked Gatekeeper to decide 2 connection(s) again\n");
        let put = bus.0.lock().unwrap();
        assert_eq!(put.len(), 2);
        assert!(put.iter().all(|r| r.trigger == Trigger::Manual));
    }

    #[tokio::test]
    async fn when_the_service_is_not_managed_should_refuse_with_252_and_send_nothing() {
        let other = "vpce-svc-0fedcba9876543210";
        let conns = FakeConnections(vec![connection("vpce-0123456789abcdef0", other, "222222222222")]);
        let bus = FakeBus::default();
        let mut o = out(Output::Table);
        let err = reevaluate(&conns, &bus, &settings(&[SVC], 0), &which(None, Some(other), false).unwrap(), &mut o)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 252);
        assert!(err.to_string().contains(&format!("--service {other} is not a service the stack manages ({SVC})")));
        assert!(bus.0.lock().unwrap().is_empty());
    }

    #[test]
    fn when_nothing_is_named_should_refuse_with_252() {
        assert_eq!(which(None, None, false).err().unwrap().exit_code(), 252);
        assert_eq!(which(Some("i-123"), None, false).err().unwrap().exit_code(), 252);
    }
}
