//! Access control on the HTTP port (docs/http.md, "Access control"), over real sockets:
//! bearer tokens per request, 401 and 403, the routes anyone may use, reservation ownership,
//! and the event stream's `access_token`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use auth::{AuthConfig, KeyConfig, KeyId, Role, token_hash};
use server::RunningServer;
use state::LotId;
use testkit::http::{Http, Response, request};

const KEYS: [(&str, Role, Option<&str>); 5] = [
    ("gate-A", Role::Sensor, Some("A")),
    ("kiosk-1", Role::Client, None),
    ("kiosk-2", Role::Client, None),
    ("signs", Role::Viewer, None),
    ("ops", Role::Operator, None),
];

fn token(id: &str) -> String {
    format!("token-{id}")
}

fn start_keyed() -> RunningServer {
    testkit::start_server(|config| {
        config.auth = AuthConfig {
            jwt_secret_file: None,
            keys: KEYS
                .iter()
                .map(|&(id, role, lot)| KeyConfig {
                    id: KeyId::new(id).unwrap(),
                    role,
                    lots: lot.map(|lot| vec![LotId::new(lot).unwrap()]),
                    sha256: token_hash(&token(id)),
                })
                .collect(),
        };
    })
}

fn call(http: &mut Http, method: &str, path: &str, body: Option<&str>, key: &str) -> Response {
    let header = format!("Authorization: Bearer {}", token(key));
    http.send(request(method, path, body, &[&header]).as_bytes());
    http.response()
}

#[test]
fn requests_need_a_key_allowed_to_do_what_they_ask() {
    let server = start_keyed();
    let mut http = Http::connect(server.http_addr().unwrap());
    for path in [
        "/v1/lots",
        "/v1/lots/A",
        "/v1/lots/A/history",
        "/metrics",
        "/v1/events",
    ] {
        let refused = http.get(path);
        assert_eq!(
            (refused.status, refused.error()),
            (401, "UNAUTHORIZED".into()),
            "{path}"
        );
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    }
    http.send(request("GET", "/v1/lots", None, &["Authorization: Bearer nope"]).as_bytes());
    let wrong = http.response();
    assert_eq!((wrong.status, wrong.error()), (401, "UNAUTHORIZED".into()));
    assert!(!wrong.text().contains("nope"), "the token is echoed");
    // The probes, the page and the document need none.
    for path in ["/healthz", "/readyz", "/", "/openapi.yaml"] {
        assert_eq!(http.get(path).status, 200, "{path}");
    }

    assert_eq!(
        call(&mut http, "GET", "/v1/lots", None, "signs").status,
        200
    );
    // Each request on its own: a key sent before does not carry over.
    assert_eq!(http.get("/v1/lots").status, 401);
    let viewer = call(
        &mut http,
        "POST",
        "/v1/lots/A/reservations",
        Some(r#"{"plate":"V1"}"#),
        "signs",
    );
    assert_eq!((viewer.status, viewer.error()), (403, "FORBIDDEN".into()));
    let sensor = call(&mut http, "GET", "/v1/lots", None, "gate-A");
    assert_eq!((sensor.status, sensor.error()), (403, "FORBIDDEN".into()));
    let query = http.get(&format!("/v1/lots/A?access_token={}", token("signs")));
    assert_eq!(query.status, 200);
}

#[test]
fn a_reservation_belongs_to_the_key_that_made_it() {
    let server = start_keyed();
    let mut http = Http::connect(server.http_addr().unwrap());
    let body = Some(r#"{"plate":"OWN1"}"#);
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/lots/A/reservations",
            body,
            "kiosk-1"
        )
        .status,
        201
    );
    let other = call(
        &mut http,
        "DELETE",
        "/v1/lots/A/reservations/OWN1",
        None,
        "kiosk-2",
    );
    assert_eq!((other.status, other.error()), (404, "NOT_FOUND".into()));
    assert_eq!(
        call(
            &mut http,
            "DELETE",
            "/v1/lots/A/reservations/OWN1",
            None,
            "kiosk-1"
        )
        .status,
        204
    );
    assert_eq!(
        call(
            &mut http,
            "POST",
            "/v1/lots/A/reservations",
            body,
            "kiosk-2"
        )
        .status,
        201
    );
    assert_eq!(
        call(
            &mut http,
            "DELETE",
            "/v1/lots/A/reservations/OWN1",
            None,
            "ops"
        )
        .status,
        204
    );
}

#[test]
fn the_event_stream_takes_its_token_as_a_query_parameter() {
    let server = start_keyed();
    let mut events = Http::connect(server.http_addr().unwrap());
    events.send(
        request(
            "GET",
            &format!("/v1/events?lot=A&access_token={}", token("signs")),
            None,
            &[],
        )
        .as_bytes(),
    );
    assert_eq!(events.stream_head().status, 200);
    let first = events.event();
    assert_eq!(first.json()["lotId"], "A");
}

/// Signs in with `key`'s token; the session cookie's `name=value`.
fn sign_in(http: &mut Http, key: &str) -> String {
    let body = format!(r#"{{"token": "{}"}}"#, token(key));
    let signed_in = http.request("POST", "/v1/session", Some(&body));
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let set_cookie = signed_in.header("set-cookie").unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

fn with_cookie(http: &mut Http, method: &str, path: &str, cookie: &str) -> Response {
    http.send(
        request(
            method,
            path,
            None,
            &[&format!("Cookie: theme=dark; {cookie}")],
        )
        .as_bytes(),
    );
    http.response()
}

#[test]
fn a_signed_in_browser_is_its_key_until_it_signs_out() {
    let server = start_keyed();
    let mut http = Http::connect(server.http_addr().unwrap());
    let body = format!(r#"{{"token": "{}"}}"#, token("signs"));
    let signed_in = http.request("POST", "/v1/session", Some(&body));
    assert_eq!(signed_in.status, 200);
    assert_eq!(
        signed_in.json(),
        serde_json::json!({"id": "signs", "role": "viewer"})
    );
    let set_cookie = signed_in.header("set-cookie").unwrap();
    assert!(
        !set_cookie.contains(&token("signs")),
        "the token is the cookie"
    );
    let mut attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["HttpOnly", "Path=/", "SameSite=Strict"]);
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("parking_session=") && cookie.len() > 40);

    // The cookie carries the key, with the key's role, on another connection too.
    let mut other = Http::connect(server.http_addr().unwrap());
    assert_eq!(
        with_cookie(&mut other, "GET", "/v1/lots/A", &cookie).status,
        200
    );
    assert_eq!(
        with_cookie(&mut other, "GET", "/v1/session", &cookie).json(),
        serde_json::json!({"id": "signs", "role": "viewer"})
    );
    let forbidden = with_cookie(&mut other, "DELETE", "/v1/lots/A/reservations/P1", &cookie);
    assert_eq!(
        (forbidden.status, forbidden.error()),
        (403, "FORBIDDEN".into())
    );
    // The event stream too: what EventSource needs.
    let mut events = Http::connect(server.http_addr().unwrap());
    events.send(
        request(
            "GET",
            "/v1/events?lot=A",
            None,
            &[&format!("Cookie: {cookie}")],
        )
        .as_bytes(),
    );
    assert_eq!(events.stream_head().status, 200);
    assert_eq!(events.event().json()["lotId"], "A");

    // A bearer header wins over the cookie.
    other.send(
        request(
            "GET",
            "/v1/session",
            None,
            &[
                &format!("Cookie: {cookie}"),
                &format!("Authorization: Bearer {}", token("ops")),
            ],
        )
        .as_bytes(),
    );
    assert_eq!(other.response().json()["id"], "ops");

    // Signing out ends the session everywhere and clears the cookie.
    let signed_out = with_cookie(&mut http, "DELETE", "/v1/session", &cookie);
    assert_eq!(signed_out.status, 204);
    let cleared = signed_out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("parking_session=;") && cleared.contains("Max-Age=0"));
    let ended = with_cookie(&mut other, "GET", "/v1/lots/A", &cookie);
    assert_eq!((ended.status, ended.error()), (401, "UNAUTHORIZED".into()));
    assert!(
        ended.json()["detail"]
            .as_str()
            .unwrap()
            .contains("sign in again")
    );
    // Signing out again, or without a session, is harmless.
    assert_eq!(
        with_cookie(&mut http, "DELETE", "/v1/session", &cookie).status,
        204
    );
}

#[test]
fn signing_in_takes_a_right_token_as_json_only() {
    let server = start_keyed();
    let mut http = Http::connect(server.http_addr().unwrap());
    let wrong = http.request("POST", "/v1/session", Some(r#"{"token": "nope"}"#));
    assert_eq!((wrong.status, wrong.error()), (401, "UNAUTHORIZED".into()));
    assert!(wrong.header("set-cookie").is_none());
    assert!(!wrong.text().contains("nope"));
    for body in [r#"{"tok": "x"}"#, r#"{"token": 5}"#, "[]", "token=x"] {
        let bad = http.request("POST", "/v1/session", Some(body));
        assert_eq!(
            (bad.status, bad.error()),
            (400, "BAD_ARGS".into()),
            "{body}"
        );
    }
    // What an HTML form on another site could post: not JSON, refused before the token is
    // looked at.
    let form = format!("token={}", token("signs"));
    http.send(
        format!(
            "POST /v1/session HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    let forged = http.response();
    assert_eq!((forged.status, forged.error()), (400, "BAD_REQUEST".into()));
    assert!(forged.header("set-cookie").is_none());
    // A cookie nobody issued is no session.
    let made_up = with_cookie(&mut http, "GET", "/v1/lots", "parking_session=made-up");
    assert_eq!(
        (made_up.status, made_up.error()),
        (401, "UNAUTHORIZED".into())
    );
    // A sensor key may sign in, and may read nothing with it.
    let cookie = sign_in(&mut http, "gate-A");
    assert_eq!(
        with_cookie(&mut http, "GET", "/v1/lots", &cookie).status,
        403
    );
}

#[test]
fn without_keys_there_is_nothing_to_sign_in_to() {
    let server = testkit::start_server(|_| {});
    let mut http = Http::connect(server.http_addr().unwrap());
    assert_eq!(
        http.get("/v1/session").json(),
        serde_json::json!({"id": null, "role": null})
    );
    let refused = http.request("POST", "/v1/session", Some(r#"{"token": "x"}"#));
    assert_eq!(
        (refused.status, refused.error()),
        (400, "BAD_REQUEST".into())
    );
}

#[test]
fn five_wrong_tokens_on_one_connection_close_it_as_on_the_other_ports() {
    let server = start_keyed();
    let addr = server.http_addr().unwrap();
    let mut http = Http::connect(addr);
    let wrong = |http: &mut Http| {
        http.send(request("GET", "/v1/lots", None, &["Authorization: Bearer nope"]).as_bytes());
        http.response()
    };
    for left in (1..=4).rev() {
        let refused = wrong(&mut http);
        assert_eq!(
            (refused.status, refused.error()),
            (401, "UNAUTHORIZED".into())
        );
        assert!(
            refused.text().contains(&format!("{left} attempt(s) left")),
            "{}",
            refused.text()
        );
        assert_ne!(refused.header("connection"), Some("close"));
    }
    let last = wrong(&mut http);
    assert_eq!((last.status, last.error()), (401, "UNAUTHORIZED".into()));
    assert!(
        last.text().contains("5 failed attempts, closing"),
        "{}",
        last.text()
    );
    assert!(http.is_closed(), "open after five wrong tokens");
    // One connection's five do not lock the address out: another connection is served.
    let mut other = Http::connect(addr);
    assert_eq!(
        call(&mut other, "GET", "/v1/lots", None, "signs").status,
        200
    );
}
