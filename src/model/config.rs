//! The Llama model's configuration and its parameter layout.
//!
//! Parameter names and shapes are Hugging Face's (`LlamaForCausalLM`):
//!
//! ```text
//! model.embed_tokens.weight                      [vocab, hidden]
//! model.layers.{i}.input_layernorm.weight        [hidden]
//! model.layers.{i}.self_attn.q_proj.weight       [heads·head_dim, hidden]
//! model.layers.{i}.self_attn.k_proj.weight       [kv_heads·head_dim, hidden]
//! model.layers.{i}.self_attn.v_proj.weight       [kv_heads·head_dim, hidden]
//! model.layers.{i}.self_attn.o_proj.weight       [hidden, heads·head_dim]
//! model.layers.{i}.post_attention_layernorm.weight [hidden]
//! model.layers.{i}.mlp.gate_proj.weight          [intermediate, hidden]
//! model.layers.{i}.mlp.up_proj.weight            [intermediate, hidden]
//! model.layers.{i}.mlp.down_proj.weight          [hidden, intermediate]
//! model.norm.weight                              [hidden]
//! lm_head.weight                                 [vocab, hidden]   (absent when tied)
//! ```

/// The architecture hyperparameters of a Llama model (the subset of Hugging
/// Face's `LlamaConfig` this crate implements).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model (residual stream) width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when < heads).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding base θ.
    pub rope_theta: f64,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest sequence the model is meant for.
    pub max_position_embeddings: usize,
}

impl LlamaConfig {
    /// Name of layer `i`'s parameter with the given suffix
    /// (e.g. `self_attn.q_proj.weight`).
    pub fn layer_param(i: usize, suffix: &str) -> String {
        format!("model.layers.{i}.{suffix}")
    }

    /// Every parameter's Hugging Face name and shape, in a fixed order
    /// (embedding, layers in order, final norm, lm_head if untied).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let m = self.intermediate_size;
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        for i in 0..self.num_hidden_layers {
            let l = |s: &str| Self::layer_param(i, s);
            out.push((l("input_layernorm.weight"), vec![h]));
            out.push((l("self_attn.q_proj.weight"), vec![q, h]));
            out.push((l("self_attn.k_proj.weight"), vec![kv, h]));
            out.push((l("self_attn.v_proj.weight"), vec![kv, h]));
            out.push((l("self_attn.o_proj.weight"), vec![h, q]));
            out.push((l("post_attention_layernorm.weight"), vec![h]));
            out.push((l("mlp.gate_proj.weight"), vec![m, h]));
            out.push((l("mlp.up_proj.weight"), vec![m, h]));
            out.push((l("mlp.down_proj.weight"), vec![h, m]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![self.vocab_size, h]));
        }
        out
    }

    /// Total number of parameters.
    pub fn num_parameters(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}
