//! Every row of the RPC protocol tables and every error code, over real sockets.

mod common;

use common::{RawRpc, error_code, start, start_with};
use serde_json::json;

#[test]
fn json_methods() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(
        rpc.json(r#"{"rpcId": 1, "method": "PING", "args": []}"#),
        json!({"rpcId": 1, "result": "PONG", "error": null})
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 2, "method": "ping", "args": []}"#)["result"],
        "PONG"
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 3, "method": "reserve", "args": ["A", "7abc123"]}"#),
        json!({"rpcId": 3, "result": true, "error": null})
    );
    // Plates compare case-insensitively: the same plate again is refused.
    assert_eq!(
        rpc.json(r#"{"rpcId": 4, "method": "reserve", "args": ["A", "7ABC123"]}"#),
        json!({"rpcId": 4, "result": false, "error": null, "reason": "EXISTS"})
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 5, "method": "getAvailability", "args": ["A"]}"#)["result"],
        99
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 6, "method": "getLots", "args": []}"#),
        json!({"rpcId": 6, "error": null, "result": [
            {"id": "A", "capacity": 100, "occupied": 0, "counted": 0, "reserved": 1, "booked": 0, "free": 99, "status": "open"},
            {"id": "B", "capacity": 50, "occupied": 0, "counted": 0, "reserved": 0, "booked": 0, "free": 50, "status": "open"},
            {"id": "C", "capacity": 200, "occupied": 0, "counted": 0, "reserved": 0, "booked": 0, "free": 200, "status": "open"},
        ]})
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 7, "method": "cancel", "args": ["A", "7ABC123"]}"#)["result"],
        true
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 8, "method": "cancel", "args": ["A", "7ABC123"]}"#),
        json!({"rpcId": 8, "result": false, "error": null, "reason": "NOT_FOUND"})
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 4294967295, "method": "getAvailability", "args": ["A"]}"#),
        json!({"rpcId": 4294967295u32, "result": 100, "error": null})
    );
    // Other keys are ignored, wherever they are and whatever they hold.
    assert_eq!(
        rpc.json(r#"{"note": {"x": [1]}, "rpcId": 9, "method": "PING", "args": [], "v": 2}"#),
        json!({"rpcId": 9, "result": "PONG", "error": null})
    );
}

#[test]
fn reserve_is_refused_when_full() {
    let server = start_with(|config| {
        config.lots = serde_json::from_value(json!([{"id": "S", "capacity": 1}])).unwrap();
    });
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(
        rpc.json(r#"{"rpcId": 1, "method": "reserve", "args": ["S", "P1"]}"#)["result"],
        true
    );
    assert_eq!(
        rpc.json(r#"{"rpcId": 2, "method": "reserve", "args": ["S", "P2"]}"#),
        json!({"rpcId": 2, "result": false, "error": null, "reason": "FULL"})
    );
    // A plate that already holds the last space is EXISTS, not FULL.
    assert_eq!(
        rpc.json(r#"{"rpcId": 3, "method": "reserve", "args": ["S", "P1"]}"#)["reason"],
        "EXISTS"
    );
    assert_eq!(rpc.text("RESERVE S P2"), "FULL");
    assert_eq!(rpc.text("RESERVE S P1"), "EXISTS");
}

#[test]
fn text_aliases() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    assert_eq!(rpc.text("PING"), "PONG");
    assert_eq!(rpc.text("ping"), "PONG");
    assert_eq!(rpc.text("RESERVE B   xy-1"), "OK");
    assert_eq!(rpc.text("reserve B XY-1"), "EXISTS");
    assert_eq!(rpc.text("AVAIL B"), "49");
    let lots: serde_json::Value = serde_json::from_str(&rpc.text("LOTS")).unwrap();
    assert_eq!(
        lots[1],
        json!({"id": "B", "capacity": 50, "occupied": 0, "counted": 0, "reserved": 1, "booked": 0, "free": 49, "status": "open"})
    );
    assert_eq!(rpc.text("Cancel B xy-1"), "OK");
    assert_eq!(rpc.text("CANCEL B xy-1"), "NOT_FOUND");
    assert_eq!(rpc.text("AVAIL B"), "50");
}

#[test]
fn text_errors() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let cases = [
        ("FLY A", "ERR UNKNOWN_METHOD"),
        ("AVAIL", "ERR BAD_ARGS"),
        ("RESERVE A", "ERR BAD_ARGS"),
        ("AVAIL Z", "ERR UNKNOWN_LOT"),
        ("RESERVE A bad_plate", "ERR BAD_PLATE"),
        ("RESERVE A 12345678901234567", "ERR BAD_PLATE"),
        ("   ", "ERR BAD_REQUEST"),
        // Extra arguments are refused, not ignored.
        ("PING now", "ERR BAD_ARGS"),
        ("LOTS A", "ERR BAD_ARGS"),
        ("AVAIL A B", "ERR BAD_ARGS"),
        ("RESERVE A P1 P2", "ERR BAD_ARGS"),
        ("CANCEL A P1 P2", "ERR BAD_ARGS"),
    ];
    for (request, expected) in cases {
        let reply = rpc.text(request);
        assert!(
            reply.starts_with(&format!("{expected} ")),
            "{request:?} -> {reply:?}"
        );
    }
    rpc.send(b"\xff\xfe");
    assert!(
        String::from_utf8(rpc.recv())
            .unwrap()
            .starts_with("ERR BAD_REQUEST ")
    );
    // A zero-length frame is a request like any other, not a disconnect.
    rpc.send(b"");
    assert!(
        String::from_utf8(rpc.recv())
            .unwrap()
            .starts_with("ERR BAD_REQUEST ")
    );
    assert_eq!(rpc.text("PING"), "PONG");
}

#[test]
fn json_error_codes() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    let cases = [
        (r#"{"rpcId": 1, "method": "PING""#, None, "BAD_REQUEST"),
        (r#"{not json"#, None, "BAD_REQUEST"),
        (r#"{"method": "PING", "args": []}"#, None, "BAD_REQUEST"),
        (
            r#"{"rpcId": -3, "method": "PING", "args": []}"#,
            None,
            "BAD_REQUEST",
        ),
        (
            r#"{"rpcId": "9", "method": "PING", "args": []}"#,
            None,
            "BAD_REQUEST",
        ),
        (r#"{"rpcId": 9, "args": []}"#, Some(9), "BAD_REQUEST"),
        (
            r#"{"rpcId": 9, "method": ["PING"], "args": []}"#,
            Some(9),
            "BAD_REQUEST",
        ),
        (r#"{"rpcId": 9, "method": "PING"}"#, Some(9), "BAD_REQUEST"),
        (
            r#"{"rpcId": 9, "method": "PING", "args": "A"}"#,
            Some(9),
            "BAD_REQUEST",
        ),
        (
            r#"{"rpcId": 9, "method": "launch", "args": []}"#,
            Some(9),
            "UNKNOWN_METHOD",
        ),
        (
            r#"{"rpcId": 9, "method": "GETLOTS", "args": []}"#,
            Some(9),
            "UNKNOWN_METHOD",
        ),
        (
            r#"{"rpcId": 9, "method": "getAvailability", "args": []}"#,
            Some(9),
            "BAD_ARGS",
        ),
        (
            r#"{"rpcId": 9, "method": "getAvailability", "args": [1]}"#,
            Some(9),
            "BAD_ARGS",
        ),
        (
            r#"{"rpcId": 9, "method": "reserve", "args": ["A", "P", "X"]}"#,
            Some(9),
            "BAD_ARGS",
        ),
        (
            r#"{"rpcId": 9, "method": "getAvailability", "args": ["Z"]}"#,
            Some(9),
            "UNKNOWN_LOT",
        ),
        (
            r#"{"rpcId": 9, "method": "reserve", "args": ["Z", "P1"]}"#,
            Some(9),
            "UNKNOWN_LOT",
        ),
        (
            r#"{"rpcId": 9, "method": "reserve", "args": ["A", "P 1"]}"#,
            Some(9),
            "BAD_PLATE",
        ),
        (
            r#"{"rpcId": 9, "method": "cancel", "args": ["A", ""]}"#,
            Some(9),
            "BAD_PLATE",
        ),
    ];
    for (request, rpc_id, code) in cases {
        let reply = rpc.json(request);
        assert_eq!(reply["rpcId"], json!(rpc_id), "{request}");
        assert_eq!(reply["result"], json!(null), "{request}");
        assert_eq!(error_code(&reply), code, "{request}");
    }
    rpc.send(b"{\"rpcId\": 1, \"method\": \"\xff\"}");
    let reply: serde_json::Value = serde_json::from_slice(&rpc.recv()).unwrap();
    assert_eq!(error_code(&reply), "BAD_REQUEST");
    // The connection survived all of it.
    assert_eq!(
        rpc.json(r#"{"rpcId": 10, "method": "PING", "args": []}"#)["result"],
        "PONG"
    );
}

#[test]
fn the_plate_is_checked_before_the_lot() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    for request in ["RESERVE Z bad_plate", "CANCEL Z bad_plate"] {
        let reply = rpc.text(request);
        assert!(
            reply.starts_with("ERR BAD_PLATE "),
            "{request:?} -> {reply:?}"
        );
    }
    for method in ["reserve", "cancel"] {
        let reply = rpc.json(&format!(
            r#"{{"rpcId": 1, "method": "{method}", "args": ["Z", "no spaces"]}}"#
        ));
        assert_eq!(error_code(&reply), "BAD_PLATE", "{method}");
    }
}

#[test]
fn lot_ids_are_case_sensitive() {
    let server = start();
    let mut rpc = RawRpc::connect(server.rpc_addr());
    for request in ["AVAIL a", "RESERVE a P1", "CANCEL a P1"] {
        let reply = rpc.text(request);
        assert!(
            reply.starts_with("ERR UNKNOWN_LOT "),
            "{request:?} -> {reply:?}"
        );
    }
    let reply = rpc.json(r#"{"rpcId": 1, "method": "getAvailability", "args": ["a"]}"#);
    assert_eq!(error_code(&reply), "UNKNOWN_LOT");
    assert_eq!(rpc.text("AVAIL A"), "100");
}
