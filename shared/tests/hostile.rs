//! Forged and hostile input, generated: the parsers never panic, and what they accept is well-formed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use shared::domain::allowlist::{Attr, Item, parse_item};
use shared::domain::notice::parse_notice;
use shared::domain::request::parse_event;
use shared::domain::{EndpointId, ServiceId};

const SAMPLE: &str = include_str!("../../events/eventbridge/connection-request.json");

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("vpce-svc-0123456789abcdef0"),
            Just("vpce-0123456789abcdef0"),
            Just("ｖｐｃｅ-0123456789abcdef0"),
            Just("vpce-0123456789abcdef0\u{200b}"),
            Just("Connect"),
            Just("gatekeeper"),
            Just("Connection Request"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("source".to_owned()),
                    Just("detail-type".to_owned()),
                    Just("detail".to_owned()),
                    Just("service_id".to_owned()),
                    Just("endpoint_id".to_owned()),
                    Just("trigger".to_owned()),
                    Just("requested_at".to_owned()),
                    "[a-zA-Z_]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_attr() -> impl Strategy<Value = Attr> {
    let leaf = prop_oneof![
        ".{0,30}".prop_map(Attr::S),
        prop_oneof![
            Just("allow"),
            Just("deny"),
            Just("*"),
            Just("111122223333"),
            Just("arn:aws:iam::111122223333:root")
        ]
        .prop_map(|s| Attr::S(s.to_owned())),
        "-?[0-9]{0,22}(\\.[0-9]{1,3})?".prop_map(Attr::N),
        any::<bool>().prop_map(Attr::Bool),
        proptest::collection::vec(".{0,12}", 0..4).prop_map(Attr::Ss),
        Just(Attr::Null),
        Just(Attr::Other("M")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| proptest::collection::vec(inner, 0..4).prop_map(Attr::L))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn events_never_panic_and_only_valid_ids_pass(v in arb_json()) {
        let body = v.to_string();
        if let Ok(r) = parse_event(&body) {
            prop_assert!(r.service_id.as_str().is_ascii() && r.endpoint_id.as_str().is_ascii());
            prop_assert!(r.service_id.as_str().starts_with("vpce-svc-"));
        }
    }

    #[test]
    fn arbitrary_text_is_never_an_event(s in ".{0,300}") {
        prop_assert!(parse_event(&s).is_err(), "{:?} was taken for a Connection Request", s);
        let h = parse_notice(&s);
        if let Some(e) = h.endpoint {
            prop_assert!(s.contains(e.as_str()));
        }
    }

    /// The sample event with a stretch of it replaced by arbitrary text: refused, or a request from the
    /// gatekeeper source whose IDs are well-formed and which reads back the same once written again.
    #[test]
    fn text_near_an_event_is_refused_or_a_well_formed_request(
        at in 0usize..SAMPLE.len(),
        len in 0usize..12,
        with in prop_oneof![".{0,12}", "[a-z0-9\\-\"]{0,12}"],
    ) {
        let mut body = SAMPLE.chars().collect::<Vec<_>>();
        let at = at.min(body.len());
        let end = (at + len).min(body.len());
        body.splice(at..end, with.chars());
        let body: String = body.into_iter().collect();
        if let Ok(r) = parse_event(&body) {
            let envelope: Value = serde_json::from_str(&body).unwrap();
            prop_assert_eq!(&envelope["source"], "gatekeeper");
            prop_assert_eq!(&envelope["detail-type"], "Connection Request");
            prop_assert_eq!(&ServiceId::parse(r.service_id.as_str()).unwrap(), &r.service_id);
            prop_assert_eq!(&EndpointId::parse(r.endpoint_id.as_str()).unwrap(), &r.endpoint_id);
            let again = json!({"source": "gatekeeper", "detail-type": "Connection Request", "detail": r});
            prop_assert_eq!(parse_event(&again.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn notifications_never_panic_and_name_only_ids_they_contain(v in arb_json()) {
        let text = v.to_string();
        let h = parse_notice(&text);
        if let Some(s) = h.service {
            prop_assert!(text.contains(s.as_str()));
        }
    }

    #[test]
    fn allowlist_items_never_panic_and_never_admit_a_wildcard(
        item in proptest::collection::btree_map(
            prop_oneof![
                Just("service_id".to_owned()), Just("principal".to_owned()), Just("effect".to_owned()),
                Just("expires_at".to_owned()), Just("regions".to_owned()), Just("max_endpoints".to_owned()),
                Just("note".to_owned()), "[a-z_]{1,8}",
            ],
            arb_attr(),
            0..9,
        )
    ) {
        let item: Item = item;
        if let Ok(e) = parse_item(&item) {
            prop_assert_eq!(e.account.as_str().len(), 12);
            prop_assert!(e.principal_key != "*");
            prop_assert!(e.max_endpoints.is_none_or(|n| n >= 1));
        }
    }
}
