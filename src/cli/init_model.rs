//! `mofo init-model`: a randomly initialised Llama model written in Hugging
//! Face format (`config.json` + `model.safetensors`, f32), deterministic in
//! the seed. Initialisation as transformers does it: N(0, initializer_range²)
//! for linear and embedding weights, ones for RMSNorm weights
//! (see `mofo::model::init`).

use std::path::PathBuf;

use super::CliResult;
use crate::model::{HfConfig, LlamaModel};

/// Arguments of `mofo init-model`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Hugging Face Llama `config.json` (missing optional fields take
    /// transformers' defaults; unsupported features are rejected).
    #[arg(long)]
    pub config: PathBuf,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created if needed; existing files are replaced).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `mofo init-model`.
pub fn run(args: Args) -> CliResult {
    let hf = HfConfig::from_file(&args.config)?;
    let model = LlamaModel::<f32>::init(hf.model, hf.extras, args.seed)?;
    model.save(&args.out)?;
    println!(
        "wrote {} ({} parameters, seed {})",
        args.out.display(),
        model.config.num_parameters(),
        args.seed
    );
    Ok(())
}
