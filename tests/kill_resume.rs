//! Kill-and-resume (issue 9): `mofo train` is killed with SIGKILL at random
//! moments (steps, evaluations and checkpoint writes alike); after every kill
//! the checkpoint that `OUT/checkpoints/latest` names must load (model,
//! optimizer state, trainer state), and resuming to the end must give
//! parameters bit-identical to an uninterrupted run with the same seed.
//!
//! The kill times are drawn from ChaCha8 (seed `MOFO_KILL_SEED`, default 9)
//! uniformly over the uninterrupted run's wall time, so the kills land in
//! each phase in proportion to the time it takes. CI runs
//! `MOFO_KILL_RUNS` = 3 kills on a tiny model; the long mode is e.g.
//! `MOFO_KILL_RUNS=20 cargo test --test kill_resume -- --nocapture`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mofo::model::{HfConfig, HfExtras, LlamaConfig, LlamaModel};
use mofo::optim::OptimizerSpec;
use mofo::train::TrainState;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mofo-kill-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny model for the byte tokenizer (ids 0–258) and a text to train on.
fn write_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = LlamaConfig {
        vocab_size: 260,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: false,
        max_position_embeddings: 64,
    };
    let hf = HfConfig {
        model: cfg,
        extras: HfExtras::default(),
    };
    let config = dir.join("config.json");
    std::fs::write(&config, hf.to_json_string()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let words = [
        "the", "river", "market", "quiet", "stone", "moves", "near", "light",
    ];
    let text: String = (0..3000)
        .map(|i| {
            let w = words[rng.random_range(0..words.len())];
            if i % 9 == 8 {
                format!("{w}.\n")
            } else {
                format!("{w} ")
            }
        })
        .collect();
    let data = dir.join("data.txt");
    std::fs::write(&data, text).unwrap();
    (config, data)
}

const STEPS: u64 = 24;
const KILL_ARGS: &[&str] = &["--lr", "3e-3", "--checkpoint-every", "2"];

/// `mofo train` on the tiny model; `extra` adds the learning rate and the
/// checkpoint interval (and any other flag).
fn train_cmd(config: &Path, data: &Path, out: &Path, resume: bool, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mofo"));
    c.args(["train", "--quiet", "--threads", "1"])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--steps", &STEPS.to_string()])
        .args(["--batch-size", "4", "--seq-len", "16"])
        .args(["--optimizer", "mofo", "--alpha", "0.2", "--seed", "11"])
        .args(["--eval-every", "3", "--keep-checkpoints", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

fn latest(out: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(out.join("checkpoints/latest")).ok()?;
    Some(out.join("checkpoints").join(name.trim()))
}

/// Loads every part of a checkpoint as a resumed run would.
fn check_checkpoint_loads(dir: &Path) -> u64 {
    let model = LlamaModel::<f32>::load(&dir.join("model"))
        .unwrap_or_else(|e| panic!("{}: model does not load: {e}", dir.display()));
    assert!(
        model
            .params
            .iter()
            .all(|p| p.as_slice().iter().all(|x| x.is_finite())),
        "{}: non-finite parameters in a checkpoint",
        dir.display()
    );
    let spec = OptimizerSpec::method("mofo", 3e-3, 0.2, 11).unwrap();
    let mut opt = spec.build(&model.params).unwrap();
    opt.load(&dir.join("optimizer.state"))
        .unwrap_or_else(|e| panic!("{}: optimizer state does not load: {e}", dir.display()));
    let trainer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("trainer.json"))
            .unwrap_or_else(|e| panic!("{}: trainer.json: {e}", dir.display())),
    )
    .unwrap_or_else(|e| panic!("{}: trainer.json does not parse: {e}", dir.display()));
    trainer["step"].as_u64().expect("trainer.json has a step")
}

fn final_params(out: &Path) -> Vec<(String, Vec<u32>)> {
    let model = LlamaModel::<f32>::load(&out.join("model"))
        .unwrap_or_else(|e| panic!("{}: final model: {e}", out.display()));
    model
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.as_slice().iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

/// The loop state of the run's latest checkpoint (its trainer.json).
fn history(out: &Path) -> TrainState {
    let dir = latest(out).unwrap_or_else(|| panic!("{}: no checkpoint", out.display()));
    let text = std::fs::read(dir.join("trainer.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn run_to_end(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mofo train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

#[test]
fn killed_training_resumes_bit_identically() {
    let kills: usize = env_or("MOFO_KILL_RUNS", 3);
    let seed: u64 = env_or("MOFO_KILL_SEED", 9);
    let dir = temp_dir("run");
    let (config, data) = write_inputs(&dir);

    let reference = dir.join("reference");
    let wall = run_to_end(train_cmd(&config, &data, &reference, false, KILL_ARGS));
    let expected = final_params(&reference);

    let out = dir.join("killed");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut killed, mut finished_early, mut loaded, mut attempts) = (0, 0, 0, 0);
    let mut steps_at_kill = Vec::new();
    while killed < kills {
        attempts += 1;
        assert!(
            attempts < 20 * kills + 20,
            "the run keeps finishing before the kill"
        );
        let resume = latest(&out).is_some();
        let mut child = train_cmd(&config, &data, &out, resume, KILL_ARGS)
            .spawn()
            .unwrap();
        // Process start and data loading are part of the window too.
        let delay = wall.mul_f64(rng.random_range(0.0..1.0));
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                // Finished before the kill: start over from scratch so that
                // every kill interrupts real work.
                let stderr = child.wait_with_output().unwrap().stderr;
                assert!(status.success(), "{}", String::from_utf8_lossy(&stderr));
                finished_early += 1;
                std::fs::remove_dir_all(&out).unwrap();
                continue;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
        if let Some(ckpt) = latest(&out) {
            let step = check_checkpoint_loads(&ckpt);
            loaded += 1;
            steps_at_kill.push(step);
        } else {
            steps_at_kill.push(0);
        }
    }
    let resume = latest(&out).is_some();
    run_to_end(train_cmd(&config, &data, &out, resume, KILL_ARGS));
    let got = final_params(&out);
    assert_eq!(got.len(), expected.len());
    for ((na, a), (nb, b)) in got.iter().zip(&expected) {
        assert_eq!(na, nb);
        assert!(
            a == b,
            "{na}: resumed parameters differ from the uninterrupted run"
        );
    }
    // The loop's history too: every loss and evaluation of the final
    // checkpoint's trainer.json, those read back from earlier checkpoints
    // included, bit for bit.
    let (a, b) = (history(&out), history(&reference));
    assert_eq!(a.step, b.step);
    assert_eq!(
        a.losses
            .iter()
            .map(|l| l.map(f64::to_bits))
            .collect::<Vec<_>>(),
        b.losses
            .iter()
            .map(|l| l.map(f64::to_bits))
            .collect::<Vec<_>>(),
        "resumed losses differ from the uninterrupted run's"
    );
    let bits = |s: &TrainState| {
        s.evals
            .iter()
            .map(|(step, m)| {
                (
                    *step,
                    m.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect(),
                )
            })
            .collect::<Vec<(u64, Vec<(String, u64)>)>>()
    };
    assert_eq!(bits(&a), bits(&b), "resumed evaluations differ");
    println!(
        "kill-resume: {killed} SIGKILLs ({finished_early} runs finished before their kill), \
         {loaded} checkpoints loaded after a kill, latest checkpoint step at each kill {steps_at_kill:?}, \
         uninterrupted run {:.2} s; final parameters, losses and evaluations bit-identical",
        wall.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Non-finite training (issue 9, item 4): a learning rate of 1e30 makes the
/// parameters huge after the first step and the next loss non-finite. With
/// `--on-nonfinite stop` the run ends with an error naming the non-finite
/// value; with `skip` it skips and counts steps up to `--max-skipped`. In
/// both cases every checkpoint left behind loads with finite parameters.
#[test]
fn non_finite_loss_stops_or_skips_and_never_writes_a_bad_checkpoint() {
    let dir = temp_dir("nonfinite");
    let (config, data) = write_inputs(&dir);
    for policy in ["stop", "skip"] {
        let out = dir.join(policy);
        let mut cmd = train_cmd(
            &config,
            &data,
            &out,
            false,
            &["--lr", "1e30", "--checkpoint-every", "1", "--warmup", "0"],
        );
        cmd.args(["--on-nonfinite", policy, "--max-skipped", "3"]);
        let result = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr).to_lowercase();
        assert!(
            !result.status.success(),
            "{policy}: the run must not succeed: {stderr}"
        );
        assert!(
            stderr.contains("non-finite") || stderr.contains("nan") || stderr.contains("inf"),
            "{policy}: the error must name the non-finite value: {stderr}"
        );
        if policy == "skip" {
            assert!(
                stderr.contains("skip"),
                "skip: the error must say steps were skipped: {stderr}"
            );
        }
        let ckpts = out.join("checkpoints");
        for entry in std::fs::read_dir(&ckpts).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                check_checkpoint_loads(&path);
            }
        }
        if let Some(l) = latest(&out) {
            check_checkpoint_loads(&l);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
