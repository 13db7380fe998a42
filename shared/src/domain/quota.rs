//! `max_endpoints` as a ledger of slots, so the quota holds under concurrent invocations and under
//! EC2's eventual consistency (an accept not yet visible to Describe still holds its slot).
//!
//! The ledger is one item per (service, account): endpoint ID → when its slot was taken. Taking a slot
//! is a read, this pure step, and a conditional write of the whole ledger (optimistic: the writer whose
//! version is stale re-reads and tries again), so two invocations can never both take the last slot.

use std::collections::{BTreeMap, BTreeSet};

use super::connection::ConnectionState;
use super::ids::EndpointId;

/// A slot older than this whose connection EC2 does not show at all, or still shows waiting, is freed:
/// longer than any claim lease and any visibility lag, so an accept in flight never loses its slot.
pub const STALE_SLOT_MS: i64 = 15 * 60 * 1000;

/// The ledger: endpoint ID → epoch ms its slot was taken.
pub type Slots = BTreeMap<String, i64>;

/// What Describe said about the ledger's members and the owner's accepted connections.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The owner's connections EC2 shows as accepted (`pending` or `available`).
    pub accepted: BTreeSet<String>,
    /// The state EC2 shows for each ledger member it shows at all.
    pub members: BTreeMap<String, ConnectionState>,
}

/// The ledger after `endpoint` takes a slot, or `Err(used)` when all `cap` slots are taken.
///
/// First the ledger catches up with EC2: accepted connections it does not hold (accepted by hand, or
/// before the ledger existed) are added; members EC2 shows rejected, deleted, failed or expired are freed,
/// and so are members that are stale (`STALE_SLOT_MS`) and either absent from Describe or still waiting.
pub fn take_slot(current: &Slots, endpoint: &EndpointId, cap: u32, seen: &Seen, now_ms: i64) -> Result<Slots, u32> {
    let mut slots = current.clone();
    for id in &seen.accepted {
        slots.entry(id.clone()).or_insert(now_ms);
    }
    slots.retain(|id, taken| {
        if id == endpoint.as_str() || seen.accepted.contains(id) {
            return true;
        }
        let stale = now_ms.saturating_sub(*taken) > STALE_SLOT_MS;
        match seen.members.get(id) {
            Some(s) if s.is_accepted() => true,
            Some(ConnectionState::PendingAcceptance) => !stale,
            Some(_) => false,
            None => !stale,
        }
    });
    if slots.contains_key(endpoint.as_str()) {
        return Ok(slots);
    }
    let used = u32::try_from(slots.len()).unwrap_or(u32::MAX);
    if used >= cap {
        return Err(used);
    }
    slots.insert(endpoint.to_string(), now_ms);
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ep(i: u32) -> EndpointId {
        EndpointId::parse(&format!("vpce-{i:017x}")).unwrap()
    }

    #[test]
    fn takes_until_the_cap_then_refuses() {
        let mut slots = Slots::new();
        for i in 0..3 {
            slots = take_slot(&slots, &ep(i), 3, &Seen::default(), 1_000).unwrap();
        }
        assert_eq!(take_slot(&slots, &ep(9), 3, &Seen::default(), 1_000), Err(3));
        // Taking again is idempotent.
        assert_eq!(take_slot(&slots, &ep(1), 3, &Seen::default(), 1_000).unwrap(), slots);
    }

    #[test]
    fn an_accept_not_yet_visible_keeps_its_slot_and_a_rejected_one_frees_it() {
        let slots: Slots = [(ep(1).to_string(), 1_000), (ep(2).to_string(), 1_000)].into();
        let mut seen = Seen::default();
        // ep(1) invisible (lag), ep(2) rejected: only ep(2)'s slot is free.
        seen.members.insert(ep(2).to_string(), ConnectionState::Rejected);
        let next = take_slot(&slots, &ep(3), 2, &seen, 2_000).unwrap();
        assert!(next.contains_key(ep(1).as_str()) && next.contains_key(ep(3).as_str()) && next.len() == 2);
        // Long after, an invisible member is freed.
        let later = take_slot(&slots, &ep(3), 1, &Seen::default(), 1_000 + STALE_SLOT_MS + 1).unwrap();
        assert_eq!(later.keys().cloned().collect::<Vec<_>>(), vec![ep(3).to_string()]);
    }

    #[test]
    fn accepted_connections_the_ledger_missed_count() {
        let mut seen = Seen::default();
        seen.accepted.insert(ep(7).to_string());
        seen.accepted.insert(ep(8).to_string());
        assert_eq!(take_slot(&Slots::new(), &ep(1), 2, &seen, 1), Err(2));
    }

    proptest! {
        /// Whatever EC2 shows, a ledger never grows past the cap through `take_slot`, and the endpoint
        /// holds a slot exactly when it is not refused.
        #[test]
        fn never_more_than_the_cap(
            taken in proptest::collection::btree_map(0u32..20, 0i64..2_000_000, 0..6),
            states in proptest::collection::btree_map(0u32..20, 0u8..5, 0..10),
            accepted in proptest::collection::btree_set(0u32..20, 0..4),
            me in 0u32..20, cap in 1u32..5, now in 0i64..3_000_000,
        ) {
            let slots: Slots = taken.iter().map(|(i, t)| (ep(*i).to_string(), *t)).collect();
            let mut seen = Seen::default();
            for (i, s) in &states {
                let state = [ConnectionState::PendingAcceptance, ConnectionState::Pending, ConnectionState::Available, ConnectionState::Rejected, ConnectionState::Deleted][*s as usize].clone();
                seen.members.insert(ep(*i).to_string(), state);
            }
            seen.accepted = accepted.iter().map(|i| ep(*i).to_string()).collect();
            let held = slots.contains_key(ep(me).as_str()) || seen.accepted.contains(ep(me).as_str());
            match take_slot(&slots, &ep(me), cap, &seen, now) {
                Ok(next) => {
                    prop_assert!(next.contains_key(ep(me).as_str()));
                    // A new slot is only ever taken below the cap.
                    prop_assert!(held || u32::try_from(next.len()).unwrap() <= cap);
                }
                Err(used) => prop_assert!(used >= cap),
            }
        }
    }
}
