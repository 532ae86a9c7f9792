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
