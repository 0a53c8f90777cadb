//! `mofo generate`: continue a prompt with a model, greedily (temperature 0)
//! or by temperature sampling with an optional top-k cut, using the
//! key/value-cached inference forward (`mofo::model::generate`).
//!
//! The prompt is given as token ids (`--prompt-ids 1,2,3`) or as text
//! (`--prompt TEXT`), encoded with `--tokenizer FILE`, else the model
//! directory's `tokenizer.json`, else the built-in byte tokenizer.
//! Generation stops at `--max-new-tokens`, at `max_position_embeddings`, or
//! before an end-of-sequence id (the config's `eos_token_id`, the tokenizer's
//! EOS, and any `--stop-id`; `--ignore-eos` keeps only `--stop-id`).

use std::path::{Path, PathBuf};

use super::CliResult;
use crate::model::generate::{generate_with, Decoder, Generation, Sampling};
use crate::model::LlamaModel;
use crate::tokenizer::{ByteTokenizer, HfTokenizer, Tokenizer};
use crate::Scalar;

/// Element type the model is computed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

/// Arguments of `mofo generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt as comma-separated token ids.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "prompt",
        conflicts_with = "prompt"
    )]
    pub prompt_ids: Option<Vec<u32>>,
    /// Prompt as text (encoded with the tokenizer).
    #[arg(long)]
    pub prompt: Option<String>,
    /// A Hugging Face tokenizer.json (default: MODEL/tokenizer.json if present,
    /// else the built-in byte tokenizer).
    #[arg(long, requires = "prompt")]
    pub tokenizer: Option<PathBuf>,
    /// Prepend the tokenizer's (or the config's) BOS id to the prompt.
    #[arg(long)]
    pub add_bos: bool,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Extra stop token ids (generation ends before them).
    #[arg(long, value_delimiter = ',')]
    pub stop_id: Vec<u32>,
    /// Do not stop at the config's or tokenizer's end-of-sequence id.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Element type of the computation.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Chooses the tokenizer for a text prompt.
fn load_tokenizer(args: &Args) -> CliResult<Box<dyn Tokenizer>> {
    let default = args.model.join("tokenizer.json");
    let path: Option<&Path> = match &args.tokenizer {
        Some(p) => Some(p),
        None if default.exists() => Some(&default),
        None => None,
    };
    Ok(match path {
        Some(p) => Box::new(HfTokenizer::from_file(p)?),
        None => Box::new(ByteTokenizer),
    })
}

fn run_typed<T: Scalar>(args: &Args) -> CliResult {
    let model = LlamaModel::<T>::load(&args.model)?;
    let tokenizer = match &args.prompt {
        Some(_) => Some(load_tokenizer(args)?),
        None => None,
    };
    let mut prompt: Vec<u32> = Vec::new();
    if args.add_bos {
        let bos = tokenizer
            .as_ref()
            .and_then(|t| t.bos_id())
            .or(model.extras.bos_token_id)
            .ok_or("--add-bos: neither the tokenizer nor the config has a BOS id")?;
        prompt.push(bos);
    }
    match (&args.prompt_ids, &args.prompt, &tokenizer) {
        (Some(ids), _, _) => prompt.extend(ids),
        (None, Some(text), Some(tok)) => prompt.extend(tok.encode(text)?),
        _ => return Err("give --prompt-ids or --prompt".into()),
    }
    if let Some(tok) = &tokenizer {
        if tok.vocab_size() > model.config.vocab_size {
            return Err(format!(
                "the tokenizer has {} ids but the model's vocabulary has only {}",
                tok.vocab_size(),
                model.config.vocab_size
            )
            .into());
        }
    }
    let mut stop = args.stop_id.clone();
    if !args.ignore_eos {
        stop.extend(&model.extras.eos_token_ids);
        stop.extend(tokenizer.as_ref().and_then(|t| t.eos_id()));
    }
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let decoder = Decoder::new(&model.config, &model.params)?;
    let Generation { tokens, stopped } =
        generate_with(&decoder, &prompt, args.max_new_tokens, &stop, &sampling)?;
    let text = match &tokenizer {
        Some(t) => Some(t.decode(&tokens)?),
        None => None,
    };
    if args.json {
        let out = serde_json::json!({
            "prompt_ids": prompt,
            "new_ids": tokens,
            "stopped": stopped,
            "text": text,
        });
        println!("{out}");
    } else {
        let ids: Vec<String> = tokens.iter().map(u32::to_string).collect();
        println!("new ids: {}", ids.join(","));
        if let Some(text) = text {
            println!("text: {text}");
        }
        let reason = if stopped {
            "stop token"
        } else {
            "length limit"
        };
        eprintln!("{} new tokens, ended on the {reason}", tokens.len());
    }
    Ok(())
}

/// Runs `mofo generate`.
pub fn run(args: Args) -> CliResult {
    match args.dtype {
        DtypeArg::F32 => run_typed::<f32>(&args),
        DtypeArg::F64 => run_typed::<f64>(&args),
    }
}
