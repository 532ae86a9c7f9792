//! Several `parking-server` processes over one throwaway PostgreSQL: writes decided by the
//! database whatever node takes them, events reaching every node's subscribers in order, a
//! node killed with SIGKILL and a database restarted mid-load losing no acknowledged write,
//! and expiry run by every node at once removing each reservation once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use client::{ClientError, Endpoints, ParkingClient, Subscription, Update};
use framing::pubsub::Topic;
use parking_lot::Mutex;
use testkit::eventually;
use testkit::pg::TempPostgres;

const BINARY: &str = env!("CARGO_BIN_EXE_parking-server");
const TIMEOUT: Duration = Duration::from_secs(10);

/// One `parking-server` process over the cluster; killed on drop.
struct Node {
    child: Child,
    rpc: SocketAddr,
    pubsub: SocketAddr,
    config: PathBuf,
}

impl Node {
    /// Starts a node with lot A of `capacity` and reservations living `ttl_secs`.
    fn start(pg: &TempPostgres, name: &str, capacity: u32, ttl_secs: f64) -> Node {
        let config = std::env::temp_dir().join(format!(
            "parking-node-{}-{name}-{}.json",
            std::process::id(),
            pg.port()
        ));
        let json = format!(
            r#"{{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, "http_port": 0, "thread_pool_size": 8,
                "sensor_pool_size": 1, "notifier_threads": 1, "reservation_ttl": {ttl_secs},
                "shutdown_grace": 0.2, "lots": [{{"id": "A", "capacity": {capacity}}}],
                "store": {{"kind": "postgres", "url": "{}", "pool_size": 8, "timeout": 1}}}}"#,
            pg.url()
        );
        std::fs::write(&config, json).unwrap();
        let mut child = Command::new(BINARY)
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let (rpc, pubsub) = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "node {name} exited early:\n{log}"
            );
            log.push_str(&line);
            if line.contains("listening: rpc ") {
                let after = |key: &str| -> SocketAddr {
                    let rest = line.split(key).nth(1).unwrap();
                    rest.split_whitespace().next().unwrap().parse().unwrap()
                };
                break (after("rpc "), after("pubsub "));
            }
        };
        // Keep draining the log so the node never blocks on a full pipe.
        thread::spawn(move || for _ in stderr.lines() {});
        Node {
            child,
            rpc,
            pubsub,
            config,
        }
    }

    fn client(&self) -> ParkingClient {
        ParkingClient::connect_with_timeout(self.rpc, TIMEOUT).unwrap()
    }

    fn free(&self) -> u32 {
        self.client().get_availability("A").unwrap()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn nodes(pg: &TempPostgres, count: usize, capacity: u32, ttl_secs: f64) -> Vec<Node> {
    (0..count)
        .map(|n| Node::start(pg, &format!("n{n}"), capacity, ttl_secs))
        .collect()
}

/// The plates the database holds reservations for in lot A.
fn stored_plates(pg: &TempPostgres) -> HashSet<String> {
    pg.client()
        .query(
            "SELECT plate FROM parking_reservations WHERE lot = 'A'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The free counts a subscription hears for lot A, as they come.
fn listen(addr: SocketAddr) -> (Arc<Mutex<Vec<u32>>>, Arc<AtomicBool>) {
    let mut subscription = Subscription::connect(addr, &[Topic::Lot("A")], TIMEOUT).unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (sink, stopping) = (Arc::clone(&heard), Arc::clone(&stop));
    thread::spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            match subscription.next_update_timeout(Duration::from_millis(50)) {
                Ok(Some(Update::Event(event) | Update::Snapshot(event))) => {
                    sink.lock().push(event.free)
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    });
    (heard, stop)
}

#[test]
fn clients_racing_over_three_nodes_get_exactly_the_capacity() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = nodes(&pg, 3, 50, 300.0);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.rpc).collect();
    let racers: Vec<_> = (0..32)
        .map(|n| {
            let addr = addrs[n % addrs.len()];
            thread::spawn(move || {
                let mut client = ParkingClient::connect_with_timeout(addr, TIMEOUT).unwrap();
                // Every client tries every plate, each from its own starting point.
                (0..200)
                    .map(|k| format!("R{}", (k + n * 7) % 200))
                    .filter(|plate| client.reserve("A", plate).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let granted: Vec<String> = racers
        .into_iter()
        .flat_map(|racer| racer.join().unwrap())
        .collect();
    assert_eq!(granted.len(), 50);
    let unique: HashSet<String> = granted.into_iter().collect();
    assert_eq!(unique.len(), 50);
    assert_eq!(stored_plates(&pg), unique);
    eventually("every node's copy shows the lot full", || {
        nodes.iter().all(|node| node.free() == 0)
    });
}

#[test]
fn a_reserve_on_one_node_reaches_subscribers_on_the_others_in_order() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let nodes = nodes(&pg, 3, 50, 300.0);
    let (on_b, stop_b) = listen(nodes[1].pubsub);
    let (on_c, stop_c) = listen(nodes[2].pubsub);
    let (mut a, mut b) = (nodes[0].client(), nodes[1].client());
    for n in 0..20 {
        assert!(a.reserve("A", &format!("P{n}")).unwrap());
        if n % 5 == 4 {
            // A cancel through another node, interleaved.
            assert!(b.cancel("A", &format!("P{n}")).unwrap());
        }
    }
    // The snapshot (50), then one event per change in commit order.
    let mut expected = vec![50];
    let mut free = 50;
    for n in 0..20 {
        free -= 1;
        expected.push(free);
        if n % 5 == 4 {
            free += 1;
            expected.push(free);
        }
    }
    eventually("both subscribers hear every change in order", || {
        *on_b.lock() == expected && *on_c.lock() == expected
    });
    stop_b.store(true, Ordering::SeqCst);
    stop_c.store(true, Ordering::SeqCst);
}

/// Reserves fresh plates through `endpoints` (failing over as a client of several nodes
/// does) until `stop`; returns the plates acknowledged `true`.
fn reserve_until(endpoints: Endpoints, prefix: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut client: Option<ParkingClient> = None;
    let mut first = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(connected) = client.as_mut() else {
            match ParkingClient::connect_with_timeout(endpoints.rotated(first), TIMEOUT) {
                Ok(fresh) => client = Some(fresh),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        let plate = format!("{prefix}N{n}");
        n += 1;
        match connected.reserve("A", &plate) {
            Ok(true) => acked.push(plate),
            Ok(false) => {}
            // UNAVAILABLE while the database is away: try again later.
            Err(ClientError::Server(_)) => thread::sleep(Duration::from_millis(20)),
            // The node went away: its outcome is unknown; go on with the next node.
            Err(_) => {
                client = None;
                first += 1;
            }
        }
    }
    acked
}

fn load(
    endpoints: &Endpoints,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|n| {
            let (endpoints, stop) = (endpoints.rotated(n), Arc::clone(stop));
            thread::spawn(move || reserve_until(endpoints, format!("C{n}"), stop))
        })
        .collect()
}

#[test]
fn a_node_killed_mid_load_loses_no_acknowledged_write_and_its_subscribers_move_on() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let mut nodes = nodes(&pg, 3, 100_000, 300.0);
    let list: Vec<String> = nodes.iter().map(|node| node.rpc.to_string()).collect();
    let endpoints = Endpoints::parse(&list.join(","), 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&endpoints, 6, &stop);
    let mut subscription =
        Subscription::connect(nodes[0].pubsub, &[Topic::Lot("A")], TIMEOUT).unwrap();
    eventually("load is under way", || stored_plates(&pg).len() >= 100);
    nodes[0].kill();
    let after_kill = stored_plates(&pg).len();
    eventually("load goes on through the other nodes", || {
        stored_plates(&pg).len() >= after_kill + 100
    });
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let stored = stored_plates(&pg);
    let lost: Vec<&String> = acked
        .iter()
        .filter(|plate| !stored.contains(*plate))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // Every node left follows the database exactly.
    let expected = 100_000 - u32::try_from(stored.len()).unwrap();
    eventually("the other nodes' copies agree with the database", || {
        nodes[1..].iter().all(|node| node.free() == expected)
    });
    // The killed node's subscriber learns it is gone and resumes on another node, where
    // it is given the current value first.
    let ended = loop {
        match subscription.next_update_timeout(TIMEOUT) {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(ended.is_err(), "{ended:?}");
    let pubsubs: Vec<String> = nodes.iter().map(|node| node.pubsub.to_string()).collect();
    let pubsubs = Endpoints::parse(&pubsubs.join(","), 0).unwrap();
    let mut resumed = Subscription::connect(&pubsubs, &[Topic::Lot("A")], TIMEOUT).unwrap();
    assert_ne!(resumed.peer_addr(), nodes[0].pubsub);
    match resumed.next_update_timeout(TIMEOUT).unwrap() {
        Some(Update::Snapshot(snapshot)) => assert_eq!(snapshot.free, expected),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_database_restart_mid_load_heals_without_a_manual_step() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let nodes = nodes(&pg, 2, 100_000, 300.0);
    let list: Vec<String> = nodes.iter().map(|node| node.rpc.to_string()).collect();
    let endpoints = Endpoints::parse(&list.join(","), 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&endpoints, 4, &stop);
    eventually("load is under way", || stored_plates(&pg).len() >= 100);
    pg.stop();
    // Writes are refused, reads still answered from each node's copy.
    let mut client = nodes[0].client();
    eventually("writes are refused", || {
        matches!(client.reserve("A", "DOWN"), Err(ClientError::Server(_)))
    });
    assert!(client.get_availability("A").is_ok());
    pg.start_again();
    let before = stored_plates(&pg).len();
    eventually("both nodes take writes again", || {
        nodes.iter().enumerate().all(|(n, node)| {
            node.client()
                .reserve("A", &format!("BACK{n}"))
                .is_ok_and(|reserved| reserved)
                || stored_plates(&pg).contains(&format!("BACK{n}"))
        })
    });
    eventually("load goes on", || stored_plates(&pg).len() >= before + 100);
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let stored = stored_plates(&pg);
    let lost: Vec<&String> = acked
        .iter()
        .filter(|plate| !stored.contains(*plate))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let expected = 100_000 - u32::try_from(stored.len()).unwrap();
    eventually("both copies agree with the database", || {
        nodes.iter().all(|node| node.free() == expected)
    });
}

#[test]
fn every_node_running_expiry_at_once_expires_each_reservation_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    // Reservations live one second; every node's expiry thread wakes for them.
    let nodes = nodes(&pg, 3, 100, 1.0);
    let (heard, stop) = listen(nodes[2].pubsub);
    for n in 0..30 {
        let mut client = nodes[n % 2].client();
        assert!(client.reserve("A", &format!("E{n}")).unwrap());
    }
    eventually("every reservation expires on every node", || {
        nodes.iter().all(|node| node.free() == 100)
    });
    let row = pg
        .client()
        .query_one(
            "SELECT reserved, (SELECT count(*) FROM parking_reservations) FROM parking_lots \
             WHERE id = 'A'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (0, 0));
    eventually("the subscriber hears the last expiry", || {
        heard.lock().last() == Some(&100)
    });
    stop.store(true, Ordering::SeqCst);
    // Down by one per reserve, up by the expiries: 30 up in all, never past capacity.
    let heard = heard.lock().clone();
    let ups: u32 = heard.windows(2).map(|w| w[1].saturating_sub(w[0])).sum();
    let downs: u32 = heard.windows(2).map(|w| w[0].saturating_sub(w[1])).sum();
    assert_eq!((ups, downs), (30, 30), "{heard:?}");
    assert!(heard.iter().all(|&free| free <= 100), "{heard:?}");
}
