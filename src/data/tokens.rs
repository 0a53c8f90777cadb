//! Token batches and the samplers that build them.
//!
//! A [`TokenBatch`] holds `input_ids` [batch, seq] and `labels` [batch, seq]
//! aligned with the inputs (the model shifts them: position t predicts
//! `labels[t + 1]`, Hugging Face's convention), with [`IGNORE`] (−100) where
//! no loss is taken (padding, prompts).
//!
//! Samplers draw the batch with index `i` (`i = step · accumulation + micro`)
//! from the ChaCha8 stream `(seed, purpose, i)` (see [`super::rng`]), so a
//! batch is a pure function of the seed and its index.
//!
//! - [`LmBatches`]: pre-training rows of `BOS s₁ \n s₂ \n …` of random
//!   sentences, cut at `seq_len`; loss on every token.
//! - [`QaBatches`]: fine-tuning rows `BOS q₁ a₁ EOS q₂ a₂ EOS … PAD…` packed
//!   with whole examples; loss on answers and their EOS only.
//! - [`StreamBatches`]: windows of `seq_len` tokens of one token stream at
//!   random offsets (a user's text file).

use ndarray::Array2;
use rand::Rng;

use super::rng::{derived_rng, stream};
use super::task::QaExample;
use super::DataError;

/// Label value of positions that carry no loss.
pub const IGNORE: i64 = -100;

/// Turns text into token ids (implemented for closures; the crate's
/// tokenizers are adapted to it).
pub trait Encode {
    /// The token ids of `text`.
    fn encode(&self, text: &str) -> Vec<u32>;
}

impl<F: Fn(&str) -> Vec<u32>> Encode for F {
    fn encode(&self, text: &str) -> Vec<u32> {
        self(text)
    }
}

/// The special token ids the samplers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence, put at the start of every row (if any).
    pub bos: Option<u32>,
    /// End of sequence, after every answer.
    pub eos: u32,
    /// Padding (never a target).
    pub pad: u32,
}

/// A batch of token ids and aligned labels.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    /// Input token ids [batch, seq].
    pub input_ids: Array2<u32>,
    /// Labels [batch, seq], [`IGNORE`] where no loss is taken.
    pub labels: Array2<i64>,
}

impl TokenBatch {
    /// Builds a batch from rows of (ids, labels), padding to the longest row.
    pub fn from_rows(rows: &[(Vec<u32>, Vec<i64>)], pad: u32) -> Self {
        let b = rows.len();
        let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut input_ids = Array2::from_elem((b, t), pad);
        let mut labels = Array2::from_elem((b, t), IGNORE);
        for (i, (ids, lab)) in rows.iter().enumerate() {
            for (j, (&x, &l)) in ids.iter().zip(lab).enumerate() {
                input_ids[[i, j]] = x;
                labels[[i, j]] = l;
            }
        }
        Self { input_ids, labels }
    }

    /// Number of label positions that carry loss (after the model's shift:
    /// positions 1.. whose label is not [`IGNORE`]).
    pub fn target_count(&self) -> usize {
        self.labels
            .rows()
            .into_iter()
            .map(|r| r.iter().skip(1).filter(|&&l| l != IGNORE).count())
            .sum()
    }
}

/// Something that yields the training batch with a given index.
pub trait BatchSource: Sync {
    /// The batch with index `index` (a pure function of the index).
    fn batch(&self, index: u64) -> TokenBatch;
}

/// Pre-training batches from tokenized sentences.
#[derive(Clone, Debug)]
pub struct LmBatches {
    /// Tokenized sentences, each followed by the separator ("\n").
    pub sentences: Vec<Vec<u32>>,
    /// Special tokens.
    pub special: SpecialTokens,
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl LmBatches {
    /// Tokenizes `sentences` (each followed by "\n").
    pub fn new(
        encoder: &dyn Encode,
        sentences: &[String],
        special: SpecialTokens,
        batch_size: usize,
        seq_len: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if sentences.is_empty() {
            return Err(DataError::Empty("pre-training sentences".into()));
        }
        check_shape(batch_size, seq_len)?;
        Ok(Self {
            sentences: sentences
                .iter()
                .map(|s| encoder.encode(&format!("{s}\n")))
                .collect(),
            special,
            batch_size,
            seq_len,
            seed,
        })
    }

    /// Fixed evaluation batches: every sentence once, packed in order into
    /// rows (a sentence is not split; padding is ignored).
    pub fn eval_batches(&self) -> Vec<TokenBatch> {
        let mut rows = Vec::new();
        let mut cur = self.row_start();
        for s in &self.sentences {
            if cur.0.len() + s.len() > self.seq_len
                && cur.0.len() > usize::from(self.special.bos.is_some())
            {
                rows.push(std::mem::replace(&mut cur, self.row_start()));
            }
            let take = s.len().min(self.seq_len - cur.0.len());
            cur.0.extend_from_slice(&s[..take]);
            cur.1.extend(s[..take].iter().map(|&x| x as i64));
        }
        if cur.0.len() > usize::from(self.special.bos.is_some()) {
            rows.push(cur);
        }
        rows.chunks(self.batch_size)
            .map(|c| TokenBatch::from_rows(c, self.special.pad))
            .collect()
    }

    fn row_start(&self) -> (Vec<u32>, Vec<i64>) {
        match self.special.bos {
            Some(b) => (vec![b], vec![IGNORE]),
            None => (Vec::new(), Vec::new()),
        }
    }
}

impl BatchSource for LmBatches {
    fn batch(&self, index: u64) -> TokenBatch {
        let mut rng = derived_rng(self.seed, stream::LM_BATCH, index);
        let rows: Vec<_> = (0..self.batch_size)
            .map(|_| {
                let mut row = self.row_start();
                while row.0.len() < self.seq_len {
                    let s = &self.sentences[rng.random_range(0..self.sentences.len())];
                    let take = s.len().min(self.seq_len - row.0.len());
                    row.0.extend_from_slice(&s[..take]);
                    row.1.extend(s[..take].iter().map(|&x| x as i64));
                }
                row
            })
            .collect();
        TokenBatch::from_rows(&rows, self.special.pad)
    }
}

/// A tokenized question/answer example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaTokens {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Answer tokens followed by EOS.
    pub answer: Vec<u32>,
}

/// Tokenizes examples (answers followed by `eos`).
pub fn tokenize_qa(encoder: &dyn Encode, examples: &[QaExample], eos: u32) -> Vec<QaTokens> {
    examples
        .iter()
        .map(|e| {
            let mut answer = encoder.encode(&e.answer);
            answer.push(eos);
            QaTokens {
                prompt: encoder.encode(&e.prompt),
                answer,
            }
        })
        .collect()
}

/// Fine-tuning batches of packed question/answer examples.
#[derive(Clone, Debug)]
pub struct QaBatches {
    /// The tokenized pool.
    pub examples: Vec<QaTokens>,
    /// Special tokens.
    pub special: SpecialTokens,
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row (at most).
    pub seq_len: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl QaBatches {
    /// Checks that every example fits in one row.
    pub fn new(
        examples: Vec<QaTokens>,
        special: SpecialTokens,
        batch_size: usize,
        seq_len: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        if examples.is_empty() {
            return Err(DataError::Empty("question/answer examples".into()));
        }
        check_shape(batch_size, seq_len)?;
        let longest = examples
            .iter()
            .map(|e| e.prompt.len() + e.answer.len())
            .max()
            .unwrap_or(0)
            + usize::from(special.bos.is_some());
        if longest > seq_len {
            return Err(DataError::TooShort {
                what: "seq_len".into(),
                need: longest,
                got: seq_len,
            });
        }
        Ok(Self {
            examples,
            special,
            batch_size,
            seq_len,
            seed,
        })
    }

    fn push(row: &mut (Vec<u32>, Vec<i64>), e: &QaTokens) {
        row.0.extend_from_slice(&e.prompt);
        row.1.extend(std::iter::repeat_n(IGNORE, e.prompt.len()));
        row.0.extend_from_slice(&e.answer);
        row.1.extend(e.answer.iter().map(|&x| x as i64));
    }

    fn row_start(&self) -> (Vec<u32>, Vec<i64>) {
        match self.special.bos {
            Some(b) => (vec![b], vec![IGNORE]),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Fixed evaluation batches: every example once, packed in order.
    pub fn eval_batches(&self) -> Vec<TokenBatch> {
        let mut rows = Vec::new();
        let mut cur = self.row_start();
        let empty = cur.0.len();
        for e in &self.examples {
            if cur.0.len() + e.prompt.len() + e.answer.len() > self.seq_len {
                rows.push(std::mem::replace(&mut cur, self.row_start()));
            }
            Self::push(&mut cur, e);
        }
        if cur.0.len() > empty {
            rows.push(cur);
        }
        rows.chunks(self.batch_size)
            .map(|c| TokenBatch::from_rows(c, self.special.pad))
            .collect()
    }
}

impl BatchSource for QaBatches {
    fn batch(&self, index: u64) -> TokenBatch {
        let mut rng = derived_rng(self.seed, stream::QA_BATCH, index);
        let rows: Vec<_> = (0..self.batch_size)
            .map(|_| {
                let mut row = self.row_start();
                loop {
                    let e = &self.examples[rng.random_range(0..self.examples.len())];
                    if row.0.len() + e.prompt.len() + e.answer.len() > self.seq_len {
                        break;
                    }
                    Self::push(&mut row, e);
                }
                row
            })
            .collect();
        let mut b = TokenBatch::from_rows(&rows, self.special.pad);
        if b.input_ids.ncols() < self.seq_len {
            // Keep the shape fixed at seq_len (pad), whatever was packed.
            let mut ids = Array2::from_elem((self.batch_size, self.seq_len), self.special.pad);
            let mut lab = Array2::from_elem((self.batch_size, self.seq_len), IGNORE);
            let t = b.input_ids.ncols();
            ids.slice_mut(ndarray::s![.., ..t]).assign(&b.input_ids);
            lab.slice_mut(ndarray::s![.., ..t]).assign(&b.labels);
            b = TokenBatch {
                input_ids: ids,
                labels: lab,
            };
        }
        b
    }
}

/// Windows of one token stream (a user's text file).
#[derive(Clone, Debug)]
pub struct StreamBatches {
    /// The token stream.
    pub tokens: Vec<u32>,
    /// Rows per batch.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl StreamBatches {
    /// Checks that the stream holds at least one window.
    pub fn new(
        tokens: Vec<u32>,
        batch_size: usize,
        seq_len: usize,
        seed: u64,
    ) -> Result<Self, DataError> {
        check_shape(batch_size, seq_len)?;
        if tokens.len() < seq_len {
            return Err(DataError::TooShort {
                what: "token stream".into(),
                need: seq_len,
                got: tokens.len(),
            });
        }
        Ok(Self {
            tokens,
            batch_size,
            seq_len,
            seed,
        })
    }

    /// Consecutive non-overlapping windows covering the stream (the last
    /// partial window is dropped unless it is the only one), in batches.
    pub fn eval_batches(&self) -> Vec<TokenBatch> {
        let rows: Vec<(Vec<u32>, Vec<i64>)> = self
            .tokens
            .chunks_exact(self.seq_len)
            .map(|w| (w.to_vec(), w.iter().map(|&x| x as i64).collect()))
            .collect();
        rows.chunks(self.batch_size)
            .map(|c| TokenBatch::from_rows(c, 0))
            .collect()
    }
}

impl BatchSource for StreamBatches {
    fn batch(&self, index: u64) -> TokenBatch {
        let mut rng = derived_rng(self.seed, stream::TEXT_BATCH, index);
        let starts = self.tokens.len() - self.seq_len + 1;
        let rows: Vec<_> = (0..self.batch_size)
            .map(|_| {
                let s = rng.random_range(0..starts);
                let w = &self.tokens[s..s + self.seq_len];
                (w.to_vec(), w.iter().map(|&x| x as i64).collect())
            })
            .collect();
        TokenBatch::from_rows(&rows, 0)
    }
}

fn check_shape(batch_size: usize, seq_len: usize) -> Result<(), DataError> {
    if batch_size == 0 || seq_len < 2 {
        return Err(DataError::Config(format!(
            "batch size must be ≥ 1 and sequence length ≥ 2 (got {batch_size} and {seq_len})"
        )));
    }
    Ok(())
}
