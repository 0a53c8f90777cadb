//! CI smoke run of every fuzz target (`mofo::fuzzing::TARGETS`): the seed
//! corpus (`fuzz/corpus/<target>/seed-*`, the generated seeds of
//! `mofo::fuzzing::seeds`, and for the file formats the reference models in
//! `../shared/reference/models`) plus a few thousand deterministic mutations
//! (bit flips, interesting bytes, truncations, splices, numbers and tokens
//! swapped in; ChaCha8 with a fixed seed). Any panic fails the test and names
//! the input. No libFuzzer, no nightly: seconds in the default test profile.
//!
//! `MOFO_FUZZ_SMOKE_MUTATIONS=N` changes the number of mutations per target
//! (default 3000). `MOFO_WRITE_SEEDS=1 cargo test --test fuzz_smoke
//! write_seed_corpus -- --ignored` rewrites the generated seed files.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mofo::fuzzing::{seeds, Target, TARGETS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Committed seed files of a target.
fn corpus_files(name: &str) -> Vec<Vec<u8>> {
    let dir = crate_root().join("fuzz/corpus").join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Reference files used as extra seeds (the real Hugging Face outputs).
fn reference_files(name: &str) -> Vec<Vec<u8>> {
    let reference = crate_root().join("../shared/reference");
    let paths = |dir: &str, files: [&str; 2]| files.map(|f| reference.join(dir).join(f));
    let models = ["tiny-llama", "tiny-llama-gqa-tied"];
    let files = match name {
        "config_json" => models.map(|m| reference.join("models").join(m).join("config.json")),
        "safetensors_weights" => {
            models.map(|m| reference.join("models").join(m).join("model.safetensors"))
        }
        "optim_trace" => paths("optim", ["mofo_adam_momentum.json", "lion.json"]),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for path in files {
        match std::fs::read(&path) {
            Ok(bytes) => out.push(bytes),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI: reference file {} missing: {e}", path.display())
            }
            Err(e) => eprintln!("skipping reference seed {}: {e}", path.display()),
        }
    }
    out
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let mut all = corpus_files(name);
    all.extend(seeds(name));
    all.extend(reference_files(name));
    assert!(!all.is_empty(), "target {name} has no seeds");
    all
}

const TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1e999",
    b"-0.0",
    b"NaN",
    b"18446744073709551615",
    b"18446744073709551616",
    b"4294967296",
    b"1000000000000",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"\"\"",
    b"[[",
    b"\"\\ud800\"",
    b"\xff\xfe",
    b"\x00",
];

fn random_token(rng: &mut ChaCha8Rng) -> &'static [u8] {
    TOKENS[rng.random_range(0..TOKENS.len())]
}

/// One deterministic mutation of `input` (`other` is a splice partner).
fn mutate(rng: &mut ChaCha8Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.random_range(0..3);
    for _ in 0..rounds {
        let len = out.len();
        match rng.random_range(0..9) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            // An interesting byte.
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = [0u8, 0xff, 0x7f, 0x80, b'9', b'"', b'-', b'['][rng.random_range(0..8)];
            }
            // Truncate.
            2 if len > 0 => out.truncate(rng.random_range(0..len)),
            // Splice: a prefix of this input, a suffix of the other.
            3 => {
                let a = rng.random_range(0..=len);
                let b = rng.random_range(0..=other.len());
                out.truncate(a);
                out.extend_from_slice(&other[b..]);
            }
            // Replace a run of digits by a token (numbers are the sizes).
            4 => {
                let digits: Vec<usize> = (0..len).filter(|&i| out[i].is_ascii_digit()).collect();
                if let Some(&start) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let mut end = start;
                    while end < len && out[end].is_ascii_digit() {
                        end += 1;
                    }
                    let tok = random_token(rng);
                    out.splice(start..end, tok.iter().copied());
                }
            }
            // Insert a token.
            5 => {
                let i = rng.random_range(0..=len);
                let tok = random_token(rng);
                out.splice(i..i, tok.iter().copied());
            }
            // Delete a range.
            6 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..64)).min(len);
                out.drain(a..b);
            }
            // Overwrite 8 bytes with a little-endian extreme (length fields).
            7 if len >= 8 => {
                let i = if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(0..=len - 8)
                };
                let v: u64 =
                    [u64::MAX, 1 << 40, len as u64, len as u64 - 7, 0][rng.random_range(0..5)];
                out[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            // Duplicate a range (repeated keys, nested lists).
            _ if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..32)).min(len);
                let piece = out[a..b].to_vec();
                let at = rng.random_range(0..=out.len());
                out.splice(at..at, piece);
            }
            _ => out.push(rng.random()),
        }
    }
    out
}

fn run_one(name: &str, target: Target, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        let dir = std::env::temp_dir().join("mofo-fuzz-smoke");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-crash"));
        std::fs::write(&path, input).unwrap();
        let shown = String::from_utf8_lossy(&input[..input.len().min(400)]).into_owned();
        panic!(
            "fuzz target {name} panicked on {what} ({} bytes, saved to {}): {shown:?}",
            input.len(),
            path.display()
        );
    }
}

fn smoke(name: &str, target: Target) {
    let seeds = corpus(name);
    for (i, s) in seeds.iter().enumerate() {
        run_one(name, target, s, &format!("seed {i}"));
    }
    let n: usize = std::env::var("MOFO_FUZZ_SMOKE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut rng = ChaCha8Rng::seed_from_u64(0x6d6f666f);
    for m in 0..n {
        let a = &seeds[m % seeds.len()];
        // Large inputs (the reference weights) get fewer mutations.
        if a.len() > 64 * 1024 && m % 16 != 0 {
            continue;
        }
        let b = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, a, b);
        run_one(
            name,
            target,
            &input,
            &format!("mutation {m} of seed {}", m % seeds.len()),
        );
    }
}

#[test]
fn every_target_has_a_wrapper_and_seeds() {
    for (name, _) in TARGETS {
        let wrapper = crate_root()
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&wrapper)
            .unwrap_or_else(|e| panic!("{}: {e}", wrapper.display()));
        assert!(
            text.contains(&format!("mofo::fuzzing::{name}(")),
            "{} must call mofo::fuzzing::{name}",
            wrapper.display()
        );
        assert!(
            !corpus_files(name).is_empty(),
            "fuzz/corpus/{name} has no seed-* file"
        );
    }
}

#[test]
fn mutations_are_deterministic_and_change_the_input() {
    let mut a = ChaCha8Rng::seed_from_u64(1);
    let mut b = ChaCha8Rng::seed_from_u64(1);
    let input = b"{\"vocab_size\": 128, \"hidden_size\": 64}";
    let mut changed = 0;
    for _ in 0..100 {
        let x = mutate(&mut a, input, b"[1, 2]");
        assert_eq!(x, mutate(&mut b, input, b"[1, 2]"));
        changed += usize::from(x != input);
    }
    assert!(
        changed > 90,
        "only {changed} of 100 mutations changed the input"
    );
}

macro_rules! smoke_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let target = TARGETS
                .iter()
                .find(|(n, _)| *n == stringify!($name))
                .expect("listed in mofo::fuzzing::TARGETS")
                .1;
            smoke(stringify!($name), target);
        }
    )*
    #[test]
    fn every_target_is_smoke_tested() {
        let tested = [$(stringify!($name)),*];
        for (name, _) in TARGETS {
            assert!(tested.contains(name), "add {name} to smoke_tests! in tests/fuzz_smoke.rs");
        }
    }
    };
}

smoke_tests!(
    config_json,
    safetensors_weights,
    tokenizer_json,
    token_ids_json,
    text_data,
    optim_trace,
    optim_state,
    optim_spec,
    experiment_file,
    checkpoint
);

/// Writes the generated seeds to `fuzz/corpus/<target>/seed-gen-<i>` (run
/// after changing a writer; the files are what libFuzzer starts from).
#[test]
#[ignore]
fn write_seed_corpus() {
    if std::env::var("MOFO_WRITE_SEEDS").as_deref() != Ok("1") {
        eprintln!("set MOFO_WRITE_SEEDS=1 to write fuzz/corpus");
        return;
    }
    for (name, _) in TARGETS {
        let dir: &Path = &crate_root().join("fuzz/corpus").join(name);
        std::fs::create_dir_all(dir).unwrap();
        for (i, s) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-gen-{i}")), s).unwrap();
        }
    }
}
