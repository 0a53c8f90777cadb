//! `mofo bench optim` and `mofo bench train` run end to end on small sizes
//! and write the JSON fields the performance docs and the issue name
//! (timings themselves are never checked here: benchmarks, not timed tests).

use std::path::PathBuf;
use std::process::Command;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mofo-bench-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_json(args: &[&str], json: &PathBuf) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mofo"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mofo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn positive(j: &serde_json::Value, key: &str) -> f64 {
    let x = j[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {j}"));
    assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    x
}

#[test]
fn bench_optim_writes_its_figures() {
    let d = temp_dir("optim");
    let json = d.join("optim.json");
    let j = run_json(
        &[
            "bench",
            "optim",
            "--params",
            "200000",
            "--threads",
            "2",
            "--reps",
            "3",
            "--warmup",
            "3",
            "--pairs",
            "3",
        ],
        &json,
    );
    let adam = positive(&j, "adam_ns_per_param");
    let mofo = positive(&j, "mofo_ns_per_param");
    assert!((positive(&j, "ratio") - mofo / adam).abs() < 1e-9);
    positive(&j, "ratio_finite");
    positive(&j, "ratio_alternated");
    positive(&j, "ratio_finite_alternated");
    positive(&j, "stream_gb_per_s");
    positive(&j, "read_stream_gb_per_s");
    positive(&j, "adam_check_read_share");
    positive(&j, "checked_step_bound_ms");
    positive(&j, "adam_checked_bound_share_alternated");
    // A share of the alternated MoFO steps' entries: its denominator counts
    // each of those steps' entries once, so it cannot pass 1.
    let warm = j["mofo_warm_single_pass_share"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&warm), "warm single-pass share {warm}");
    assert_eq!(j["pairs"], 3);
    assert_eq!(j["threads"], 2);
    let _ = std::fs::remove_dir_all(&d);
}

/// The digests of θ after the steps (AdamW and MoFO, then the family's)
/// are the same on one thread and on two, and the family's steps move θ.
#[test]
fn bench_optim_digests_ignore_threads() {
    let d = temp_dir("optim-digest");
    let digests = |threads: &str| {
        let json = d.join(format!("optim{threads}.json"));
        let j = run_json(
            &[
                "bench",
                "optim",
                "--params",
                "300000",
                "--threads",
                threads,
                "--reps",
                "2",
                "--warmup",
                "3",
                "--pairs",
                "2",
                "--methods",
                "all",
            ],
            &json,
        );
        let digest = |key: &str| {
            let s = j[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing in {j}"));
            assert_eq!(s.len(), 16, "{key} = {s}");
            s.to_owned()
        };
        (
            digest("params_digest"),
            digest("params_digest_after_methods"),
        )
    };
    let (one, two) = (digests("1"), digests("2"));
    assert_eq!(one, two, "digests on 1 thread, then on 2");
    assert_ne!(one.0, one.1, "the family's steps left θ as it was");
    let _ = std::fs::remove_dir_all(&d);
}

/// `--grad-clip` times the clipped steps (the family's too) and records
/// the norm; a norm that is not positive and finite is refused.
#[test]
fn bench_optim_clips_when_asked() {
    let d = temp_dir("optim-clip");
    let json = d.join("optim.json");
    let j = run_json(
        &[
            "bench",
            "optim",
            "--params",
            "100000",
            "--threads",
            "2",
            "--reps",
            "2",
            "--warmup",
            "2",
            "--pairs",
            "2",
            "--grad-clip",
            "0.5",
            "--methods",
            "adamw,mofo,lion_mofo",
        ],
        &json,
    );
    positive(&j, "ratio_alternated");
    assert_eq!(j["grad_clip"], 0.5);
    assert_eq!(j["methods"].as_array().unwrap().len(), 3);
    for bad in ["0", "-1", "inf", "NaN"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mofo"))
            .args(["bench", "optim", "--params", "20000"])
            .arg(format!("--grad-clip={bad}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains("--grad-clip must be a positive finite norm"),
            "{bad}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bench_train_writes_its_figures_and_the_loss_ignores_threads() {
    let d = temp_dir("train");
    let loss = |threads: &str| {
        let json = d.join(format!("train{threads}.json"));
        let j = run_json(
            &[
                "bench",
                "train",
                "--config",
                "S",
                "--steps",
                "1",
                "--no-peak",
                "--threads",
                threads,
            ],
            &json,
        );
        positive(&j, "tokens_per_s");
        positive(&j, "ms_per_step");
        if std::path::Path::new("/proc/self/status").exists() {
            positive(&j, "peak_rss_kb");
        }
        assert_eq!(j["config"], "S");
        j["final_loss"].as_f64().unwrap()
    };
    let (one, two) = (loss("1"), loss("2"));
    assert!(one.is_finite());
    assert_eq!(
        one.to_bits(),
        two.to_bits(),
        "loss {one} on 1 thread, {two} on 2"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `--device` is checked before any work: a malformed value, and (in a build
/// without the `cuda` feature, or with it on a machine without a driver) a
/// GPU, are refused with a message and a failing status, not a panic.
#[test]
fn bench_optim_device_is_refused_cleanly() {
    let run_with = |device: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mofo"))
            .args(["bench", "optim", "--params", "20000", "--device", device])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |device: &str| run_with(device, &[]);
    let (status, err) = run("tpu");
    assert!(!status.success() && status.code() == Some(1), "{err}");
    for extra in [
        &["--methods", "all"][..],
        &["--threads", "2"],
        &["--no-huge-pages"],
        &["--grad-clip", "1"],
    ] {
        let (status, err) = run_with("cuda", extra);
        assert!(!status.success() && status.code() == Some(1), "{err}");
        assert!(
            err.contains(&format!("{} applies to --device cpu only", extra[0])),
            "{err}"
        );
    }
    assert!(
        err.contains("--device must be cpu, cuda or cuda:N"),
        "{err}"
    );
    let (status, err) = run("cuda:x");
    assert!(!status.success() && err.contains("cuda:N"), "{err}");
    if !cfg!(feature = "cuda") {
        let (status, err) = run("cuda:1");
        assert!(!status.success() && status.code() == Some(1), "{err}");
        assert!(err.contains("without the `cuda` feature"), "{err}");
    }
}

/// Counts that cannot be honoured are refused before any work, with a
/// message naming the flag and a failing status: zero timed steps, pairs,
/// repetitions or parameters, and thread counts from 0 to far past what a
/// process can start (100 000 threads aborted the process before the
/// bound).
#[test]
fn bench_counts_out_of_range_are_refused_cleanly() {
    let cases: [(&[&str], &str); 7] = [
        (&["optim", "--params", "0"], "--params must be at least 1"),
        (&["optim", "--reps", "0"], "--reps must be at least 1"),
        (&["optim", "--pairs", "0"], "--pairs must be at least 1"),
        (
            &["optim", "--params", "20000", "--threads", "0"],
            "--threads must be at least 1",
        ),
        (
            &["optim", "--params", "20000", "--threads", "100000"],
            "--threads must be at most 1024, not 100000",
        ),
        (&["train", "--steps", "0"], "--steps must be at least 1"),
        (
            &["train", "--threads", "100000"],
            "--threads must be at most 1024",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_mofo"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: no figures expected");
    }
}
