use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{TestApp, alert, cap_alert, without_declaration};

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

/// One generated hostile body: content type, bytes, and the field the 400 must name
/// (`None`: the whole body).
type Hostile = (&'static str, Vec<u8>, Option<String>);

const CAP: &str = "application/cap+xml";

/// The classes issue 19 found: DTD entities (in text or in the root's attributes),
/// concatenated documents, trailing content, and control characters in locations.
fn hostile() -> impl Strategy<Value = Hostile> {
    let doctype = (0..3000usize, 0..300usize, any::<bool>()).prop_map(|(len, refs, attribute)| {
        let references = "&a;".repeat(refs);
        let cap = if attribute {
            cap_alert("DTD", "Sderot").replacen(
                "<alert ",
                &format!("<alert a=\"{references}\" "),
                1,
            )
        } else {
            cap_alert("DTD", &format!("Sderot{references}"))
        };
        let dtd = format!("<!DOCTYPE alert [<!ENTITY a \"{}\">]>", "x".repeat(len));
        let body = format!("{dtd}{}", without_declaration(&cap));
        (CAP, body.into_bytes(), Some("DOCTYPE".to_owned()))
    });
    let concatenated = (1..4usize).prop_map(|copies| {
        let first = cap_alert("FIRST", "Sderot");
        let rest = without_declaration(&first).repeat(copies);
        (CAP, format!("{first}{rest}").into_bytes(), None)
    });
    // No `!` or `?`: nothing here can open a comment or processing instruction.
    let trailing = "[ \n]*[a-z0-9<>/&;=\"]{1,20}".prop_map(|tail| {
        let body = format!("{}{tail}", cap_alert("TAIL", "Sderot"));
        (CAP, body.into_bytes(), None)
    });
    let control = prop::char::ranges(vec!['\0'..='\u{1f}', '\u{7f}'..='\u{9f}'].into());
    let json_control = ("[a-z]{0,10}", control.clone(), "[a-z]{0,10}").prop_map(|(a, c, b)| {
        let body = alert(&format!("X{a}{c}{b}X"));
        (
            "application/json",
            body.to_string().into_bytes(),
            Some("location".to_owned()),
        )
    });
    // In XML only these controls can be written (as references); others are not XML.
    let cap_control = ("[a-z]{0,10}", prop::char::range('\u{7f}', '\u{9f}')).prop_map(|(a, c)| {
        let body = cap_alert("CTL", &format!("X{a}&#x{:x};X", c as u32));
        (CAP, body.into_bytes(), Some("info[0].area".to_owned()))
    });
    prop_oneof![doctype, concatenated, trailing, json_control, cap_control]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Each class stays refused with a 400 that names the problem, and nothing
    /// of it is queued (the shared listener's queue stays as good input left it).
    #[test]
    fn hostile_cap_and_locations_are_refused((content_type, bytes, field) in hostile()) {
        let shared = shared();
        let (status, error) = shared.runtime.block_on(async {
            let response = shared.app.post(content_type, bytes).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
        prop_assert_eq!(status, 400, "{}", error);
        prop_assert_eq!(error["field"].as_str().map(str::to_owned), field, "{}", error);
    }

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
