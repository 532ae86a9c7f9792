//! The drivers' booking page (`/book`, issue 19) in a real headless Chromium, with two
//! drivers in two browser contexts (separate storage and cookies: two people's browsers):
//!
//! 1. bob registers, logs in, and books the only space of lot `ONE` for a window;
//! 2. alice registers, logs in, finds `ONE` full over the same window, and joins its waitlist;
//! 3. bob cancels his booking on his page;
//! 4. alice's page, untouched, shows the offer arriving on her event stream
//!    (`/v1/me/events`), and she accepts it: her booking is confirmed.
//!
//! Screenshots of both pages are saved as `target/book-page-alice.png` and
//! `target/book-page-bob.png`. Access control is on (an operator key exists), as in
//! production: the drivers' login tokens are what the page's requests carry.
//!
//! Every step awaits what the page shows, with a deadline; nothing sleeps for a while and
//! hopes. The browser is driven as `tests/browser` says; without Chromium the test says so
//! and passes, unless `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::time::{SystemTime, UNIX_EPOCH};

use browser::{DEADLINE, await_page, click, exists, fill, screenshot, shows, text};
use headless_chrome::Tab;
use server::LotConfig;
use state::LotId;

/// The page's status line, shown when an awaited condition does not come.
const MESSAGE: &str = "#message";

/// Registers `username` on the page and waits until it is signed in.
fn sign_up(tab: &Tab, username: &str) {
    fill(tab, "#username", &format!("{username:?}"));
    fill(tab, "#password", "\"a long enough password\"");
    click(tab, "#register", DEADLINE, MESSAGE);
    let signed_in = format!("signed in as {username}");
    await_page(tab, &signed_in, MESSAGE, DEADLINE, |tab| {
        text(tab, "#me") == signed_in
    });
    await_page(tab, "its event stream to open", MESSAGE, DEADLINE, |tab| {
        text(tab, "#live") == "live"
    });
}

/// Fills in the search form for `plate` over the window starting at `start` (Unix seconds)
/// for two hours, and searches.
fn search(tab: &Tab, plate: &str, start: u64) {
    fill(tab, "#plate", &format!("{plate:?}"));
    fill(tab, "#start", &format!("localInput({})", start * 1000));
    fill(
        tab,
        "#end",
        &format!("localInput({})", (start + 7200) * 1000),
    );
    click(tab, "#search", DEADLINE, MESSAGE);
}

#[test]
fn two_drivers_book_cancel_and_a_waitlist_offer_arrives_live() {
    let Some(chromium) = browser::chromium("the booking page browser test") else {
        return;
    };
    let server = testkit::start_server(|config| {
        config.lots = vec![
            LotConfig::new(LotId::new("ONE").unwrap(), 1),
            LotConfig::new(LotId::new("BIG").unwrap(), 20),
        ];
        config.auth = auth::AuthConfig {
            jwt_secret_file: None,
            keys: vec![auth::KeyConfig {
                id: auth::KeyId::new("ops").unwrap(),
                role: auth::Role::Operator,
                lots: None,
                sha256: auth::token_hash("token-ops"),
            }],
        };
    });
    let url = format!("http://{}/book", server.http_addr().unwrap());
    // Two hours from now, on a whole minute (the page's inputs have minutes).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now / 60 + 120) * 60;

    let browser = browser::launch(chromium, (1400, 1000));
    let (bob_context, alice_context) = (
        browser.new_context().unwrap(),
        browser.new_context().unwrap(),
    );
    let bob = bob_context.new_tab().unwrap();
    let alice = alice_context.new_tab().unwrap();
    for tab in [&bob, &alice] {
        tab.set_default_timeout(DEADLINE);
        tab.navigate_to(&url).unwrap();
        tab.wait_for_element("#username").unwrap();
    }

    // 1. bob books the only space of ONE.
    sign_up(&bob, "bob");
    search(&bob, "BOB-1", start);
    click(
        &bob,
        r#"#results [data-lot="ONE"] .book"#,
        DEADLINE,
        MESSAGE,
    );
    shows(
        &bob,
        r#"#bookings [data-booking="ONE.1"] .status"#,
        "CONFIRMED",
        DEADLINE,
    );

    // 2. alice finds it full over that window (BIG still has room) and waits for it.
    sign_up(&alice, "alice");
    search(&alice, "ALICE-1", start);
    await_page(&alice, "ONE listed as full", MESSAGE, DEADLINE, |tab| {
        text(tab, r#"#results [data-lot="ONE"] .remaining"#) == "full"
            && exists(tab, r#"#results [data-lot="BIG"] .book"#)
    });
    click(
        &alice,
        r#"#results [data-lot="ONE"] .wait"#,
        DEADLINE,
        MESSAGE,
    );
    shows(
        &alice,
        r#"#waitlist [data-entry="ONE.w1"] .status"#,
        "WAITING",
        DEADLINE,
    );
    assert!(
        !exists(&alice, "#notices li"),
        "no notice before anything happened"
    );

    // 3. bob cancels on his page.
    click(
        &bob,
        r#"#bookings [data-booking="ONE.1"] .cancel"#,
        DEADLINE,
        MESSAGE,
    );
    shows(&bob, MESSAGE, "Cancelled ONE.1.", DEADLINE);

    // 4. alice's page hears of the offer on its own, and she accepts it.
    await_page(
        &alice,
        "the waitlist offer to appear live",
        "#notices",
        DEADLINE,
        |tab| exists(tab, r#"#notices li[data-event="waitlist_offer"]"#),
    );
    click(
        &alice,
        r#"#waitlist [data-entry="ONE.w1"] .accept"#,
        DEADLINE,
        MESSAGE,
    );
    await_page(
        &alice,
        "the accepted offer as a confirmed booking",
        MESSAGE,
        DEADLINE,
        |tab| {
            text(tab, MESSAGE).starts_with("Offer accepted: booking ")
                && exists(tab, r#"#bookings tr[data-status="CONFIRMED"]"#)
        },
    );
    let accepted = text(&alice, r#"#bookings tr[data-status="CONFIRMED"] .id"#);
    assert!(accepted.starts_with("ONE."), "{accepted}");

    screenshot(&alice, "book-page-alice");
    screenshot(&bob, "book-page-bob");
    server.shutdown();
}
