//! Replays every committed fuzz corpus (`fuzz/corpus/TARGET/*`) through the same
//! entry points the fuzz targets call, on stable Rust, in every test run: what
//! a fuzzer once found stays fixed.

use std::path::{Path, PathBuf};

use hookrouter_core::fuzzing;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "fuzz corpus {} is empty: commit at least the seeds",
        dir.display()
    );
    files
}

fn replay(target: &str) {
    for file in corpus(target) {
        let data = std::fs::read(&file).unwrap();
        let result = std::panic::catch_unwind(|| fuzzing::run(target, &data));
        match result {
            Ok(known) => assert!(known, "unknown fuzz target {target}"),
            Err(_) => panic!("{target}: {} panics", file.display()),
        }
    }
}

#[test]
fn every_target_has_a_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut targets: Vec<String> = fuzzing::TARGETS.iter().map(|s| s.to_string()).collect();
    targets.sort();
    assert_eq!(on_disk, targets);
}

#[test]
fn verify_corpus() {
    replay("verify");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn command_stdout_corpus() {
    replay("command_stdout");
}

#[test]
fn ingress_corpus() {
    replay("ingress");
}
