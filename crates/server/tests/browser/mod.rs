//! What the browser tests share: finding Chromium (a loud skip without it, a failure under
//! `CI=true`), launching it headless, reading and clicking elements by selector, awaiting a
//! condition on the page with a deadline, and saving screenshots under `target/`.
//!
//! The driver is `headless_chrome` (CDP from Rust): the tests stay `cargo test`s like every
//! other, with no Node or Python runtime to install, and they drive the system's Chromium
//! (Debian's `chromium`, which works offline).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// Bound for anything a browser test awaits (a page load, an element, what the page shows):
/// longer than `testkit::DEADLINE`, as Chromium loading a page on two loaded cores took
/// more than its 10 s (headless_chrome's "The event waited for never came"). Only a failing
/// test waits this long.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The Chromium binary on `PATH`; `None` (after one loud line) when there is none, which
/// fails the test under `CI=true` (`.ci/run` installs it).
pub fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                .map(move |dir| dir.join(name))
        })
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed, and under CI=true {test} must run"
        );
        eprintln!("SKIPPED: {test} needs chromium (apt-get install chromium)");
    }
    found
}

/// Chromium, headless, with a window of `size`.
pub fn launch(chromium: PathBuf, size: (u32, u32)) -> Browser {
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium))
            .headless(true)
            // CI runs as root, where Chromium's sandbox cannot start.
            .sandbox(false)
            .window_size(Some(size))
            .idle_browser_timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .expect("chromium starts")
}

/// Runs `script` (an expression) in the page and returns its value as text ("" for none).
pub fn eval(tab: &Tab, script: &str) -> String {
    let value = tab.evaluate(script, false).unwrap().value;
    match value {
        Some(serde_json::Value::String(text)) => text,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The text of the first element matching `selector` ("" when there is none).
pub fn text(tab: &Tab, selector: &str) -> String {
    eval(
        tab,
        &format!(
            "(() => {{ const e = document.querySelector({selector:?}); return e ? e.textContent : ''; }})()"
        ),
    )
}

/// Whether an element matches `selector`.
pub fn exists(tab: &Tab, selector: &str) -> bool {
    eval(
        tab,
        &format!("document.querySelector({selector:?}) !== null"),
    ) == "true"
}

/// Waits up to `within` for `condition` to hold; on failure, says what was awaited and what
/// the page shows in `context` (a selector, such as its status line).
pub fn await_page(
    tab: &Tab,
    what: &str,
    context: &str,
    within: Duration,
    condition: impl Fn(&Tab) -> bool,
) {
    let deadline = Instant::now() + within;
    while !condition(tab) {
        assert!(
            Instant::now() < deadline,
            "{what}: not after {within:?}; {context} shows {:?}",
            text(tab, context)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `within` for `selector`'s text to be `expected`.
pub fn shows(tab: &Tab, selector: &str, expected: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let shown = text(tab, selector);
        if shown == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{selector} shows {shown:?}, not {expected:?}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `within` for `selector` to match an element, then clicks it (the DOM's
/// `click()`, so that no scrolling or layout stands between the test and the handler).
pub fn click(tab: &Tab, selector: &str, within: Duration, context: &str) {
    await_page(
        tab,
        &format!("{selector} to appear"),
        context,
        within,
        |tab| exists(tab, selector),
    );
    eval(
        tab,
        &format!("document.querySelector({selector:?}).click()"),
    );
}

/// Sets the value of the input matching `selector` to the JavaScript expression `value`.
pub fn fill(tab: &Tab, selector: &str, value: &str) {
    eval(
        tab,
        &format!("document.querySelector({selector:?}).value = {value}"),
    );
}

/// Saves a PNG of the tab as `target/<name>.png` and says where.
pub fn screenshot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/{name}.png"));
    std::fs::write(&target, png).unwrap();
    eprintln!("screenshot: {}", target.display());
}
