use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::TestApp;

struct Shared {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
}

/// One listener for all cases (proptest calls the body synchronously).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = runtime.block_on(TestApp::ready("fuzz"));
        Shared { runtime, app }
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(json!("2026-11-22T10:00:00Z")),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("location".to_owned()),
                    Just("locations".to_owned()),
                    Just("type".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("duration".to_owned()),
                    Just("durationSeconds".to_owned()),
                    Just("id".to_owned()),
                    Just("source".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = (String, Vec<u8>)> {
    let content_type = prop_oneof![
        Just("application/json".to_owned()),
        Just("application/cap+xml".to_owned()),
        Just("text/xml; charset=utf-8".to_owned()),
        "[a-z/+;= -]{0,30}",
    ];
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        ".{0,200}".prop_map(|s| format!(
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{s}</alert>"
        )
        .into_bytes()),
    ];
    (content_type, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever arrives, the listener answers, and never with a 5xx other than 503.
    #[test]
    fn arbitrary_bodies_never_crash_or_5xx((content_type, bytes) in body()) {
        let shared = shared();
        let status = shared.runtime.block_on(async {
            shared.app.post(&content_type, bytes).await.status().as_u16()
        });
        prop_assert!(status < 500 || status == 503, "status {}", status);
        let alive = shared.runtime.block_on(shared.app.readyz());
        prop_assert_eq!(alive, 200);
    }
}
