//! Settings that used to crash the server or run it badly are refused up front, exit 2.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_parking-server");

fn refused_with(args: &[&str], config: Option<&str>, says: &str) {
    let dir = std::env::temp_dir().join(format!("parking-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(BINARY);
    command.args(args);
    if let Some(text) = config {
        let path = dir.join("config.json");
        std::fs::write(&path, text).unwrap();
        command.arg("--config").arg(&path);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn thread_counts_lots_and_non_objects_are_refused_with_exit_2() {
    // A 20,000-thread pool panicked inside threadpool (exit 134).
    refused_with(&["--thread-pool-size", "20000"], None, "thread_pool_size");
    refused_with(
        &[],
        Some(r#"{"notifier_threads": 100000}"#),
        "notifier_threads",
    );
    refused_with(&[], Some("[]"), "must be a JSON object");
    refused_with(
        &[],
        Some(r#"["127.0.0.1", 19100]"#),
        "must be a JSON object",
    );
    refused_with(&[], Some(r#"{"idle_timeout": 1e30}"#), "too large");
    let many: Vec<String> = (0..10_001)
        .map(|i| format!(r#"{{"id": "L{i}", "capacity": 1}}"#))
        .collect();
    refused_with(
        &[],
        Some(&format!(r#"{{"lots": [{}]}}"#, many.join(","))),
        "at most 10000 lots",
    );
}
