//! Fuzz target bodies: every parser of outside input, fed arbitrary bytes.
//!
//! Each `pub fn <target>(data: &[u8])` parses `data` through this crate's own
//! loader (not only the third-party crate underneath) and, when the parse
//! succeeds, exercises what a caller does next (read every tensor, encode a
//! text, re-serialize). A target must never panic, hang or allocate more than
//! the input justifies: any of these is a finding. Where a value parses, the
//! targets also check a round trip
//!
//! ```text
//! parse(write(parse(bytes))) == parse(bytes)
//! ```
//!
//! (bitwise for floats), so a writer that emits something its own reader
//! rejects or reads differently is a finding too.
//!
//! The `fuzz/` crate (cargo-fuzz, libFuzzer) wraps each body in a three-line
//! target; `tests/fuzz_smoke.rs` runs every body over the seed corpus plus
//! deterministic mutations in CI. [`TARGETS`] lists them by name and
//! [`seeds`] generates seed inputs with the crate's own writers.

use std::path::Path;

use crate::cli::forgetting::parse_experiment;
use crate::cli::forward::parse_input_ids;
use crate::data::text_file::text_data_from_bytes;
use crate::experiments::forgetting::ForgettingConfig;
use crate::model::hf_config::HfConfig;
use crate::model::safetensors_io::{
    params_from_file, params_to_tensors, serialize_tensors, OutTensor,
};
use crate::model::{HfExtras, LlamaConfig, LlamaModel, SafetensorsFile};
use crate::optim::trace::Trace;
use crate::optim::{
    Adam, Base, Filter, Lion, Momentum, NAdam, NoFilter, Optimizer, OptimizerSpec, Pull,
};
use crate::tokenizer::{ByteTokenizer, HfTokenizer, Tokenizer};
use crate::train::TrainState;
use crate::ParamStore;

/// A fuzz target body: parses arbitrary bytes, never panics.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` wrapper
/// and its seed directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("config_json", config_json),
    ("safetensors_weights", safetensors_weights),
    ("tokenizer_json", tokenizer_json),
    ("token_ids_json", token_ids_json),
    ("text_data", text_data),
    ("optim_trace", optim_trace),
    ("optim_state", optim_state),
    ("optim_spec", optim_spec),
    ("experiment_file", experiment_file),
    ("checkpoint", checkpoint),
];

/// The tiny architecture the weight and token-id targets check against:
/// 1 layer, hidden 4, 2 query heads sharing 1 key/value head of width 2,
/// MLP 4, vocabulary 6, untied (`tied` = false) or tied embeddings.
pub fn tiny_config(tied: bool) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 6,
        hidden_size: 4,
        intermediate_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 16,
    }
}

/// `config.json` through [`HfConfig::from_json_str`] and
/// [`LlamaConfig::from_hf_json`]; an accepted config must re-serialize to
/// text that parses back to the same config, and its parameter layout must
/// be computable.
pub fn config_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = HfConfig::from_json_str(text);
    let model = LlamaConfig::from_hf_json(text);
    assert_eq!(parsed.is_ok(), model.is_ok(), "the two entry points agree");
    if let Ok(cfg) = parsed {
        let again = HfConfig::from_json_str(&cfg.to_json_string())
            .expect("a written config.json parses back");
        assert!(same_hf_config(&cfg, &again), "config.json round trip");
        cfg.validate().expect("a parsed config validates");
        // The layout is bounded by the parser's size limit: cheap to list.
        let n = cfg.model.param_shapes().len();
        assert_eq!(
            n,
            2 + 9 * cfg.model.num_hidden_layers + usize::from(!cfg.model.tie_word_embeddings)
        );
    }
}

/// Equality with floats compared bitwise (NaN never parses, but be exact).
fn same_hf_config(a: &HfConfig, b: &HfConfig) -> bool {
    let (x, y) = (&a.model, &b.model);
    x.rms_norm_eps.to_bits() == y.rms_norm_eps.to_bits()
        && x.rope_theta.to_bits() == y.rope_theta.to_bits()
        && a.extras.initializer_range.to_bits() == b.extras.initializer_range.to_bits()
        && a == b
}

/// `model.safetensors` through [`SafetensorsFile::from_bytes`]: every
/// tensor's shape, dtype and values (as f32 and as i64), then
/// [`params_from_file`] against both [`tiny_config`]s; accepted parameters
/// must survive a write/read round trip bit for bit.
pub fn safetensors_weights(data: &[u8]) {
    let path = Path::new("<fuzz>/model.safetensors");
    let Ok(file) = SafetensorsFile::from_bytes(path, data.to_vec()) else {
        return;
    };
    let _ = file.metadata().len();
    for name in file.names() {
        let shape = file
            .shape(name)
            .expect("a listed name has a shape")
            .to_vec();
        let _ = file.dtype(name).expect("a listed name has a dtype");
        if let Ok(values) = file.read_float::<f32>(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
        if let Ok(values) = file.read_float::<f64>(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
        if let Ok(values) = file.read_i64(name) {
            assert_eq!(values.shape(), shape.as_slice());
        }
    }
    for tied in [false, true] {
        let cfg = tiny_config(tied);
        let Ok(params) = params_from_file::<f32>(&file, &cfg) else {
            continue;
        };
        let tensors = params_to_tensors(&cfg, &params, "").expect("loaded params fit their config");
        let bytes = serialize_tensors(&tensors).expect("loaded params serialize");
        let again = SafetensorsFile::from_bytes(path, bytes).expect("written weights parse back");
        let back = params_from_file::<f32>(&again, &cfg).expect("written weights load back");
        for (a, b) in params.iter().zip(back.iter()) {
            assert_eq!(a.name, b.name);
            let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.as_slice()), bits(b.as_slice()), "weights round trip");
        }
    }
}

/// `tokenizer.json` through [`HfTokenizer::from_bytes`]; an accepted
/// tokenizer encodes a short text and decodes the ids back without error
/// or panic (errors are fine, panics are not).
pub fn tokenizer_json(data: &[u8]) {
    let Ok(tok) = HfTokenizer::from_bytes(data) else {
        return;
    };
    let vocab = tok.vocab_size();
    let _ = (tok.bos_id(), tok.eos_id());
    for text in ["Hello world! abc", "", "ünïcödé 123 \n\t<s>"] {
        if let Ok(ids) = tok.encode(text) {
            let _ = tok.decode(&ids);
        }
    }
    let _ = tok.decode(&[0, 1, 2, u32::MAX]);
    if vocab > 0 {
        let _ = tok.decode(&[(vocab - 1) as u32]);
    }
}

/// The token-id JSON of `mofo forward --input-ids` through
/// [`parse_input_ids`] (vocabulary 6, at most 16 positions); accepted
/// batches are rectangular, in vocabulary and of a valid length.
pub fn token_ids_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = tiny_config(false);
    if let Ok(ids) = parse_input_ids(text, &cfg) {
        let t = ids[0].len();
        assert!((2..=cfg.max_position_embeddings).contains(&t));
        assert!(ids.iter().all(|s| s.len() == t));
        assert!(ids
            .iter()
            .flatten()
            .all(|&id| (id as usize) < cfg.vocab_size));
    }
}

/// User text (`mofo train --data FILE.txt`): arbitrary bytes through
/// [`text_data_from_bytes`] with the byte tokenizer (vocabulary 259,
/// sequences of 8, 10 % validation), and through the byte tokenizer (must
/// round-trip valid UTF-8 exactly) and a small word-level `tokenizer.json`
/// directly.
pub fn text_data(data: &[u8]) {
    let encode = |t: &str| ByteTokenizer.encode(t).map_err(|e| e.to_string());
    let path = Path::new("<fuzz>/data.txt");
    if let Ok(d) = text_data_from_bytes(data.to_vec(), path, &encode, 259, 8, 0.1) {
        assert!(d.train.len() >= 8, "at least one training window");
        let _ = d.train_batches(2, 8, 1);
        let _ = d.validation_batches(2, 8);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let bytes = ByteTokenizer;
    if let Ok(ids) = bytes.encode(text) {
        assert!(ids.iter().all(|&i| (i as usize) < bytes.vocab_size()));
        assert_eq!(bytes.decode(&ids).expect("own ids decode"), text);
    }
    thread_local! {
        static WORDS: HfTokenizer = HfTokenizer::from_bytes(word_level_tokenizer_json().as_bytes())
            .expect("the built-in word-level tokenizer parses");
    }
    WORDS.with(|tok| {
        if let Ok(ids) = tok.encode(text) {
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            let _ = tok.decode(&ids);
        }
    });
}

/// `mofo-trace/1` optimizer traces (what `mofo replay` reads) through
/// [`Trace::parse`]; an accepted trace that is small (≤ 16 steps, ≤ 4096
/// values per step) is also run in f32 and compared with its expected values,
/// which must not panic whatever the hyperparameters.
pub fn optim_trace(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(trace) = Trace::parse(text) else {
        return;
    };
    assert_eq!(trace.init.len(), trace.blocks.len());
    let per_step: usize = trace.init.iter().map(Vec::len).sum();
    if trace.grads.len() <= 16 && per_step <= 4096 {
        if let Ok(run) = trace.run::<f32>() {
            assert_eq!(run.len(), trace.grads.len());
            let _ = trace.compare(&run);
        }
    }
}

/// The parameters the optimizer-state targets are built for: `w` [3, 4]
/// and `b` \[4\] (values 0.1·i).
pub fn tiny_params() -> ParamStore<f32> {
    let mut p = ParamStore::new();
    p.insert_vec("w", &[3, 4], (0..12).map(|i| 0.1 * i as f32).collect())
        .expect("fresh name");
    p.insert_vec("b", &[4], (0..4).map(|i| 0.1 * i as f32).collect())
        .expect("fresh name");
    p
}

/// MoFO (momentum filter, α = 0.5) on Adam with an L2 pull to θ_pre and
/// selection tracking: the state file with every optional part.
fn state_mofo() -> Optimizer<Momentum, Adam, f32> {
    let mut spec = OptimizerSpec::method("mofo", 1e-2, 0.5, 0).expect("known method");
    spec.track_selection = true;
    spec.pull = Some(Pull::L2 { lambda: 0.1 });
    Optimizer::new(
        Momentum::new(0.5),
        Adam::new(1e-2),
        spec.config(),
        &tiny_params(),
    )
    .expect("valid optimizer")
}

/// NAdam (scalar base state μ-product) without filter.
fn state_nadam() -> Optimizer<NoFilter, NAdam, f32> {
    let spec = OptimizerSpec::method("nadam", 1e-2, 0.5, 0).expect("known method");
    Optimizer::new(NoFilter, NAdam::default(), spec.config(), &tiny_params())
        .expect("valid optimizer")
}

/// Lion with the momentum filter (one buffer).
fn state_lion() -> Optimizer<Momentum, Lion, f32> {
    let spec = OptimizerSpec::method("lion_mofo", 1e-3, 0.5, 0).expect("known method");
    Optimizer::new(
        Momentum::new(0.5),
        Lion::default(),
        spec.config(),
        &tiny_params(),
    )
    .expect("valid optimizer")
}

/// Loads state bytes into `opt`; on success takes one step, which must not
/// panic whatever the loaded counters and buffers hold.
fn load_and_step<F: Filter, B: Base>(mut opt: Optimizer<F, B, f32>, bytes: &[u8]) {
    if opt.load_bytes(bytes).is_ok() {
        let mut params = tiny_params();
        let mut grads = params.zeros_like();
        for p in grads.iter_mut() {
            p.as_slice_mut().iter_mut().for_each(|g| *g = 0.5);
        }
        let _ = opt.step(&mut params, &grads);
    }
}

/// Optimizer state files (`optimizer.state`, [`Optimizer::save`]) through
/// [`Optimizer::load_bytes`] into three optimizers (MoFO-Adam with pull and
/// tracking, NAdam, MoFO-Lion), then one step. The first byte is a switch:
/// when odd, the trailing FNV-1a checksum is recomputed over the rest, so
/// that mutations get past the checksum into the metadata and payload
/// checks.
pub fn optim_state(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flag & 1 == 1 && bytes.len() >= 8 {
        let body = bytes.len() - 8;
        // The optimizer state file's checksum.
        let sum = crate::io::fnv::fnv1a64(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
    }
    load_and_step(state_mofo(), &bytes);
    load_and_step(state_nadam(), &bytes);
    load_and_step(state_lion(), &bytes);
}

/// Optimizer spec files (the optimizer part of experiment files) through
/// [`OptimizerSpec::from_json`] and [`OptimizerSpec::from_toml`]; an
/// accepted spec is built for [`tiny_params`] and takes two steps.
pub fn optim_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for spec in [
        OptimizerSpec::from_json(text),
        OptimizerSpec::from_toml(text),
    ] {
        let Ok(spec) = spec else {
            continue;
        };
        let mut params = tiny_params();
        let Ok(mut opt) = spec.build(&params) else {
            continue;
        };
        let mut grads = params.zeros_like();
        for p in grads.iter_mut() {
            p.as_slice_mut().iter_mut().for_each(|g| *g = -0.25);
        }
        for _ in 0..2 {
            let _ = opt.step(&mut params, &grads);
        }
    }
}

/// Experiment files of `mofo forgetting --experiment` (TOML when the first
/// byte is odd, JSON otherwise; the rest is the text) through
/// [`parse_experiment`] and [`ForgettingConfig::merged`] onto the quick
/// preset; an accepted configuration lists its runs.
pub fn experiment_file(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = Path::new("<fuzz>/experiment");
    let Ok(value) = parse_experiment(text, flag & 1 == 1, path) else {
        return;
    };
    if let Ok(cfg) = ForgettingConfig::quick_preset().merged(value) {
        cfg.validate().expect("a merged configuration validates");
        let _ = cfg.runs();
    }
}

/// The separator between the files of a [`checkpoint`] input.
pub const CHECKPOINT_SEPARATOR: &[u8] = b"\n--MOFO-CHECKPOINT-PART--\n";

/// A training checkpoint (`trainer.json`, `model/config.json`,
/// `model/model.safetensors`, `optimizer.state`, in this order, joined by
/// [`CHECKPOINT_SEPARATOR`]): the loop state, the weights against the
/// config read from the same checkpoint, and the optimizer state into a
/// MoFO-Adam optimizer built for those weights.
pub fn checkpoint(data: &[u8]) {
    let parts = split_parts(data);
    if let Ok(state) = serde_json::from_slice::<TrainState>(parts[0]) {
        let text = serde_json::to_vec(&state).expect("state serializes");
        let again: TrainState = serde_json::from_slice(&text).expect("trainer.json round trip");
        assert_eq!(again.step, state.step);
    }
    let (Some(config), Some(weights)) = (parts.get(1), parts.get(2)) else {
        return;
    };
    let Ok(Ok(cfg)) = std::str::from_utf8(config).map(HfConfig::from_json_str) else {
        return;
    };
    let path = Path::new("<fuzz>/model/model.safetensors");
    let Ok(file) = SafetensorsFile::from_bytes(path, weights.to_vec()) else {
        return;
    };
    let Ok(params) = params_from_file::<f32>(&file, &cfg.model) else {
        return;
    };
    if let Some(state) = parts.get(3) {
        let spec = OptimizerSpec::method("mofo", 1e-3, 0.1, 0).expect("known method");
        if let Ok(mut opt) =
            Optimizer::new(Momentum::new(0.1), Adam::new(1e-3), spec.config(), &params)
        {
            let _ = opt.load_bytes(state);
        }
    }
}

fn split_parts(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest
        .windows(CHECKPOINT_SEPARATOR.len())
        .position(|w| w == CHECKPOINT_SEPARATOR)
    {
        parts.push(&rest[..i]);
        rest = &rest[i + CHECKPOINT_SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// The bytes an optimizer writes with [`Optimizer::save`] after `steps`
/// steps (through a temporary file: `save` writes atomically to a path).
fn saved_state<F: Filter, B: Base>(
    mut opt: Optimizer<F, B, f32>,
    steps: usize,
    tag: &str,
) -> Vec<u8> {
    let mut params = tiny_params();
    take_steps(&mut opt, &mut params, steps);
    state_bytes(&opt, tag)
}

fn take_steps<F: Filter, B: Base>(
    opt: &mut Optimizer<F, B, f32>,
    params: &mut ParamStore<f32>,
    steps: usize,
) {
    let mut grads = params.zeros_like();
    for (i, p) in grads.iter_mut().enumerate() {
        p.as_slice_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(j, g)| *g = ((i * 7 + j) % 5) as f32 - 2.0);
    }
    for _ in 0..steps {
        opt.step(params, &grads).expect("finite step");
    }
}

/// The state file bytes of `opt` (through a temporary file).
fn state_bytes<F: Filter, B: Base>(opt: &Optimizer<F, B, f32>, tag: &str) -> Vec<u8> {
    let path =
        std::env::temp_dir().join(format!("mofo-fuzz-seed-{}-{tag}.state", std::process::id()));
    opt.save(&path).expect("temp dir writable");
    let bytes = std::fs::read(&path).expect("just written");
    let _ = std::fs::remove_file(&path);
    bytes
}

/// A word-level `tokenizer.json` (lowercasing, whitespace pre-tokenizer,
/// `[UNK]`, `<s>`, `</s>`): a seed for [`tokenizer_json`].
pub fn word_level_tokenizer_json() -> String {
    let added = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "[UNK]"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel",
            "vocab": {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "!": 5},
            "unk_token": "[UNK]"}
    })
    .to_string()
}

/// A byte-pair-encoding `tokenizer.json` with two merges and a byte-level
/// pre-tokenizer and decoder: a seed for [`tokenizer_json`].
pub fn bpe_tokenizer_json() -> String {
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false,
            "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "Ġ": 6},
            "merges": ["a b", "ab c"]}
    })
    .to_string()
}

/// A two-block, two-step MoFO-Adam trace in the `mofo-trace/1` format.
pub fn tiny_trace_json() -> String {
    serde_json::json!({
        "format": "mofo-trace/1", "name": "tiny",
        "base": {"kind": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": 0.0, "amsgrad": false},
        "filter": {"kind": "momentum", "fraction": 0.5, "weight_decay_scope": "selected"},
        "lr_schedule": [0.01, 0.005],
        "blocks": [{"name": "w", "shape": [2, 2], "filtered": true},
                   {"name": "b", "shape": [3], "filtered": false}],
        "init": {"w": [0.1, -0.2, 0.3, -0.4], "b": [1.0, 2.0, 3.0]},
        "grads": [{"w": [0.5, 0.1, -0.3, 0.2], "b": [0.1, 0.1, 0.1]},
                  {"w": [-0.5, 0.2, 0.3, 0.0], "b": [0.0, -0.1, 0.2]}],
        "expected": [{"w": [0.09, -0.2, 0.31, -0.4], "b": [0.99, 1.99, 2.99]},
                     {"w": [0.095, -0.205, 0.305, -0.4], "b": [0.99, 1.995, 2.985]}]
    })
    .to_string()
}

/// Seed inputs for target `name`, written by this crate's own writers
/// (configs and weights of the [`tiny_config`] models, the tokenizers
/// above, token-id batches); empty for an unknown name.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let models = || {
        [false, true].map(|tied| {
            let extras = HfExtras {
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                ..HfExtras::default()
            };
            LlamaModel::<f32>::init(tiny_config(tied), extras, 7).expect("tiny config is valid")
        })
    };
    match name {
        "config_json" => models()
            .iter()
            .map(|m| m.hf_config().to_json_string().into_bytes())
            .collect(),
        "safetensors_weights" => {
            let mut out: Vec<Vec<u8>> = models()
                .iter()
                .map(|m| {
                    let tensors = params_to_tensors(&m.config, &m.params, "").expect("own params");
                    serialize_tensors(&tensors).expect("own params serialize")
                })
                .collect();
            let ids = OutTensor::i64("input_ids", &[2, 3], vec![0, 1, 2, 3, 4, 5]);
            out.push(serialize_tensors(&[ids]).expect("i64 tensor serializes"));
            out
        }
        "tokenizer_json" => vec![
            word_level_tokenizer_json().into_bytes(),
            bpe_tokenizer_json().into_bytes(),
        ],
        "token_ids_json" => vec![
            b"[[1, 2, 3, 4], [5, 0, 1, 2]]".to_vec(),
            b"[[0,5]]".to_vec(),
        ],
        "optim_trace" => vec![tiny_trace_json().into_bytes()],
        "optim_state" => [
            saved_state(state_mofo(), 3, "mofo"),
            saved_state(state_nadam(), 2, "nadam"),
            saved_state(state_lion(), 1, "lion"),
        ]
        .into_iter()
        .flat_map(|b| [[&[1u8][..], &b].concat(), [&[0u8][..], &b].concat()])
        .collect(),
        "optim_spec" => {
            let mut spec = OptimizerSpec::method("mofo", 1e-3, 0.1, 3).expect("known method");
            spec.track_selection = true;
            let json = serde_json::to_string_pretty(&spec).expect("spec serializes");
            let toml = toml::to_string(&spec).unwrap_or_default();
            let hft = OptimizerSpec::method("hft", 1e-3, 0.1, 3).expect("known method");
            vec![
                json.into_bytes(),
                toml.into_bytes(),
                serde_json::to_vec(&hft).expect("spec serializes"),
            ]
        }
        "experiment_file" => {
            let json = serde_json::json!({"finetune": {"steps": 20}, "methods": ["adam", "mofo"]});
            vec![
                [b"\x00".as_slice(), json.to_string().as_bytes()].concat(),
                [
                    b"\x01".as_slice(),
                    b"[finetune]\nsteps = 30\nbatch_size = 4\n\n[model]\nhidden_size = 32\n",
                ]
                .concat(),
                [
                    b"\x00".as_slice(),
                    &serde_json::to_vec(&ForgettingConfig::quick_preset()).expect("serializes"),
                ]
                .concat(),
            ]
        }
        "checkpoint" => models()
            .iter()
            .map(|m| {
                let state = TrainState {
                    step: 3,
                    skipped: 1,
                    losses: vec![Some(2.5), None, Some(2.25)],
                    ..TrainState::default()
                };
                let tensors = params_to_tensors(&m.config, &m.params, "").expect("own params");
                let weights = serialize_tensors(&tensors).expect("own params serialize");
                let spec = OptimizerSpec::method("mofo", 1e-3, 0.1, 0).expect("known method");
                let mut opt = Optimizer::new(
                    Momentum::new(0.1),
                    Adam::new(1e-3),
                    spec.config(),
                    &m.params,
                )
                .expect("valid optimizer");
                take_steps(&mut opt, &mut m.params.clone(), 1);
                [
                    serde_json::to_vec_pretty(&state).expect("serializes"),
                    m.hf_config().to_json_string().into_bytes(),
                    weights,
                    state_bytes(&opt, "ckpt"),
                ]
                .join(CHECKPOINT_SEPARATOR)
            })
            .collect(),
        "text_data" => vec![
            b"Hello world! hello mofo.\nSecond line\twith tabs.\n".to_vec(),
            "ünïcödé — 日本語 🦀\r\n".as_bytes().to_vec(),
        ],
        _ => Vec::new(),
    }
}
