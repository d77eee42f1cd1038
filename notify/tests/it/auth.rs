//! Client authentication (`CLIENT_AUTH=jwt`) with real clients over real sockets: a
//! local OIDC issuer (discovery + JWKS, keys generated here), the testkit's Socket.IO
//! client, the stock socket.io-client and python-socketio, and reqwest for SSE/REST.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use alert_notify::{ClientAuth, Config};
use axum::{Json, Router, extract::State, routing::get};
use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp, jwk::Jwk};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::helpers::{REDIS_URL, TestApp, WAIT, alert, clients_dir, have, python, unique};

const AUDIENCE: &str = "alerts";
const SECRET: &str = "the shared secret of the auth tests, 32+ bytes";

/// A key the test signs with, and its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// RSA only: the public key as PEM, what an algorithm-confusion attacker signs with.
    public_pem: Option<String>,
}

fn with_kid(encoding: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn rsa_key(kid: &str) -> SigningKey {
    use rsa::{
        pkcs1::EncodeRsaPrivateKey,
        pkcs8::{EncodePublicKey, LineEnding},
    };
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let encoding = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    SigningKey {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        jwk: with_kid(&encoding, Algorithm::RS256, kid),
        encoding,
        public_pem: Some(public_pem),
    }
}

fn ec_key(kid: &str) -> SigningKey {
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let encoding = EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes());
    SigningKey {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        jwk: with_kid(&encoding, Algorithm::ES256, kid),
        encoding,
        public_pem: None,
    }
}

/// A local OIDC issuer: discovery and JWKS on 127.0.0.1, keys replaceable (rotation),
/// JWKS requests counted.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    jwks_hits: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct IssuerState {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    jwks_hits: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&SigningKey]) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = IssuerState {
            url: format!("http://{addr}/realms/test"),
            keys: Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect())),
            jwks_hits: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/realms/test/.well-known/openid-configuration",
                get(|State(s): State<IssuerState>| async move {
                    let jwks_uri = format!("{}/keys", s.url);
                    Json(json!({ "issuer": s.url, "jwks_uri": jwks_uri }))
                }),
            )
            .route(
                "/realms/test/keys",
                get(|State(s): State<IssuerState>| async move {
                    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    // An HMAC key too: a JWKS key never checks HS256 tokens.
                    let mut keys = s.keys.lock().unwrap().clone();
                    keys.push(json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }));
                    Json(json!({ "keys": keys }))
                }),
            )
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Issuer {
            url: state.url,
            keys: state.keys,
            jwks_hits: state.jwks_hits,
            _server: server,
        }
    }

    fn serve_keys(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    fn claims(&self, extra: Value) -> Value {
        claims(&self.url, extra)
    }
}

fn claims(issuer: &str, extra: Value) -> Value {
    let mut claims = json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "exp": get_current_timestamp() + 600,
    });
    let extra = extra.as_object().unwrap().clone();
    claims.as_object_mut().unwrap().extend(extra);
    claims
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.encoding).unwrap()
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Notify with `CLIENT_AUTH=jwt` against `issuer` and/or the shared secret.
fn jwt_config(name: &str, issuer: Option<&Issuer>, secret: Option<&str>) -> Config {
    let mut config = crate::helpers::config(&format!("{}:", unique(name)), REDIS_URL);
    let auth = &mut config.clients.auth;
    auth.client_auth = ClientAuth::Jwt;
    auth.oidc_issuer = issuer.map(|issuer| issuer.url.clone());
    auth.jwt_issuer = secret.map(|_| "https://login.example".to_owned());
    auth.jwt_secret = secret.map(alert_core::Secret::new);
    auth.jwt_audience = Some(AUDIENCE.to_owned());
    config
}

/// The `connect_error` message of a handshake that must be refused.
async fn refused(app: &TestApp, auth: Value) -> String {
    match alert_testkit::SioClient::connect(app.addr, auth).await {
        Ok(_) => panic!("connected, but should have been refused"),
        Err(error) => error["message"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn oidc_tokens_are_checked_against_the_issuers_rotating_keys() {
    let (rsa, ec, rotated, stranger) = (
        rsa_key("rsa-1"),
        ec_key("ec-1"),
        ec_key("ec-2"),
        ec_key("not-served"),
    );
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let app = TestApp::spawn(jwt_config("auth-oidc", Some(&issuer), None)).await;

    for key in [&rsa, &ec] {
        let token = sign(key, &issuer.claims(json!({})));
        let mut client = app.client(json!({ "token": token })).await;
        client.expect("snapshot").await;
    }

    // Rotation: the issuer now serves only a new key; no restart.
    issuer.serve_keys(&[&rotated]);
    let token = sign(&rotated, &issuer.claims(json!({})));
    app.client(json!({ "token": token }))
        .await
        .expect("snapshot")
        .await;
    let withdrawn = sign(&ec, &issuer.claims(json!({})));
    assert_eq!(
        refused(&app, json!({ "token": withdrawn })).await,
        "invalid token: unknown signing key"
    );

    let now = get_current_timestamp();
    let public_pem = rsa.public_pem.as_ref().unwrap();
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some(rsa.kid.clone());
    let confused = encode(
        &confused,
        &issuer.claims(json!({})),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": rotated.kid })),
        b64(&issuer.claims(json!({})))
    );
    let cases = [
        (json!({}), "authentication required: no token"),
        (
            json!({ "token": sign(&stranger, &issuer.claims(json!({}))) }),
            "invalid token: unknown signing key",
        ),
        (
            json!({ "token": sign(&rotated, &issuer.claims(json!({ "aud": "another-app" }))) }),
            "invalid token: wrong audience",
        ),
        (
            json!({ "token": sign(&rotated, &claims("https://evil.example", json!({}))) }),
            "invalid token: wrong issuer",
        ),
        (
            json!({ "token": sign(&rotated, &issuer.claims(json!({ "exp": now - 120 }))) }),
            "token expired",
        ),
        (json!({ "token": unsigned }), "invalid token"),
        (
            json!({ "token": confused }),
            "invalid token: algorithm HS256 not accepted",
        ),
        (json!({ "token": "not.a.jwt" }), "invalid token"),
    ];
    for (auth, expected) in cases {
        let message = refused(&app, auth.clone()).await;
        assert!(message.starts_with(expected), "{auth}: {message}");
    }

    // A flood of made-up kids does not reach the issuer: after the first fetch and the
    // rotation's refetch, at most one refetch per 10 s.
    for i in 0..20 {
        let key = ec_key(&format!("bogus-{i}"));
        refused(
            &app,
            json!({ "token": sign(&key, &issuer.claims(json!({}))) }),
        )
        .await;
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
    let unknown = app
        .metric("alerts_notify_auth_refused_total{reason=\"unknown_key\"}")
        .await;
    assert_eq!(unknown, 22.0);
    assert_eq!(
        app.metric("alerts_notify_auth_refused_total{reason=\"missing\"}")
            .await,
        1.0
    );
    app.stop().await;
}

/// A running client script: its JSON lines as they come, commands on stdin.
struct Script {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<Value>,
}

impl Script {
    fn start(program: &str, args: &[String]) -> Script {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(clients_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Script {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn node(app: &TestApp, options: Value) -> Script {
        let script = clients_dir().join("auth-client.js");
        let args = [
            script.display().to_string(),
            format!("http://{}", app.addr),
            options.to_string(),
        ];
        Script::start("node", &args)
    }

    /// The next line whose step is `step`; the lines before it are kept in `seen`.
    async fn until(&mut self, step: &str) -> Value {
        loop {
            let line = tokio::time::timeout(WAIT * 2, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {step} in time; saw {:?}", self.seen))
                .unwrap()
                .unwrap_or_else(|| panic!("the client exited before {step}; saw {:?}", self.seen));
            let line: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
            if line["step"] == step {
                return line;
            }
            self.seen.push(line);
        }
    }

    async fn send(&mut self, command: Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn stock_clients_connect_with_a_token_and_are_told_why_without() {
    if !have("node") {
        eprintln!("SKIPPED: node is not installed (apt-get install nodejs npm)");
        return;
    }
    let app = TestApp::spawn(jwt_config("auth-stock", None, Some(SECRET))).await;
    app.apply(&alert("Nahariya", "Rocket Alert", 10)).await;
    let token = hs256(
        SECRET.as_bytes(),
        &claims("https://login.example", json!({})),
    );

    let mut with_token = Script::node(&app, json!({ "token": token }));
    assert_eq!(
        with_token.until("snapshot").await["locations"],
        json!(["Nahariya"])
    );
    // A browser's token comes in its http-only cookie.
    let mut with_cookie = Script::node(&app, json!({ "cookie": token }));
    assert_eq!(
        with_cookie.until("snapshot").await["locations"],
        json!(["Nahariya"])
    );
    let mut without = Script::node(&app, json!({}));
    let error = without.until("connect_error").await;
    assert_eq!(error["message"], "authentication required: no token");
    let mut bad_cookie = Script::node(&app, json!({ "cookie": "forged" }));
    let error = bad_cookie.until("connect_error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid token"),
        "{error}"
    );

    let python = python();
    if have(&python) {
        let script = clients_dir().join("auth-client.py").display().to_string();
        let url = format!("http://{}", app.addr);
        let mut with_token = Script::start(&python, &[script.clone(), url.clone(), token]);
        assert_eq!(
            with_token.until("snapshot").await["locations"],
            json!(["Nahariya"])
        );
        let mut without = Script::start(&python, &[script, url, String::new()]);
        let error = without.until("connect_error").await;
        assert_eq!(error["message"], "authentication required: no token");
    } else {
        eprintln!("SKIPPED python-socketio: {python} is not installed");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_client_limited_to_haifa_cannot_read_eilat_and_admin_reads_all() {
    let issuer = "https://login.example";
    let app = TestApp::spawn(jwt_config("auth-limits", None, Some(SECRET))).await;
    app.apply(&alert("Haifa", "Rocket Alert", 10)).await;
    app.apply(&alert("Eilat", "Rocket Alert", 10)).await;
    let haifa_only = hs256(
        SECRET.as_bytes(),
        &claims(issuer, json!({ "locations": ["Haifa"] })),
    );
    let admin = hs256(
        SECRET.as_bytes(),
        &claims(
            issuer,
            json!({ "locations": ["Haifa"], "roles": ["admin"] }),
        ),
    );

    // Subscribed to nothing, a limited client gets its locations, not everything.
    let mut limited = app.client(json!({ "token": haifa_only })).await;
    let snapshot = limited.expect("snapshot").await;
    let active: Vec<_> = snapshot["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["location"].clone())
        .collect();
    assert_eq!(active, [json!("Haifa")], "{snapshot}");
    let ack = limited
        .emit_with_ack("subscribe", json!({ "locations": ["Eilat"] }))
        .await;
    assert_eq!(ack["error"], "not allowed: Eilat", "{ack}");
    let message = refused(&app, json!({ "token": haifa_only, "locations": ["Eilat"] })).await;
    assert_eq!(message, "not allowed: Eilat");

    let mut all = app.client(json!({ "token": admin })).await;
    all.expect("snapshot").await;
    let ack = all
        .emit_with_ack("subscribe", json!({ "locations": ["Eilat"] }))
        .await;
    assert_eq!(ack["recovered"], false, "{ack}");
    let mut everything = app.client(json!({ "token": admin })).await;
    assert_eq!(
        everything.expect("snapshot").await["active"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Unsubscribing from its one location leaves it on what it may read.
    let mut explicit = app
        .client(json!({ "token": haifa_only, "locations": ["Haifa"] }))
        .await;
    explicit.expect("snapshot").await;
    let ack = explicit
        .emit_with_ack("unsubscribe", json!({ "locations": ["Haifa"] }))
        .await;
    assert_eq!(ack["locations"], json!(["Haifa"]), "{ack}");

    // Eilat first, then Haifa: in order, so a delivered Eilat would come first.
    app.apply(&alert("Eilat", "Earthquake", 10)).await;
    app.apply(&alert("Haifa", "Earthquake", 10)).await;
    app.apply(&alert("Tel Aviv", "Rocket Alert", 10)).await;
    for client in [&mut limited, &mut explicit] {
        let got = client.alerts(1).await;
        assert_eq!(got[0].location, "Haifa");
        assert!(client.drain_alerts().await.is_empty());
    }
    assert_eq!(all.alerts(1).await[0].location, "Eilat");
    let locations: Vec<_> = everything
        .alerts(3)
        .await
        .into_iter()
        .map(|e| e.location)
        .collect();
    assert_eq!(locations, ["Eilat", "Haifa", "Tel Aviv"]);
    assert!(
        app.metric("alerts_notify_auth_refused_total{reason=\"forbidden\"}")
            .await
            >= 2.0
    );
    app.stop().await;
}

#[tokio::test]
async fn sse_and_rest_want_a_bearer_token_or_the_cookie_and_keep_to_its_locations() {
    let app = TestApp::spawn(jwt_config("auth-http", None, Some(SECRET))).await;
    app.apply(&alert("Haifa", "Rocket Alert", 10)).await;
    app.apply(&alert("Eilat", "Rocket Alert", 10)).await;
    let claims = |extra| claims("https://login.example", extra);
    let haifa_only = hs256(
        SECRET.as_bytes(),
        &claims(json!({ "locations": ["Haifa"] })),
    );
    let expired = hs256(
        SECRET.as_bytes(),
        &claims(json!({ "exp": get_current_timestamp() - 120 })),
    );
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.http.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    for path in [
        "/api/active",
        "/api/events",
        "/api/history?location=Haifa",
        "/api/stream",
    ] {
        for token in [None, Some(expired.as_str()), Some("garbage")] {
            let response = get(path, token).await.unwrap();
            assert_eq!(response.status(), 401, "{path} {token:?}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].is_string(), "{body}");
        }
    }
    for path in ["/livez", "/readyz", "/metrics", "/"] {
        assert_eq!(get(path, None).await.unwrap().status(), 200, "{path}");
    }

    let (status, body) =
        json_of(get("/api/active", Some(haifa_only.as_str())).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["active"][0]["location"], "Haifa");
    let (status, body) =
        json_of(get("/api/events", Some(haifa_only.as_str())).await.unwrap()).await;
    assert_eq!(status, 200);
    let events = body["events"].as_array().unwrap();
    assert!(
        !events.is_empty() && events.iter().all(|e| e["location"] == "Haifa"),
        "{body}"
    );
    // Paging: after the first Haifa event comes Eilat's, then Haifa's update; a page of
    // one reads past Eilat's rather than answering nothing.
    app.apply(&alert("Haifa", "Earthquake", 10)).await;
    let first = events[0]["offset"].as_str().unwrap();
    let page = format!("/api/events?since={first}&limit=1");
    let (status, body) = json_of(get(&page, Some(haifa_only.as_str())).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["events"][0]["location"], "Haifa", "{body}");
    assert_eq!(body["events"][0]["eventType"], "update", "{body}");
    let (status, _) = json_of(
        get("/api/history?location=Haifa", Some(haifa_only.as_str()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    for path in [
        "/api/active?locations=Eilat",
        "/api/active?locations=Haifa,Eilat",
        "/api/history?location=Eilat",
        "/api/stream?locations=Eilat",
    ] {
        let (status, body) = json_of(get(path, Some(haifa_only.as_str())).await.unwrap()).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body["error"], "not allowed: Eilat", "{path}");
    }

    // The stream, with the token in the cookie, starts with a snapshot of Haifa only.
    let response = app
        .http
        .get(app.url("/api/stream"))
        .header("cookie", format!("alert_token={haifa_only}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: snapshot"), "{text}");
    assert!(text.contains("Haifa") && !text.contains("Eilat"), "{text}");
    app.stop().await;
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn an_expiring_token_closes_the_transport_unless_a_fresh_one_comes_first() {
    if !have("node") {
        eprintln!("SKIPPED: node is not installed (apt-get install nodejs npm)");
        return;
    }
    let mut config = jwt_config("auth-expiry", None, Some(SECRET));
    config.clients.auth.jwt_leeway_seconds = 0;
    let app = TestApp::spawn(config).await;
    let issuer = "https://login.example";
    let now = get_current_timestamp();
    let token = |exp: u64| hs256(SECRET.as_bytes(), &claims(issuer, json!({ "exp": exp })));

    // The refreshing client's first token expires a second before the other's.
    let mut refreshing = Script::node(
        &app,
        json!({ "token": token(now + 4), "transports": ["websocket"] }),
    );
    let mut expiring = Script::node(
        &app,
        json!({ "token": token(now + 5), "transports": ["websocket"] }),
    );
    refreshing.until("snapshot").await;
    expiring.until("snapshot").await;
    // An SSE stream with the same token.
    let stream = app
        .http
        .get(app.url("/api/stream"))
        .bearer_auth(token(now + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let fresh = token(now + 600);
    refreshing
        .send(json!({ "emit": "auth", "data": { "token": fresh } }))
        .await;
    let ack = refreshing.until("ack").await;
    assert_eq!(ack["ack"], json!({ "ok": true, "exp": now + 600 }), "{ack}");
    refreshing
        .send(json!({ "emit": "auth", "data": { "token": "garbage" } }))
        .await;
    let ack = refreshing.until("ack").await;
    assert!(
        ack["ack"]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid token"),
        "{ack}"
    );

    // At its exp the transport closes: a transport close, never a DISCONNECT (after
    // which stock clients would stay away); its reconnect with the same token is refused.
    let gone = expiring.until("disconnect").await;
    assert_eq!(gone["reason"], "transport close", "{gone}");
    let again = expiring.until("connect_error").await;
    assert_eq!(again["message"], "token expired");
    // The stream ends too (reading it to its end returns).
    let ended = tokio::time::timeout(WAIT, stream.bytes()).await;
    assert!(ended.is_ok(), "the SSE stream outlived its token");

    // The refreshing client is still on its first connection, past its first exp.
    app.apply(&alert("Dimona", "Rocket Alert", 10)).await;
    assert_eq!(refreshing.until("alert").await["location"], "Dimona");
    assert!(
        refreshing
            .seen
            .iter()
            .all(|line| line["step"] != "disconnect"),
        "{:?}",
        refreshing.seen
    );
    app.stop().await;
}

#[tokio::test]
async fn jwt_without_a_secret_or_an_issuer_is_one_line_and_exit_2() {
    const BIN: &str = env!("CARGO_BIN_EXE_alert-notify");
    alert_testkit::exits_on_bad_setting(
        BIN,
        &[("CLIENT_AUTH", "jwt")],
        2,
        "JWT_SECRET or OIDC_ISSUER",
    )
    .await;
    let short = [("CLIENT_AUTH", "jwt"), ("JWT_SECRET", "short")];
    alert_testkit::exits_on_bad_setting(BIN, &short, 2, "JWT_SECRET").await;
}

/// The live page in chromium: without a token cookie it says that sign-in is needed
/// (instead of "reconnecting" for ever); with the cookie, as a sign-in sets it, it is live.
#[tokio::test]
async fn the_live_page_says_sign_in_is_needed_and_goes_live_with_the_cookie() {
    let app = TestApp::spawn(jwt_config("auth-page", None, Some(SECRET))).await;
    let token = hs256(
        SECRET.as_bytes(),
        &claims("https://login.example", json!({})),
    );
    let output = alert_testkit::pages::node("auth-page.mjs")
        .args(["--page", &app.url("/")])
        .args(["--token", &token])
        .arg("--chromium")
        .arg(alert_testkit::pages::chromium())
        .output()
        .await
        .expect("node (install it with scripts/clients)");
    let line = String::from_utf8_lossy(&output.stdout);
    let summary: Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("auth-page.mjs: {line}"));
    assert_eq!(summary["ok"], true, "{summary}");
    let without = summary["steps"][0]["text"].as_str().unwrap();
    assert!(without.starts_with("sign-in needed"), "{summary}");
    assert_eq!(summary["steps"][1]["state"], "live", "{summary}");
    app.stop().await;
}

/// `POST /api/session` turns a checked Bearer token into the http-only cookie notify
/// reads (SameSite=Strict, Secure, until `exp`); a bad token sets nothing; `DELETE`
/// clears it; without authentication there is no session.
#[tokio::test]
async fn a_session_puts_a_checked_token_into_an_http_only_cookie() {
    let app = TestApp::spawn(jwt_config("session", None, Some(SECRET))).await;
    let exp = get_current_timestamp() + 600;
    let token = hs256(
        SECRET.as_bytes(),
        &claims("https://login.example", json!({ "exp": exp })),
    );
    let session = |bearer: Option<&str>| {
        let mut request = app.http.post(app.url("/api/session"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    let started = session(Some(&token)).await.unwrap();
    assert_eq!(started.status(), 204);
    let cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert_eq!(attributes[0], format!("alert_token={token}"));
    for wanted in ["Path=/", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted} in {cookie}");
    }
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&max_age), "until exp: {cookie}");
    // The browser sends it back by itself: the cookie alone opens the stream.
    let stream = app
        .http
        .get(app.url("/api/stream"))
        .header("cookie", attributes[0])
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    for bad in [None, Some("not-a-token")] {
        let refused = session(bad).await.unwrap();
        assert_eq!(refused.status(), 401, "{bad:?}");
        assert!(!refused.headers().contains_key("set-cookie"), "{bad:?}");
    }
    let ended = app
        .http
        .delete(app.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let cleared = ended.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("alert_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    app.stop().await;

    let open = TestApp::ready("no-session").await;
    let none = open
        .http
        .post(open.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    open.stop().await;
}
