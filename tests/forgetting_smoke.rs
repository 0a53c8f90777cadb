//! A seconds-long run of the whole forgetting pipeline on a tiny
//! configuration: base model, every method, reports, cache reuse.

use mofo::experiments::forgetting::{
    report, run_forgetting, ForgettingConfig, RunOptions, METHODS,
};
use mofo::train::llama::LlamaBackend;
use serde_json::json;

fn tiny() -> ForgettingConfig {
    ForgettingConfig::quick_preset()
        .merged(json!({
            "model": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                      "num_key_value_heads": 1, "intermediate_size": 32,
                      "max_position_embeddings": 96},
            "knowledge": {"entities": 6, "general_sentences": 8},
            "task": {"train_examples": 40, "eval_examples": 8},
            "pretrain": {"steps": 6, "batch_size": 2, "seq_len": 80, "warmup_steps": 1},
            "finetune": {"steps": 4, "batch_size": 2, "seq_len": 40, "warmup_steps": 1},
            "eval": {"probes": 0, "every": 2},
            "alpha_sweep": [0.5]
        }))
        .unwrap()
}

#[test]
fn pipeline_runs_reports_and_caches() {
    let dir = std::env::temp_dir().join(format!("mofo-forgetting-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = tiny();
    let opts = RunOptions {
        out_dir: dir.join("out"),
        cache_dir: Some(dir.join("cache")),
        progress: false,
        verbose: false,
        resume: false,
    };
    let r = run_forgetting(&cfg, &LlamaBackend, &opts).unwrap();
    assert!(!r.base.cached);
    assert_eq!(r.rows.len(), METHODS.len() + 1);
    for (row, name) in r.rows.iter().zip(METHODS) {
        assert_eq!(row.method, name);
    }
    let last = r.rows.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.config.alpha),
        ("mofo", Some(0.5))
    );
    for row in &r.rows {
        assert!(
            row.pretrain_loss.is_finite() && row.finetune_loss.is_finite(),
            "{row:?}"
        );
        assert!((0.0..=1.0).contains(&row.finetune_accuracy));
        assert!((0.0..=1.0).contains(&row.retained_mc_accuracy));
        assert!(row.distance > 0.0, "{} did not move", row.label);
        assert_eq!(row.loss_curve.len(), 4);
        // Curves: step 0 (the base) and every 2 steps.
        assert_eq!(
            row.curve.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
    }
    let share = |n: &str| {
        r.rows
            .iter()
            .find(|x| x.method == n)
            .unwrap()
            .significant_update_share
    };
    // Filters update fewer entries than the full update.
    assert!(
        share("mofo") < share("adam"),
        "{} vs {}",
        share("mofo"),
        share("adam")
    );
    assert!(share("random_bcd") < share("adam"));

    let files = report::write_reports(&r, &opts.out_dir).unwrap();
    for f in [
        "results.json",
        "results.csv",
        "table.txt",
        "pareto.png",
        "distance.png",
        "loss_curves.png",
        "pretrain_loss.png",
    ] {
        assert!(files.iter().any(|p| p.ends_with(f)), "{f} missing");
        assert!(std::fs::metadata(opts.out_dir.join(f)).unwrap().len() > 100);
    }
    let summary = report::summary_json(&r);
    assert_eq!(summary["format"], "mofo-forgetting/1");
    assert_eq!(summary["rows"].as_array().unwrap().len(), METHODS.len());
    assert_eq!(summary["alpha_sweep"].as_array().unwrap().len(), 1);
    for key in [
        "finetune_accuracy",
        "retained_accuracy",
        "pretrain_loss_increase",
        "distance",
        "significant_update_share",
        "seconds",
    ] {
        assert!(summary["rows"][0][key].is_number(), "{key}");
    }
    let csv = report::csv(&r);
    assert_eq!(csv.lines().count(), r.rows.len() + 1);

    // Second run: the base comes from the cache with identical scores.
    let cfg2 = ForgettingConfig {
        methods: cfg.methods[..1].to_vec(),
        alpha_sweep: vec![],
        ..cfg.clone()
    };
    let r2 = run_forgetting(&cfg2, &LlamaBackend, &opts).unwrap();
    assert!(r2.base.cached);
    assert_eq!(r2.base.pretrain_loss, r.base.pretrain_loss);
    // Same base, same method: the same fine-tuning, bit for bit.
    assert_eq!(r2.rows[0].loss_curve, r.rows[0].loss_curve);
    assert_eq!(r2.rows[0].distance, r.rows[0].distance);
    assert_eq!(r2.rows[0].pretrain_loss, r.rows[0].pretrain_loss);
    // A different pre-training budget is a different base.
    let mut cfg3 = cfg2.clone();
    cfg3.pretrain.steps = 5;
    let r3 = run_forgetting(&cfg3, &LlamaBackend, &opts).unwrap();
    assert!(!r3.base.cached);
    std::fs::remove_dir_all(&dir).unwrap();
}
