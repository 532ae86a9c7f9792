//! Where connections wait: thousands of idle connections cost no worker, parked connections
//! are served when they speak, and the poller's deadlines close the ones that overstay.
//!
//! Each test uses more connections than the workers can keep hot (64 per worker), so that
//! the poller, not only the workers' own polls, is exercised.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{DEADLINE, RawRpc, connect_small_buffer, eventually, start_with};
use framing::frame;

/// More connections than two workers keep hot.
const BEYOND_HOT: usize = 200;

/// Waits for the server to close `stream`: EOF or a reset within `bound`. A read timeout
/// is a failure, never taken for a close.
fn expect_closed_within(stream: &mut TcpStream, bound: Duration) {
    stream.set_read_timeout(Some(bound)).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return,
            Err(err) => panic!(
                "not closed after {:?} (bound {bound:?}): {err}",
                started.elapsed()
            ),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

#[test]
fn two_thousand_idle_connections_on_two_workers_do_not_hold_up_a_ping() {
    let server = start_with(|config| {
        config.thread_pool_size = 2;
        // All of them come from one address.
        config.max_connections_per_address = 0;
    });
    let idle: Vec<TcpStream> = (0..2000).map(|_| connect(server.rpc_addr())).collect();
    // Some of them have spoken once, so they sit in the workers' hot sets and the poller.
    let mut spoken: Vec<RawRpc> = (0..BEYOND_HOT)
        .map(|_| RawRpc::connect(server.rpc_addr()))
        .collect();
    for rpc in &mut spoken {
        assert_eq!(rpc.text("PING"), "PONG");
    }
    let mut fresh = RawRpc::connect(server.rpc_addr());
    assert_eq!(fresh.text("PING"), "PONG");
    // A parked connection that speaks again is served: the oldest ones fell out of the hot
    // sets, so they were waiting in the poller.
    for rpc in spoken.iter_mut().rev() {
        assert_eq!(rpc.text("AVAIL A"), "100");
    }
    assert_eq!(
        server.summary().rpc_connections,
        (2000 + BEYOND_HOT + 1) as u64
    );
    drop(idle);
}

#[test]
fn the_poller_closes_idle_connections_at_their_deadline() {
    let server = start_with(|config| {
        config.thread_pool_size = 2;
        config.idle_timeout = Duration::from_millis(300);
    });
    // Half have spoken (hot or parked after a request), half never did (parked at accept).
    // Each speaks as soon as it is connected, well inside its idle timeout.
    let mut streams: Vec<TcpStream> = (0..BEYOND_HOT)
        .map(|n| {
            let stream = connect(server.rpc_addr());
            if n % 2 == 0 {
                let mut rpc = RawRpc {
                    stream: stream.try_clone().unwrap(),
                };
                assert_eq!(rpc.text("PING"), "PONG");
            }
            stream
        })
        .collect();
    for stream in &mut streams {
        expect_closed_within(stream, DEADLINE);
    }
}

#[test]
fn the_poller_closes_requests_left_unfinished_at_the_frame_timeout() {
    let server = start_with(|config| {
        config.thread_pool_size = 2;
        config.idle_timeout = Duration::from_secs(30);
        config.frame_timeout = Duration::from_millis(300);
    });
    let mut streams: Vec<TcpStream> = (0..BEYOND_HOT)
        .map(|_| connect(server.rpc_addr()))
        .collect();
    for stream in &mut streams {
        // A header announcing 100 bytes, and only 10 of them.
        let mut half = Vec::new();
        frame::encode(&mut half, &[b'x'; 100]).unwrap();
        stream.write_all(&half[..14]).unwrap();
    }
    let started = Instant::now();
    for stream in &mut streams {
        expect_closed_within(stream, DEADLINE);
    }
    // The idle timeout (30 s) did not do it.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn peers_that_stop_reading_are_parked_and_closed_at_the_frame_timeout() {
    let server = start_with(|config| {
        config.thread_pool_size = 2;
        config.frame_timeout = Duration::from_millis(500);
    });
    // Each stuck peer pipelines getLots requests and never reads: its replies (about 20
    // times the size of the requests) overflow the kernel buffers, and its connection must
    // wait in the poller, not on a worker.
    let mut batch = Vec::new();
    for _ in 0..10_000 {
        frame::encode(&mut batch, b"LOTS").unwrap();
    }
    // More stuck peers than workers. Each one connects with a small receive buffer and small
    // segments, so that the server's send buffer stays small too and a few hundred replies
    // back up into the server: with full-size loopback segments it grew to megabytes, which
    // a debug build on a loaded 2-core machine did not fill within the deadline.
    let mut stuck: Vec<TcpStream> = (0..4)
        .map(|_| connect_small_buffer(server.rpc_addr()))
        .collect();
    for stream in &mut stuck {
        stream
            .set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        // The server stops reading once its replies back up, so this write may block and
        // time out; what it sent is plenty.
        let _ = stream.write_all(&batch);
    }
    // Meanwhile another client is served by the two workers.
    let mut other = RawRpc::connect(server.rpc_addr());
    assert_eq!(other.text("PING"), "PONG");
    // Reading would let the stuck peers' replies flow again, so watch the server instead.
    eventually("the stuck peers to be closed", || {
        server.open_connections().rpc == 1
    });
    for stream in &mut stuck {
        expect_closed_within(stream, DEADLINE);
    }
    assert_eq!(other.text("AVAIL A"), "100");
}
