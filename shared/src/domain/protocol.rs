//! The decision-record protocol, as one pure function: given what EC2 says about a connection and what
//! its record says, the next step. `decide` gathers the inputs, calls `next_step`, and carries the step
//! out; every rule about statuses lives here.
//!
//! A record's status moves only along these transitions. A claim is a conditional put: on no record, or on
//! the version it read (a takeover, a held connection decided again, a `gone` decision EC2 shows waiting). Every other move is conditioned on the
//! claim, the version and the status it moves from, so a stale writer loses, and of two invocations
//! finishing the same record (a queue retry and the sweep, which read the same claim and version) only the
//! first moves it; the writer holds the record from then on (its `claim`):
//!
//! | from        | to          | when                                                                 |
//! |-------------|-------------|----------------------------------------------------------------------|
//! | (none)      | `claimed`   | a decision is made (conditional put: no record yet)                  |
//! | `claimed`   | `claimed`   | a newer claim takes over a dead one (its lease ended; version + 1)   |
//! | `claimed`   | `notifying` | EC2 took the action (or, for a hold, nothing to do): publish next    |
//! | `claimed`   | `gone`      | EC2 does not know the endpoint: its Accept/Reject refused the ID as not found, or Describe did not show it just before a reject, or (a dead claim) Describe no longer lists it at the request's third receive |
//! | `gone` (decision) | `claimed` | EC2 shows the connection waiting after all (the not-found was its lag): decided again, by the record's version; a `gone` revocation stays finished |
//! | `claimed`   | `superseded`| EC2's state moved on before the action, not to what it would have done (a person accepted before a reject); or a dead claim whose action never took effect; or a dead revocation no longer wanted (its owner allowed again, or an invalid item that names no one, which never revokes) |
//! | `acted`     | `notifying` | an owed notification is published (retry or sweep)                   |
//! | `notifying` | `acted`     | the publish was refused for certain: owed again                      |
//! | `notifying` | `notified`  | SNS took the publish: its copy reached the stack's deliveries queue   |
//! | `acted`     | `notified`  | the same, for a publish SNS answered with an error and sent all the same |
//! | `notified`/`notifying` (hold) | `claimed` | a held connection is decided again (allowlist change, or a day on) |
//!
//! `notifying` is never published from again: at most one notification per decision.

use super::connection::{Connection, ConnectionState};
use super::policy::Outcome;
use super::record::{DecisionRecord, Kind, Status};
use super::request::Trigger;

/// A connection held for a person is re-announced at most this often by the sweep; allowlist changes
/// and manual requests re-evaluate it at once (and announce only a change).
pub const HOLD_REANNOUNCE_MS: i64 = 24 * 60 * 60 * 1000;

/// Why nothing is done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The connection is not in the state this kind of record acts on.
    NotPending,
    /// The decision is finished (notified, or nothing more owed).
    AlreadyDecided,
    /// The revocation is finished.
    AlreadyRevoked,
    /// Another invocation holds a live claim: the request is retried (if the holder dies, the retry
    /// finishes the decision after the claim's lease).
    ClaimedElsewhere,
    /// Held and announced less than a day ago; the sweep backs off (allowlist changes still re-evaluate).
    HeldRecently,
    /// The record says EC2 accepted it, but Describe still shows `pendingAcceptance`: a stale read (EC2
    /// is eventually consistent; an accepted connection never waits for acceptance again). Whatever is
    /// asked (a revocation) is asked again once EC2 has caught up.
    StaleRead,
}

impl Skip {
    /// Whether the request must come back later rather than be dropped.
    pub fn retry(self) -> bool {
        self == Self::ClaimedElsewhere
    }

    /// Whether a connection skipped as a decision may be due a revocation.
    pub fn may_revoke(self) -> bool {
        matches!(self, Self::NotPending | Self::AlreadyDecided)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPending => "not in the state this record acts on",
            Self::AlreadyDecided => "already decided",
            Self::AlreadyRevoked => "already revoked",
            Self::ClaimedElsewhere => "claimed by another invocation",
            Self::HeldRecently => "held, announced less than a day ago; re-evaluated on allowlist changes",
            Self::StaleRead => "accepted, but EC2 does not show it yet",
        }
    }
}

/// What to do with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Skip(Skip),
    /// Evaluate and claim; the version the claim must find (`None`: no record yet). `previous_hold`:
    /// the connection was held and announced; a decision that is still `hold` is not announced again.
    Decide {
        previous: Option<u64>,
        previous_hold: bool,
    },
    /// EC2 already reflects the decision: make sure the record says so, then notify (once).
    Notify(Box<DecisionRecord>),
    /// A claim that died without its action taking effect, on a connection no longer waiting for it:
    /// nothing is owed; close the record (`superseded`) so the sweep stops re-requesting it.
    Close(Box<DecisionRecord>),
}

/// Whether EC2's state shows that `r`'s action took effect.
pub fn took_effect(r: &DecisionRecord, state: &ConnectionState) -> bool {
    match (r.kind, r.outcome) {
        (Kind::Revocation, _) | (Kind::Decision, Outcome::Reject) => *state == ConnectionState::Rejected,
        (Kind::Decision, Outcome::Accept) => state.is_accepted(),
        (Kind::Decision, Outcome::Hold) => false,
    }
}

/// The next step for a record of `kind` about `conn` (`rec`: the record, if any), for a request with
/// `trigger`, at `now` (epoch ms). A decision acts on `pendingAcceptance`; a revocation on an accepted
/// connection (`available`, or `pending` on its way there: an allow withdrawn in that window must not wait
/// for the next sweep).
pub fn next_step(kind: Kind, conn: &Connection, rec: Option<DecisionRecord>, trigger: Trigger, now: i64) -> Step {
    let actionable = match kind {
        Kind::Decision => conn.state == ConnectionState::PendingAcceptance,
        Kind::Revocation => conn.state.is_accepted(),
    };
    let finished = match kind {
        Kind::Decision => Skip::AlreadyDecided,
        Kind::Revocation => Skip::AlreadyRevoked,
    };
    let Some(r) = rec else {
        return if actionable {
            Step::Decide { previous: None, previous_hold: false }
        } else {
            Step::Skip(Skip::NotPending)
        };
    };
    match r.status {
        Status::Acted => Step::Notify(Box::new(r)),
        Status::Claimed if r.lease_until_ms > now => Step::Skip(Skip::ClaimedElsewhere),
        Status::Claimed if actionable => Step::Decide { previous: Some(r.version), previous_hold: false },
        // A dead claim: EC2 tells whether its action took effect.
        Status::Claimed if took_effect(&r, &conn.state) => Step::Notify(Box::new(r)),
        Status::Claimed => Step::Close(Box::new(r)),
        Status::Notifying | Status::Notified
            if kind == Kind::Decision && actionable && r.outcome == Outcome::Accept =>
        {
            Step::Skip(Skip::StaleRead)
        }
        Status::Notifying | Status::Notified if kind == Kind::Decision && actionable && r.outcome == Outcome::Hold => {
            let sweep = trigger == Trigger::Sweep;
            if sweep && now.saturating_sub(r.decided_at_ms) < HOLD_REANNOUNCE_MS {
                Step::Skip(Skip::HeldRecently)
            } else {
                // A day on, the sweep re-evaluates and, if it is still held, announces it again.
                Step::Decide { previous: Some(r.version), previous_hold: !sweep }
            }
        }
        // `gone` says only that EC2 did not know the endpoint (an Accept/Reject refused its ID as not found,
        // or Describe did not show it just before a reject). EC2 showing it waiting again, under the same
        // creation time, means that was its lag (the EC2 API reference, "Eventual consistency": an ID may be
        // answered as not found for a while): the decision is made again, over the record's version. Not
        // so `superseded`, which EC2 showed in another state (a person's accept): a connection never returns
        // to `pendingAcceptance`, so a later read showing it there is the stale one.
        Status::Gone if kind == Kind::Decision && actionable => {
            Step::Decide { previous: Some(r.version), previous_hold: false }
        }
        Status::Notifying | Status::Notified | Status::Gone | Status::Superseded => Step::Skip(finished),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, EndpointId, ServiceId};
    use crate::domain::policy::{Decision, Reason};
    use proptest::prelude::*;

    fn conn(state: ConnectionState) -> Connection {
        Connection {
            service_id: ServiceId::parse("vpce-svc-0123456789abcdef0").unwrap(),
            endpoint_id: EndpointId::parse("vpce-0123456789abcdef0").unwrap(),
            owner: AccountId::parse("222222222222").unwrap(),
            state,
            region: None,
            created_at_ms: 1,
            connection_id: None,
        }
    }

    fn record(kind: Kind, outcome: Outcome, status: Status, lease: i64, decided: i64) -> DecisionRecord {
        let d = Decision {
            outcome,
            reason: Reason::Allowed,
            matched_rule: None,
            detail: String::new(),
            max_endpoints: None,
            tenant: None,
        };
        let mut r = DecisionRecord::claim(
            kind,
            &conn(ConnectionState::PendingAcceptance),
            &d,
            Trigger::Manual,
            decided,
            "c",
            0,
            None,
        );
        r.status = status;
        r.lease_until_ms = lease;
        r
    }

    const STATES: [ConnectionState; 6] = [
        ConnectionState::PendingAcceptance,
        ConnectionState::Pending,
        ConnectionState::Available,
        ConnectionState::Rejected,
        ConnectionState::Deleted,
        ConnectionState::Failed,
    ];
    const STATUSES: [Status; 7] = [
        Status::Claimed,
        Status::Acted,
        Status::Notifying,
        Status::Notified,
        Status::Gone,
        Status::Superseded,
        Status::Claimed,
    ];
    const OUTCOMES: [Outcome; 3] = [Outcome::Accept, Outcome::Reject, Outcome::Hold];
    const TRIGGERS: [Trigger; 4] = [Trigger::Notification, Trigger::Sweep, Trigger::AllowlistChange, Trigger::Manual];

    #[test]
    fn a_held_connection_backs_off_on_sweeps_only() {
        let held = record(Kind::Decision, Outcome::Hold, Status::Notified, 0, 1_000);
        let c = conn(ConnectionState::PendingAcceptance);
        assert_eq!(
            next_step(Kind::Decision, &c, Some(held.clone()), Trigger::Sweep, 2_000),
            Step::Skip(Skip::HeldRecently)
        );
        assert_eq!(
            next_step(Kind::Decision, &c, Some(held.clone()), Trigger::AllowlistChange, 2_000),
            Step::Decide { previous: Some(1), previous_hold: true }
        );
        assert_eq!(
            next_step(Kind::Decision, &c, Some(held), Trigger::Sweep, 1_000 + HOLD_REANNOUNCE_MS),
            Step::Decide { previous: Some(1), previous_hold: false }
        );
    }

    #[test]
    fn a_decision_closed_gone_is_made_again_when_ec2_shows_the_connection_waiting_and_a_superseded_one_is_not() {
        let waiting = conn(ConnectionState::PendingAcceptance);
        for outcome in OUTCOMES {
            for trigger in TRIGGERS {
                let gone = record(Kind::Decision, outcome, Status::Gone, 0, 1_000);
                assert_eq!(
                    next_step(Kind::Decision, &waiting, Some(gone.clone()), trigger, 2_000),
                    Step::Decide { previous: Some(gone.version), previous_hold: false }
                );
                let superseded = record(Kind::Decision, outcome, Status::Superseded, 0, 1_000);
                assert_eq!(
                    next_step(Kind::Decision, &waiting, Some(superseded), trigger, 2_000),
                    Step::Skip(Skip::AlreadyDecided)
                );
            }
        }
        for state in &STATES[1..] {
            let gone = record(Kind::Decision, Outcome::Accept, Status::Gone, 0, 1_000);
            assert_eq!(
                next_step(Kind::Decision, &conn(state.clone()), Some(gone), Trigger::Sweep, 2_000),
                Step::Skip(Skip::AlreadyDecided),
                "{state:?}"
            );
        }
    }

    #[test]
    fn an_accepted_connection_that_describe_shows_waiting_is_a_stale_read() {
        let accepted = record(Kind::Decision, Outcome::Accept, Status::Notified, 0, 1_000);
        let c = conn(ConnectionState::PendingAcceptance);
        assert_eq!(
            next_step(Kind::Decision, &c, Some(accepted), Trigger::AllowlistChange, 2_000),
            Step::Skip(Skip::StaleRead)
        );
    }

    proptest! {
        /// The protocol's invariants, over every combination of EC2 state, record status, outcome,
        /// lease, trigger and kind:
        /// - a notification is due only when EC2 was told (`acted`) or EC2 shows the action took effect;
        ///   never again once `notifying` or `notified` (at most one per decision);
        /// - a decision or revocation is made only when EC2 shows the state it acts on;
        /// - a live claim held by another invocation is never decided over, and its request is retried.
        #[test]
        fn the_transitions_hold(
            state in 0usize..6, status in 0usize..7, outcome in 0usize..3, trigger in 0usize..4,
            revocation in any::<bool>(), has_record in any::<bool>(), lease in 0i64..3_000, now in 0i64..3_000,
        ) {
            let kind = if revocation { Kind::Revocation } else { Kind::Decision };
            let outcome = if revocation { Outcome::Reject } else { OUTCOMES[outcome] };
            let c = conn(STATES[state].clone());
            let rec = has_record.then(|| record(kind, outcome, STATUSES[status], lease, 500));
            let step = next_step(kind, &c, rec.clone(), TRIGGERS[trigger], now);
            let actionable = match kind {
                Kind::Decision => c.state == ConnectionState::PendingAcceptance,
                Kind::Revocation => c.state.is_accepted(),
            };
            match &step {
                Step::Notify(r) => {
                    prop_assert!(r.status == Status::Acted || (r.status == Status::Claimed && took_effect(r, &c.state)));
                }
                Step::Decide { .. } => prop_assert!(actionable),
                Step::Close(r) => prop_assert!(r.status == Status::Claimed && !actionable && !took_effect(r, &c.state)),
                Step::Skip(s) => prop_assert!(!s.retry() || rec.as_ref().is_some_and(|r| r.status == Status::Claimed && r.lease_until_ms > now)),
            }
            if let Some(r) = &rec {
                if matches!(r.status, Status::Notifying | Status::Notified) {
                    prop_assert!(!matches!(step, Step::Notify(_)), "published once only");
                }
                if r.status == Status::Claimed && r.lease_until_ms > now {
                    prop_assert_eq!(step, Step::Skip(Skip::ClaimedElsewhere));
                }
            }
        }
    }
}
