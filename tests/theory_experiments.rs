//! The paper's synthetic experiment (Appendix B.5) and the 2-D landscape
//! (Appendix B.4) as run by `mofo synthetic` / `mofo landscape`: determinism,
//! the JSON format, and the qualitative result (MoFO ends closer to θ_pre
//! than Adam, on the nearest minimum).

use mofo::experiments::example1::Example1;
use mofo::experiments::landscape::{compute_paths, draw_png, paths_csv, problem, LandscapeConfig};
use mofo::experiments::synthetic::{
    format_table, run_method, run_study, Method, RunConfig, SyntheticConfig,
};

fn small_study() -> SyntheticConfig {
    SyntheticConfig {
        n: 4,
        seeds: 3,
        lrs: vec![1e-3, 1e-2],
        methods: vec![Method::Adam, Method::Mofo],
        ..SyntheticConfig::default()
    }
}

#[test]
fn synthetic_study_is_deterministic_and_mofo_ends_closer() {
    let cfg = small_study();
    let a = run_study(&cfg).unwrap();
    let b = run_study(&cfg).unwrap();
    assert_eq!(a, b, "same settings, same report");
    let adam = a.row(Method::Adam).unwrap();
    let mofo = a.row(Method::Mofo).unwrap();
    assert_eq!(adam.converged, 3);
    assert_eq!(mofo.converged, 3);
    assert!(mofo.distance < adam.distance, "{mofo:?} vs {adam:?}");
    assert!(mofo.pretrain_loss < adam.pretrain_loss);

    let json: serde_json::Value = serde_json::to_value(&a).unwrap();
    assert_eq!(json["format"], "mofo-synthetic/1");
    assert_eq!(json["n"], 4);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows[0]["optimizer"], "adam");
    assert_eq!(rows[1]["optimizer"], "mofo");
    for key in ["distance", "pretrain_loss", "converged", "lr"] {
        assert!(rows[0].get(key).is_some(), "row has `{key}`");
    }
    let table = format_table(&a);
    assert!(
        table.contains("0.549") && table.contains("0.275"),
        "{table}"
    );
    assert!(table.contains("Adam/MoFO ratio"), "{table}");
}

#[test]
fn synthetic_rejects_bad_settings() {
    let mut cfg = small_study();
    cfg.lrs = vec![-1.0];
    assert!(run_study(&cfg).is_err());
    cfg.lrs = vec![];
    assert!(run_study(&cfg).is_err());
    // Each setting a run cannot honour, alone, is refused with its name
    // (n = 10¹¹ aborted the process on its allocation before the bound):
    // (what the message names, n, max_iters, tol, reg).
    let base = small_study();
    let (n, it, tol, reg) = (base.n, base.max_iters, base.tol, base.reg);
    let refused = [
        (
            "n = 100000000000 and seeds = 3 must be at most",
            100_000_000_000,
            it,
            tol,
            reg,
        ),
        ("max_iters", n, 0, tol, reg),
        ("tol NaN", n, it, f64::NAN, reg),
        ("tol -1", n, it, -1.0, reg),
        ("reg (λ) inf", n, it, tol, f64::INFINITY),
        ("reg (λ) -0.5", n, it, tol, -0.5),
    ];
    for (want, n, max_iters, tol, reg) in refused {
        let cfg = SyntheticConfig {
            n,
            max_iters,
            tol,
            reg,
            ..small_study()
        };
        let err = run_study(&cfg).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
        if n == base.n {
            let land = LandscapeConfig {
                max_iters,
                tol,
                reg,
                ..LandscapeConfig::default()
            };
            let err = compute_paths(&land).unwrap_err().to_string();
            assert!(err.contains(want), "landscape, {want}: {err}");
        }
    }
    let too_many_seeds = SyntheticConfig {
        seeds: 1_000_000_000_000,
        ..small_study()
    };
    let err = run_study(&too_many_seeds).unwrap_err().to_string();
    assert!(
        err.contains("seeds = 1000000000000 must be at most"),
        "{err}"
    );
    assert!(Method::parse("adamw_typo").is_err());
    assert_eq!(Method::parse("random_bcd").unwrap(), Method::RandomBcd);
}

#[test]
fn random_methods_are_reproducible_per_seed() {
    let p = Example1::draw(4, &mut mofo::experiments::synthetic::instance_rng(7)).unwrap();
    for method in [Method::RandomBcd, Method::Hft] {
        let cfg = RunConfig {
            lr: 1e-2,
            seed: 3,
            ..RunConfig::default()
        };
        let a = run_method(&p, method, &cfg).unwrap();
        let b = run_method(&p, method, &cfg).unwrap();
        assert_eq!(a, b, "{method:?}");
        let c = run_method(&p, method, &RunConfig { seed: 4, ..cfg }).unwrap();
        assert_ne!(a.theta, c.theta, "{method:?}: another seed, another path");
    }
}

#[test]
fn landscape_paths_match_theorem_2_and_files_are_written() {
    let cfg = LandscapeConfig {
        max_iters: 10_000,
        ..LandscapeConfig::default()
    };
    let paths = compute_paths(&cfg).unwrap();
    assert_eq!(paths.len(), 5);
    let end = |name: &str| {
        paths
            .iter()
            .find(|t| t.name.starts_with(name))
            .unwrap_or_else(|| panic!("no path {name}"))
            .end()
    };
    // MoFO: one coordinate (the smaller index on the tie), to (1, 0).
    let m = end("MoFO");
    assert_eq!(m[1], 0.0);
    assert!((m[0] - 1.0).abs() < 1e-2, "{m:?}");
    // Adam: along the diagonal toward (1, 1).
    let a = end("Adam");
    assert!((a[0] - a[1]).abs() < 1e-9 && a[0] > 0.9, "{a:?}");
    assert!(Example1::pre_loss(&a) > Example1::pre_loss(&m) + 0.3);
    // LoRA stays on its line.
    let l = end("rank-1 LoRA");
    assert!((l[1] - cfg.lora_slope * l[0]).abs() < 1e-12);

    let dir = std::env::temp_dir().join(format!("mofo-landscape-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("landscape.png");
    let p = problem(&cfg).unwrap();
    draw_png(&p, &paths, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let csv = paths_csv(&p, &paths);
    let rows = csv.lines().count() - 1;
    assert_eq!(rows, paths.iter().map(|t| t.points.len()).sum::<usize>());
    std::fs::remove_dir_all(&dir).unwrap();
}
