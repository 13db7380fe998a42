//! In-memory ports for the commands' tests. The allowlist keeps versions and checks every condition the
//! way the port documents, and can let another editor's change land just before the command's next write
//! (the moment a lost race needs).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use shared::domain::allowlist::{ALL_SERVICES, Attr, Item};
use shared::domain::record::{DecisionRecord, Kind, Status};
use shared::domain::{
    AccountId, Connection, ConnectionRequest, ConnectionState, DefaultAction, EndpointId, ItemFailure, Outcome, Region,
    Rules, ServiceId, Trigger,
};
use shared::ports::{
    Allowlist, AllowlistAdmin, Change, ConnectionFilter, Connections, DecisionQueries, Expect, ItemKey, PortResult,
    RequestBus, StoredItem, Written,
};

use super::Out;
use crate::Output;
use crate::context::Settings;

pub fn out(format: Output) -> Out<Vec<u8>> {
    Out::new(format, Vec::new())
}

impl Out<Vec<u8>> {
    pub fn text(&self) -> String {
        String::from_utf8(self.w.clone()).unwrap()
    }
}

pub fn allow_item(service_id: &str, principal: &str) -> Item {
    Item::from([
        ("service_id".to_owned(), Attr::S(service_id.into())),
        ("principal".to_owned(), Attr::S(principal.into())),
        ("effect".to_owned(), Attr::S("allow".into())),
    ])
}

fn key_of(item: &Item) -> ItemKey {
    let text = |k: &str| match item.get(k) {
        Some(Attr::S(s)) => s.clone(),
        _ => panic!("a test item without {k}"),
    };
    ItemKey { service_id: text("service_id"), principal: text("principal") }
}

/// The table: items by key, with their versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table(BTreeMap<ItemKey, StoredItem>);

impl Table {
    pub fn insert(&mut self, item: Item, version: Option<u64>) {
        self.0.insert(key_of(&item), StoredItem { item, version });
    }

    /// Another editor's write: sets a text attribute and bumps the version.
    pub fn edit(&mut self, key: &ItemKey, attr: &str, value: &str) {
        let s = self.0.get_mut(key).unwrap();
        s.item.insert(attr.into(), Attr::S(value.into()));
        s.version = Some(s.version.unwrap_or(0) + 1);
    }

    pub fn get(&self, key: &ItemKey) -> Option<&StoredItem> {
        self.0.get(key)
    }

    pub fn keys(&self) -> Vec<ItemKey> {
        self.0.keys().cloned().collect()
    }

    fn holds(&self, key: &ItemKey, expect: Expect) -> bool {
        match (self.0.get(key), expect) {
            (None, Expect::Absent) => true,
            (Some(s), Expect::Version(v)) => s.version == v,
            _ => false,
        }
    }

    fn put(&mut self, item: &Item, expect: Expect) {
        let version = match expect {
            Expect::Absent => 1,
            Expect::Version(v) => v.unwrap_or(0) + 1,
        };
        self.insert(item.clone(), Some(version));
    }
}

type Race = Box<dyn FnOnce(&mut Table) + Send>;

#[derive(Default)]
pub struct FakeAllowlist {
    table: Mutex<Table>,
    race: Mutex<Option<Race>>,
    applied: AtomicUsize,
}

impl FakeAllowlist {
    /// The items, each at version 1.
    pub fn with(items: &[Item]) -> Self {
        let mut table = Table::default();
        for item in items {
            table.insert(item.clone(), Some(1));
        }
        Self { table: Mutex::new(table), ..Self::default() }
    }

    pub fn from_table(table: Table) -> Self {
        Self { table: Mutex::new(table), ..Self::default() }
    }

    /// Another editor's change, landing once: after this command has read, just before its next write.
    pub fn racing(self, race: impl FnOnce(&mut Table) + Send + 'static) -> Self {
        *self.race.lock().unwrap() = Some(Box::new(race));
        self
    }

    pub fn snapshot(&self) -> Table {
        self.table.lock().unwrap().clone()
    }

    pub fn get(&self, key: &ItemKey) -> Option<StoredItem> {
        self.table.lock().unwrap().get(key).cloned()
    }

    /// How many all-or-nothing edits were applied.
    pub fn applied(&self) -> usize {
        self.applied.load(Ordering::Relaxed)
    }

    /// The table for a write, after any race has landed.
    fn writing(&self) -> std::sync::MutexGuard<'_, Table> {
        let mut table = self.table.lock().unwrap();
        if let Some(race) = self.race.lock().unwrap().take() {
            race(&mut table);
        }
        table
    }
}

impl Allowlist for FakeAllowlist {
    async fn rules_for(&self, service: &ServiceId) -> PortResult<Rules> {
        let table = self.table.lock().unwrap();
        let items: Vec<&Item> = table
            .0
            .iter()
            .filter(|(k, _)| k.service_id == service.as_str() || k.service_id == ALL_SERVICES)
            .map(|(_, s)| &s.item)
            .collect();
        Ok(Rules::from_items(items))
    }
}

impl AllowlistAdmin for FakeAllowlist {
    async fn items(&self) -> PortResult<Vec<StoredItem>> {
        Ok(self.table.lock().unwrap().0.values().cloned().collect())
    }

    async fn item(&self, key: &ItemKey) -> PortResult<Option<StoredItem>> {
        Ok(self.get(key))
    }

    async fn put_if(&self, item: &Item, expect: Expect) -> PortResult<Written> {
        let mut table = self.writing();
        if !table.holds(&key_of(item), expect) {
            return Ok(Written::Lost);
        }
        table.put(item, expect);
        Ok(Written::Yes)
    }

    async fn delete_if(&self, key: &ItemKey, version: Option<u64>) -> PortResult<Written> {
        let mut table = self.writing();
        if !table.holds(key, Expect::Version(version)) {
            return Ok(Written::Lost);
        }
        table.0.remove(key);
        Ok(Written::Yes)
    }

    async fn apply(&self, changes: &[Change]) -> PortResult<Written> {
        let mut table = self.writing();
        let holds = |c: &Change| match c {
            Change::Put(item, expect) => table.holds(&key_of(item), *expect),
            Change::Remove(key, version) => table.holds(key, Expect::Version(*version)),
        };
        if !changes.iter().all(holds) {
            return Ok(Written::Lost);
        }
        for c in changes {
            match c {
                Change::Put(item, expect) => table.put(item, *expect),
                Change::Remove(key, _) => {
                    table.0.remove(key);
                }
            }
        }
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(Written::Yes)
    }
}

pub struct FakeDecisions(pub Vec<DecisionRecord>);

impl DecisionQueries for FakeDecisions {
    async fn for_endpoint(&self, endpoint: &EndpointId) -> PortResult<Vec<DecisionRecord>> {
        Ok(self.0.iter().filter(|r| &r.endpoint_id == endpoint).cloned().collect())
    }

    async fn decided_since(&self, service: &ServiceId, since_ms: i64) -> PortResult<Vec<DecisionRecord>> {
        let mut out: Vec<_> =
            self.0.iter().filter(|r| &r.service_id == service && r.decided_at_ms >= since_ms).cloned().collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.decided_at_ms));
        Ok(out)
    }
}

pub fn record(endpoint: &str, service: &str, outcome: Outcome, decided_at_ms: i64) -> DecisionRecord {
    DecisionRecord {
        kind: Kind::Decision,
        endpoint_id: EndpointId::parse(endpoint).unwrap(),
        created_at_ms: decided_at_ms - 1000,
        service_id: ServiceId::parse(service).unwrap(),
        owner: AccountId::parse("222222222222").unwrap(),
        region: None,
        outcome,
        reason: "listed".into(),
        matched_rule: None,
        detail: String::new(),
        tenant: None,
        trigger: Trigger::Sweep,
        decided_at_ms,
        status: Status::Notified,
        claim: "invocation".into(),
        lease_until_ms: 0,
        version: 1,
        expires_at: None,
    }
}

/// Connections waiting for acceptance.
pub struct FakeConnections(pub Vec<Connection>);

pub fn connection(endpoint: &str, service: &str, owner: &str) -> Connection {
    Connection {
        service_id: ServiceId::parse(service).unwrap(),
        endpoint_id: EndpointId::parse(endpoint).unwrap(),
        owner: AccountId::parse(owner).unwrap(),
        state: ConnectionState::PendingAcceptance,
        region: None,
        created_at_ms: 1_790_000_000_000,
        connection_id: None,
    }
}

impl Connections for FakeConnections {
    async fn describe(&self, service: &ServiceId, f: &ConnectionFilter) -> PortResult<Vec<Connection>> {
        Ok(self
            .0
            .iter()
            .filter(|c| &c.service_id == service)
            .filter(|c| f.endpoints.is_empty() || f.endpoints.contains(&c.endpoint_id))
            .filter(|c| f.owner.as_ref().is_none_or(|o| o == &c.owner))
            .filter(|c| f.states.is_empty() || f.states.iter().any(|s| s == c.state.as_str()))
            .cloned()
            .collect())
    }

    async fn accept(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<ItemFailure>> {
        unreachable!("the CLI never accepts")
    }

    async fn reject(&self, _: &ServiceId, _: &[EndpointId]) -> PortResult<Vec<ItemFailure>> {
        unreachable!("the CLI never rejects")
    }

    async fn tag(&self, _: &[String], _: &str, _: &str) -> PortResult<()> {
        unreachable!("the CLI never tags")
    }
}

#[derive(Default)]
pub struct FakeBus(pub Mutex<Vec<ConnectionRequest>>);

impl RequestBus for FakeBus {
    async fn put(&self, requests: &[ConnectionRequest]) -> PortResult<()> {
        self.0.lock().unwrap().extend_from_slice(requests);
        Ok(())
    }
}

pub fn settings(managed: &[&str], now: i64) -> Settings {
    Settings {
        managed: managed.iter().map(|s| ServiceId::parse(s).unwrap()).collect::<BTreeSet<_>>(),
        region: Ok(Region::parse("eu-west-1").unwrap()),
        default_action: DefaultAction::Reject,
        now,
    }
}
