//! The dashboard in a real headless Chromium: it opens `/`, availability changes over the RPC
//! port and over the sensor port, and the page shows the new counts within 2 s. A screenshot
//! is saved as `target/dashboard.png` for people to look at. Access control is on: the page
//! asks for a token, signs in with a viewer's (its session cookie then carries the key), and
//! signs out and in again.
//!
//! The browser is driven as `tests/browser` says. Without Chromium the test says so and
//! passes, unless `CI=true`, where a missing tool is a failure (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::time::Duration;

use browser::{shows, text};
use client::ParkingClient;
use headless_chrome::Tab;
use state::CountChange;

/// How soon the page must show a change.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

/// Types `token` into the page's sign-in form and sends it.
fn sign_in(tab: &Tab, token: &str) {
    let input = tab.wait_for_element("#token").unwrap();
    // Clears what an earlier attempt left.
    tab.evaluate("document.getElementById('token').value = ''", false)
        .unwrap();
    input.type_into(token).unwrap();
    tab.find_element("#signin button").unwrap().click().unwrap();
}

#[test]
fn the_dashboard_shows_changes_from_the_rpc_and_sensor_ports_live() {
    let Some(chromium) = browser::chromium("the dashboard browser test") else {
        return;
    };
    // With access control on: the page signs in with a viewer's token.
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
    let url = format!("http://{}/", server.http_addr().unwrap());
    let browser = browser::launch(chromium, (1600, 900));
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(browser::DEADLINE);
    tab.navigate_to(&url).unwrap();
    sign_in(&tab, "token-nobody");
    shows(
        &tab,
        "#signin .error",
        "wrong token; 4 attempt(s) left on this connection",
        browser::DEADLINE,
    );
    sign_in(&tab, "token-wall");
    tab.wait_for_element(r#"[data-lot="C"] .free"#).unwrap();
    shows(&tab, r#"[data-lot="A"] .free"#, "100", browser::DEADLINE);
    shows(&tab, "#connection", "live", browser::DEADLINE);
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

    // Signing out ends the session: the page asks for a token again.
    shows(&tab, "#signout", "sign out wall", browser::DEADLINE);
    tab.find_element("#signout").unwrap().click().unwrap();
    shows(&tab, "#connection", "signed out", browser::DEADLINE);
    sign_in(&tab, "token-wall");
    shows(&tab, r#"[data-lot="A"] .free"#, "99", browser::DEADLINE);
    shows(&tab, "#connection", "live", browser::DEADLINE);

    // The server going away shows as reconnecting.
    drop(server);
    shows(&tab, "#connection", "reconnecting", browser::DEADLINE);
}
