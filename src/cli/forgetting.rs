//! `mofo forgetting`: the main job. Pre-trains a small Llama on a generated
//! world of facts (cached under `--cache`, reused while its configuration is
//! unchanged), fine-tunes it on a task of another domain with each method
//! under the same budget and schedule, and reports per method the fine-tune
//! accuracy, the retained knowledge, the rise of the held-out pre-training
//! loss, the distance to the pre-trained model and the share of entries
//! updated (see `mofo::experiments::forgetting`). Writes results.json,
//! results.csv, table.txt and PNG plots into `--out`; with `--seeds N`, runs
//! the experiment N times with its seeds moved by 0..N−1 (`--vary`), each
//! run's files in `--out/run-r`, and the medians, ranges and paired counts
//! against Adam over the runs in `--out/seeds.{txt,md,csv,json}`. With
//! `--resume`, keeps the runs and methods an interrupted invocation
//! finished.

use std::path::{Path, PathBuf};

use super::CliResult;
use crate::experiments::forgetting::{
    report, run_forgetting, run_forgetting_seeds, seeds, seeds_report, ForgettingConfig,
    MethodConfig, RunOptions, SeedScope,
};
use crate::io::write_atomic;
use crate::train::llama::LlamaBackend;

/// Arguments of `mofo forgetting`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The small preset: finishes in under 2 minutes on 2 cores (release build).
    #[arg(long)]
    pub quick: bool,
    /// Experiment file (TOML or JSON): model size, data, budgets, methods and
    /// their hyperparameters; merged key by key onto the preset.
    #[arg(long, value_name = "FILE")]
    pub experiment: Option<PathBuf>,
    /// Extra MoFO runs at these α, e.g. 0.05,0.1,0.2.
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub alpha_sweep: Vec<f64>,
    /// Run only these methods (comma-separated builder names).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub methods: Vec<String>,
    /// Override the number of fine-tuning steps.
    #[arg(long)]
    pub finetune_steps: Option<u64>,
    /// Override the fine-tuning learning rate.
    #[arg(long)]
    pub finetune_lr: Option<f64>,
    /// Override the number of pre-training steps.
    #[arg(long)]
    pub pretrain_steps: Option<u64>,
    /// Output directory.
    #[arg(long, default_value = "runs/forgetting")]
    pub out: PathBuf,
    /// Cache of pre-trained base models (one folder per configuration hash).
    #[arg(long, default_value = "runs/cache")]
    pub cache: PathBuf,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Run the experiment N times, run r with the seeds of `--vary` moved
    /// by r (run 0 is the plain run), and report the median and range of
    /// every measure over the runs and, per method, in how many runs it did
    /// better than Adam at the same learning rate.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
    /// Which seeds `--seeds` moves: `finetune` (the order of the fine-tuning
    /// batches; one pre-trained base for every run), `base` (the model's
    /// initialisation and the pre-training order: a base per run) or `all`
    /// (also the generated facts and task).
    #[arg(long, value_enum, default_value_t = SeedScope::Finetune, requires = "seeds")]
    pub vary: SeedScope,
    /// Keep what an interrupted invocation with the same configuration
    /// finished: a run whose results.json (in `--out`, or `--out/run-r`
    /// with `--seeds`) holds its configuration is kept whole, and of the
    /// others the methods their results.partial.json holds; only the rest
    /// is fine-tuned.
    #[arg(long)]
    pub resume: bool,
    /// Write the summary (`mofo-forgetting/1`; with `--seeds`,
    /// `mofo-forgetting-seeds/1`) to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars or progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print the resolved configuration (JSON) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Reads an experiment file (TOML by extension `.toml`, JSON otherwise).
pub fn read_experiment(path: &Path) -> CliResult<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read experiment file {}: {e}", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    parse_experiment(&text, is_toml, path)
}

/// Parses the text of an experiment file (see [`read_experiment`]; `path`
/// names it in messages only).
pub fn parse_experiment(text: &str, is_toml: bool, path: &Path) -> CliResult<serde_json::Value> {
    let v = if is_toml {
        let t: toml::Value = toml::from_str(text)
            .map_err(|e| format!("experiment file {} is not valid TOML: {e}", path.display()))?;
        serde_json::to_value(t)?
    } else {
        serde_json::from_str(text)
            .map_err(|e| format!("experiment file {} is not valid JSON: {e}", path.display()))?
    };
    if !v.is_object() {
        return Err(format!(
            "experiment file {} must hold a table/object",
            path.display()
        )
        .into());
    }
    Ok(v)
}

/// The configuration the arguments describe.
pub fn resolve_config(args: &Args) -> CliResult<ForgettingConfig> {
    let preset = if args.quick {
        ForgettingConfig::quick_preset()
    } else {
        ForgettingConfig::default_preset()
    };
    let mut cfg = match &args.experiment {
        Some(p) => preset
            .merged(read_experiment(p)?)
            .map_err(|e| format!("experiment file {}: {e}", p.display()))?,
        None => preset,
    };
    if !args.methods.is_empty() {
        let mut chosen = Vec::new();
        for name in &args.methods {
            let m = cfg
                .methods
                .iter()
                .find(|m| &m.name == name)
                .cloned()
                .unwrap_or_else(|| MethodConfig::named(name));
            chosen.push(m);
        }
        cfg.methods = chosen;
    }
    if !args.alpha_sweep.is_empty() {
        cfg.alpha_sweep = args.alpha_sweep.clone();
    }
    if let Some(s) = args.finetune_steps {
        cfg.finetune.steps = s;
        cfg.finetune.warmup_steps = cfg.finetune.warmup_steps.min(s.saturating_sub(1));
    }
    if let Some(lr) = args.finetune_lr {
        cfg.finetune.lr = lr;
    }
    if let Some(s) = args.pretrain_steps {
        cfg.pretrain.steps = s;
        cfg.pretrain.warmup_steps = cfg.pretrain.warmup_steps.min(s.saturating_sub(1));
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Runs `mofo forgetting`.
pub fn run(args: Args) -> CliResult {
    let cfg = resolve_config(&args)?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    super::init_threads(args.threads)?;
    let opts = RunOptions {
        out_dir: args.out.clone(),
        cache_dir: (!args.no_cache).then(|| args.cache.clone()),
        progress: !args.quiet,
        verbose: !args.quiet,
        resume: args.resume,
    };
    let (written, seconds, summary) = match args.seeds {
        None => {
            let results = run_forgetting(&cfg, &LlamaBackend, &opts)?;
            print!("{}", report::table(&results));
            let written = report::write_reports(&results, &args.out)?;
            let what = format!("{} files", written.len());
            (what, results.seconds, report::summary_json(&results))
        }
        Some(n) => {
            let runs = run_forgetting_seeds(&cfg, n, args.vary, &LlamaBackend, &opts)?;
            let summary = seeds::summarize(args.vary, &runs)?;
            print!("{}", seeds_report::table(&summary));
            let written = seeds_report::write_reports(&summary, &runs, &args.out)?;
            let what = format!(
                "{n} runs (run-0 … run-{}) and {} files",
                n - 1,
                written.len()
            );
            (what, summary.seconds, serde_json::to_value(&summary)?)
        }
    };
    if let Some(p) = &args.json {
        let s = serde_json::to_string_pretty(&summary)?;
        write_atomic(p, s.as_bytes()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if !args.quiet {
        eprintln!("wrote {written} to {} in {seconds:.1}s", args.out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> Result<super::Args, String> {
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Forgetting(a) => Ok(a),
            _ => Err("not forgetting".into()),
        }
    }

    #[test]
    fn seeds_and_vary_are_checked_by_the_parser() {
        let a = parse(&["mofo", "forgetting", "--seeds", "5", "--vary", "base"]).unwrap();
        assert_eq!((a.seeds, a.vary), (Some(5), super::SeedScope::Base));
        let a = parse(&["mofo", "forgetting", "--seeds", "2"]).unwrap();
        assert_eq!(a.vary, super::SeedScope::Finetune);
        let err = parse(&["mofo", "forgetting", "--seeds", "0"]).unwrap_err();
        assert!(err.contains("--seeds"), "{err}");
        let err = parse(&["mofo", "forgetting", "--vary", "all"]).unwrap_err();
        assert!(err.contains("--seeds"), "{err}");
        assert!(parse(&["mofo", "forgetting", "--seeds", "3", "--vary", "every"]).is_err());
        assert!(
            parse(&["mofo", "forgetting", "--seeds", "3", "--resume"])
                .unwrap()
                .resume
        );
        assert!(parse(&["mofo", "forgetting", "--resume"]).unwrap().resume);
    }
}
