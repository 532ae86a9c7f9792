//! Bad data on disk: a torn tail is cut (and kept aside) and the store opens; corruption
//! before the tail refuses to open, naming the file and offset, until `repair` cuts it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::*;
use state::ManualClock;
use store::disk::{FaultyDisk, RealDisk};
use store::{EmbeddedStore, OpenErrorKind, Options, Store};

/// A journal of `records` reservations P0, P1, ...; returns where each record starts and
/// the file's length.
fn journal(dir: &Path, clock: &Arc<ManualClock>, records: usize) -> (Vec<u64>, u64) {
    let store = open(dir, clock, &FaultyDisk::new());
    let segment = dir.join("journal-1.log");
    let mut starts = Vec::new();
    for n in 0..records {
        starts.push(fs::metadata(&segment).unwrap().len());
        store.state().reserve("A", plate(&format!("P{n}"))).unwrap();
    }
    drop(store);
    (starts, fs::metadata(&segment).unwrap().len())
}

fn reserved(store: &EmbeddedStore) -> u32 {
    store.state().lots()[0].reserved
}

#[test]
fn a_journal_cut_anywhere_in_its_last_record_opens_with_every_earlier_record() {
    let original = TempDir::new("store-torn-original");
    let clock = Arc::new(ManualClock::new());
    let (starts, len) = journal(original.path(), &clock, 4);
    let bytes = fs::read(original.path().join("journal-1.log")).unwrap();
    let last = starts[3];
    for cut in last..len {
        let dir = TempDir::new("store-torn");
        let segment = dir.path().join("journal-1.log");
        fs::write(&segment, &bytes[..cut as usize]).unwrap();
        let store = open(dir.path(), &clock, &FaultyDisk::new());
        assert_eq!(reserved(&store), 3, "cut at {cut}");
        assert_eq!(fs::metadata(&segment).unwrap().len(), last, "cut at {cut}");
        let aside: Vec<String> = files(dir.path())
            .into_iter()
            .filter(|name| name.starts_with("journal-1.log.torn-"))
            .collect();
        if cut == last {
            assert!(aside.is_empty(), "a clean end has no torn tail");
        } else {
            assert_eq!(aside.len(), 1, "cut at {cut}");
            let kept = fs::read(dir.path().join(&aside[0])).unwrap();
            assert_eq!(kept, &bytes[last as usize..cut as usize]);
        }
        // The journal goes on where the valid records end.
        store.state().reserve("A", plate("AFTER")).unwrap();
        drop(store);
        let store = open(dir.path(), &clock, &FaultyDisk::new());
        assert_eq!(reserved(&store), 4, "cut at {cut}");
    }
}

#[test]
fn corruption_before_the_tail_refuses_to_open_until_repaired() {
    let dir = TempDir::new("store-corrupt");
    let clock = Arc::new(ManualClock::new());
    let (starts, _) = journal(dir.path(), &clock, 5);
    let segment = dir.path().join("journal-1.log");
    let mut bytes = fs::read(&segment).unwrap();
    bytes[starts[1] as usize + 12] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();

    let err = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap_err();
    match &err.kind {
        OpenErrorKind::Corrupt { file, offset, .. } => {
            assert_eq!((file.as_path(), *offset), (segment.as_path(), starts[1]));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        segment.display().to_string(),
        format!("at byte {}", starts[1]),
        format!("parking-server repair --data-dir {}", dir.path().display()),
    ] {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }

    let repair = store::repair(dir.path(), &RealDisk).unwrap();
    assert_eq!(repair.cuts.len(), 1, "{repair}");
    let cut = &repair.cuts[0];
    assert_eq!((cut.offset, cut.records), (starts[1], 3), "{repair}");
    assert_eq!(fs::read(&cut.kept).unwrap(), &bytes[starts[1] as usize..]);
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(reserved(&store), 1);
    drop(store);
    assert_eq!(
        store::repair(dir.path(), &RealDisk).unwrap().to_string(),
        "nothing to repair: every journal segment reads cleanly"
    );
}

#[test]
fn a_torn_tail_in_an_older_segment_is_corruption() {
    let dir = TempDir::new("store-torn-older");
    let clock = Arc::new(ManualClock::new());
    let (starts, _) = journal(dir.path(), &clock, 3);
    let first = dir.path().join("journal-1.log");
    let bytes = fs::read(&first).unwrap();
    // Segment 2 holds the last record whole; segment 1 ends in the middle of the second.
    fs::write(
        dir.path().join("journal-2.log"),
        &bytes[starts[2] as usize..],
    )
    .unwrap();
    fs::write(&first, &bytes[..starts[1] as usize + 5]).unwrap();
    let err = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err.kind, OpenErrorKind::Corrupt { file, offset, .. } if *file == first && *offset == starts[1]),
        "{err}"
    );
    store::repair(dir.path(), &RealDisk).unwrap();
    let store = open(dir.path(), &clock, &FaultyDisk::new());
    assert_eq!(reserved(&store), 2);
}

#[test]
fn a_missing_segment_or_a_damaged_snapshot_refuses_to_open() {
    let dir = TempDir::new("store-missing");
    let clock = Arc::new(ManualClock::new());
    journal(dir.path(), &clock, 2);
    fs::rename(
        dir.path().join("journal-1.log"),
        dir.path().join("journal-3.log"),
    )
    .unwrap();
    fs::write(dir.path().join("journal-1.log"), b"").unwrap();
    let err = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err.kind, OpenErrorKind::MissingSegment(file) if file.ends_with("journal-2.log")),
        "{err}"
    );

    let dir = TempDir::new("store-bad-snapshot");
    fs::write(dir.path().join("snapshot-1.json"), b"{\"format\":1,\"segm").unwrap();
    let err = EmbeddedStore::open(new_state(&clock), Options::new(dir.path())).unwrap_err();
    assert!(
        matches!(&err.kind, OpenErrorKind::BadSnapshot { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("snapshot-1.json"), "{err}");
}
