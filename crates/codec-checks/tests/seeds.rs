//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/`) through their targets' checks, so
//! that `cargo test` runs every seed on stable Rust, where libFuzzer does not.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

#[test]
fn every_seed_passes_its_targets_checks() {
    for (target, check) in codec_checks::TARGETS {
        let dir = seeds_dir().join(target);
        let mut seeds: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for seed in seeds {
            let data = fs::read(&seed).unwrap_or_else(|err| panic!("{}: {err}", seed.display()));
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&data)));
            assert!(
                outcome.is_ok(),
                "{} fails the {target} checks",
                seed.display()
            );
        }
    }
}

#[test]
fn every_seed_directory_belongs_to_a_target() {
    for entry in fs::read_dir(seeds_dir()).unwrap_or_else(|err| panic!("fuzz/seeds: {err}")) {
        let name = entry
            .unwrap_or_else(|err| panic!("fuzz/seeds: {err}"))
            .file_name();
        assert!(
            codec_checks::TARGETS
                .iter()
                .any(|(target, _)| name == *target),
            "fuzz/seeds/{} is no fuzz target's",
            name.to_string_lossy()
        );
    }
}
