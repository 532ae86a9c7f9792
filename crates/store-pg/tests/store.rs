//! The PostgreSQL store against a throwaway cluster: writes decided by the database, every
//! node's copy following it in order, expiry run by several nodes at once, migrations on
//! nodes starting together, and an outage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use state::{
    BookingError, BookingId, BookingRequest, CancelOutcome, CountChange, LotChange, LotId, LotSpec,
    Passage, Plate, ReserveOutcome, StateError, SystemClock, Window,
};
use store::{Feature, Health, Store, Unsupported};
use store_pg::{PgOptions, PgStore};
use testkit::eventually;
use testkit::pg::TempPostgres;

const TTL: Duration = Duration::from_secs(300);

fn lots(capacity: u32) -> Vec<LotSpec> {
    vec![
        LotSpec::new(LotId::new("A").unwrap(), capacity),
        LotSpec::new(LotId::new("B").unwrap(), 5),
    ]
}

fn options(pg: &TempPostgres) -> PgOptions {
    PgOptions {
        url: pg.url(),
        pool_size: 4,
        timeout: Duration::from_secs(1),
    }
}

fn node(pg: &TempPostgres, capacity: u32) -> PgStore {
    let _ = env_logger::builder().is_test(true).try_init();
    PgStore::open(&options(pg), lots(capacity), TTL, Arc::new(SystemClock)).expect("opens")
}

fn plate(text: &str) -> Plate {
    Plate::parse(text).unwrap()
}

/// Every free count `store`'s subscribers would hear for lot A.
fn heard(store: &PgStore) -> Arc<Mutex<Vec<u32>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    store
        .state()
        .add_listener(Arc::new(move |change: &LotChange| {
            if change.lot.as_str() == "A" {
                sink.lock().push(change.free);
            }
        }));
    seen
}

fn free(store: &PgStore) -> u32 {
    store.state().free("A").unwrap()
}

#[test]
fn the_database_decides_and_every_node_hears_each_change_once_in_order() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 3), node(&pg, 3));
    let (heard_one, heard_two) = (heard(&one), heard(&two));
    let anyone = |_: Option<&str>| true;

    assert_eq!(
        one.reserve("A", plate("P1"), None),
        Ok(ReserveOutcome::Reserved)
    );
    // The other node's lock is not what refuses it: the database is.
    assert_eq!(
        two.reserve("A", plate("p1"), None),
        Ok(ReserveOutcome::Exists)
    );
    assert_eq!(
        two.reserve("A", plate("P2"), Some("kiosk")),
        Ok(ReserveOutcome::Reserved)
    );
    // Only the owner cancels, asked of the database even before the copy has heard.
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("other")),
        Ok(CancelOutcome::NotFound)
    );
    assert_eq!(
        one.cancel("A", plate("P2"), &|owner| owner == Some("kiosk")),
        Ok(CancelOutcome::Cancelled)
    );
    assert_eq!(
        one.cancel("A", plate("P2"), &anyone),
        Ok(CancelOutcome::NotFound)
    );
    let update = two.update_occupancy("A", CountChange::Add(5)).unwrap();
    assert_eq!(
        (update.occupied, update.counted, update.free, update.clamped),
        (3, 5, 0, true)
    );
    assert_eq!(
        one.reserve("A", plate("P3"), None),
        Ok(ReserveOutcome::Full)
    );
    two.update_occupancy("A", CountChange::Remove(4)).unwrap();
    // A report that changes nothing is no change.
    two.update_occupancy("A", CountChange::Set(1)).unwrap();
    assert!(matches!(
        one.reserve("Z", plate("P1"), None),
        Err(StateError::UnknownLot(_))
    ));

    // Capacity 3: P1 (2), P2 (1), P2 gone (2), five counted (0), one left (1).
    let expected = vec![2, 1, 2, 0, 1];
    eventually("both nodes hear every change", || {
        *heard_one.lock() == expected && *heard_two.lock() == expected
    });
    for store in [&one, &two] {
        let a = &store.state().lots()[0];
        assert_eq!((a.counted, a.occupied, a.reserved, a.free), (1, 1, 1, 1));
        assert_eq!(store.health(), Health::Ok);
    }
}

#[test]
fn expiry_run_by_two_nodes_at_once_removes_each_reservation_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 100), node(&pg, 100));
    let heard_two = heard(&two);
    for n in 0..60 {
        let store = if n % 2 == 0 { &one } else { &two };
        assert_eq!(
            store.reserve("A", plate(&format!("P{n}")), None),
            Ok(ReserveOutcome::Reserved)
        );
    }
    eventually("both copies hold 60", || {
        free(&one) == 40 && free(&two) == 40
    });
    // Time passes in the database, where expiry is decided: every reservation is due.
    pg.client()
        .execute(
            "UPDATE parking_reservations SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    let (one, two) = (Arc::new(one), Arc::new(two));
    let sweepers: Vec<_> = (0..4)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
            thread::spawn(move || {
                let mut removed = 0;
                for _ in 0..5 {
                    removed += store.expire_due().unwrap();
                }
                removed
            })
        })
        .collect();
    let removed: usize = sweepers.into_iter().map(|s| s.join().unwrap()).sum();
    assert_eq!(removed, 60);
    let row = pg
        .client()
        .query_one(
            "SELECT reserved, (SELECT count(*) FROM parking_reservations) FROM parking_lots \
             WHERE id = 'A'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (0, 0));
    eventually("both copies are empty again", || {
        free(&one) == 100 && free(&two) == 100
    });
    // Node two heard 60 reserves one by one, then the expiries in batches, never past 100.
    let heard = heard_two.lock().clone();
    assert_eq!(heard[..60], (40..100).rev().collect::<Vec<u32>>()[..]);
    assert!(heard[60..].windows(2).all(|w| w[0] < w[1]), "{heard:?}");
    assert_eq!(heard.last(), Some(&100));
}

#[test]
fn nodes_starting_together_apply_each_migration_once_and_agree_on_capacity() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.url();
    let starters: Vec<_> = (0..3)
        .map(|n| {
            let options = PgOptions {
                url: url.clone(),
                pool_size: 2,
                timeout: Duration::from_secs(5),
            };
            thread::spawn(move || {
                // Each node brings a different capacity for A; one of them wins for all.
                PgStore::open(&options, lots(10 + n), TTL, Arc::new(SystemClock)).unwrap()
            })
        })
        .collect();
    let stores: Vec<PgStore> = starters.into_iter().map(|s| s.join().unwrap()).collect();
    let capacities: Vec<u32> = stores
        .iter()
        .map(|s| s.state().lots()[0].capacity)
        .collect();
    assert!(
        capacities.iter().all(|&c| c == capacities[0]),
        "{capacities:?}"
    );
    let applied: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM parking_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(applied, store_pg::MIGRATIONS.len() as i64);
}

#[test]
fn a_change_too_large_to_announce_is_read_afresh_by_the_other_nodes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (one, two) = (node(&pg, 3), node(&pg, 3));
    let owner = "k".repeat(9000);
    assert_eq!(
        one.reserve("A", plate("BIG"), Some(&owner)),
        Ok(ReserveOutcome::Reserved)
    );
    eventually("the other node reads the lot afresh", || free(&two) == 2);
    assert_eq!(
        two.cancel("A", plate("BIG"), &|held| held == Some(owner.as_str())),
        Ok(CancelOutcome::Cancelled)
    );
    eventually("and hears the cancel", || free(&one) == 3);
}

#[test]
fn the_store_says_what_it_does_not_keep() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let node = node(&pg, 3);
    for feature in [Feature::Gates, Feature::Waitlists] {
        assert!(!node.supports(feature), "{feature}");
        assert_eq!(node.require(feature), Err(Unsupported(feature)));
    }
}

#[test]
fn an_outage_refuses_writes_in_bounded_time_serves_reads_and_heals_itself() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let one = node(&pg, 10);
    assert_eq!(
        one.reserve("A", plate("KEEP"), None),
        Ok(ReserveOutcome::Reserved)
    );
    pg.stop();

    let started = Instant::now();
    let refused = one.reserve("A", plate("P1"), None);
    assert!(
        matches!(refused, Err(StateError::Unavailable(_))),
        "{refused:?}"
    );
    // The bound the configuration promises (timeout 1 s), with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    eventually("health says why", || {
        matches!(one.health(), Health::Unavailable(_))
    });
    assert!(matches!(
        one.update_occupancy("A", CountChange::Add(1)),
        Err(StateError::Unavailable(_))
    ));
    // Reads go on from the copy.
    assert_eq!(free(&one), 9);

    pg.start_again();
    // A change made through another node while the first was away.
    let two = node(&pg, 10);
    assert_eq!(
        two.reserve("A", plate("P2"), None),
        Ok(ReserveOutcome::Reserved)
    );
    eventually("the node reconnects and resynchronises", || {
        one.health() == Health::Ok && free(&one) == 8
    });
    eventually("writes are taken again", || {
        one.reserve("A", plate("P3"), None) == Ok(ReserveOutcome::Reserved)
    });
    eventually("and heard everywhere", || {
        free(&two) == 7 && free(&one) == 7
    });
}
