//! The dashboard in a real headless Chromium: it opens `/`, availability changes over the RPC
//! port and over the sensor port, and the page shows the new counts within 2 s. A screenshot
//! is saved as `target/dashboard.png` for people to look at. Access control is on: the page
//! is opened with a viewer's `access_token`, as a wall screen would be.
//!
//! The browser is driven as `tests/browser` says. Without Chromium the test says so and
//! passes, unless `CI=true`, where a missing tool is a failure (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::time::Duration;

use browser::{shows, text};
use client::ParkingClient;
use state::CountChange;

/// How soon the page must show a change.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn the_dashboard_shows_changes_from_the_rpc_and_sensor_ports_live() {
    let Some(chromium) = browser::chromium("the dashboard browser test") else {
        return;
    };
    // With access control on, as a wall screen would run: the page gets a viewer's token.
    let server = testkit::start_server(|config| {
        config.auth = auth::AuthConfig {
            jwt_secret_file: None,
            keys: [("wall", auth::Role::Viewer), ("ops", auth::Role::Operator)]
                .into_iter()
                .map(|(id, role)| auth::KeyConfig {
                    id: auth::KeyId::new(id).unwrap(),
                    role,
                    lots: None,
                    sha256: auth::token_hash(&format!("token-{id}")),
                })
                .collect(),
        };
    });
    let url = format!(
        "http://{}/?access_token=token-wall",
        server.http_addr().unwrap()
    );
    let browser = browser::launch(chromium, (1600, 900));
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(testkit::DEADLINE);
    tab.navigate_to(&url).unwrap();
    tab.wait_for_element(r#"[data-lot="C"] .free"#).unwrap();
    shows(&tab, r#"[data-lot="A"] .free"#, "100", testkit::DEADLINE);
    shows(&tab, "#connection", "live", testkit::DEADLINE);
    assert_eq!(text(&tab, r#"[data-lot="B"] .capacity"#), " / 50");

    let mut rpc = ParkingClient::connect(server.rpc_addr()).unwrap();
    rpc.auth("token-ops").unwrap();
    assert!(rpc.reserve("A", "DASH1").unwrap());
    shows(&tab, r#"[data-lot="A"] .free"#, "99", SHOWN_WITHIN);

    let mut sensor =
        client::SensorClient::connect(server.sensor_addr(), Duration::from_secs(5)).unwrap();
    sensor.auth("token-ops").unwrap();
    sensor.update("B", CountChange::Set(46)).unwrap();
    shows(&tab, r#"[data-lot="B"] .free"#, "4", SHOWN_WITHIN);
    shows(
        &tab,
        r#"[data-lot="B"] .status"#,
        "almost full",
        SHOWN_WITHIN,
    );
    sensor.update("C", CountChange::Set(200)).unwrap();
    shows(&tab, r#"[data-lot="C"] .status"#, "full", SHOWN_WITHIN);

    browser::screenshot(&tab, "dashboard");

    // The server going away shows as reconnecting.
    drop(server);
    shows(&tab, "#connection", "reconnecting", testkit::DEADLINE);
}
