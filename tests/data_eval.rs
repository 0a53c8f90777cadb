//! Evaluator correctness on models whose answers are known by construction.

use mofo::data::eval::{choice_log_likelihoods, exact_match_hits, log_prob};
use mofo::data::{
    exact_match, exact_match_decoding, mean_loss, multiple_choice, ChoiceItem, LanguageModel,
    TokenBatch, IGNORE,
};
use ndarray::{array, Array2, Array3};

/// Knows a list of texts: after a prefix of one of them it puts logit 5 on
/// that text's next token (the first listed text wins), otherwise all zeros.
struct Oracle {
    texts: Vec<Vec<u32>>,
    vocab: usize,
}

impl LanguageModel for Oracle {
    fn logits(&self, ids: &Array2<u32>) -> Array3<f32> {
        let (b, t) = ids.dim();
        let mut z = Array3::zeros((b, t, self.vocab));
        for i in 0..b {
            for j in 0..t {
                let prefix: Vec<u32> = ids.row(i).iter().take(j + 1).copied().collect();
                if let Some(text) = self
                    .texts
                    .iter()
                    .find(|s| s.len() > j + 1 && s[..j + 1] == prefix[..])
                {
                    z[[i, j, text[j + 1] as usize]] = 5.0;
                }
            }
        }
        z
    }
}

fn toks(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

#[test]
fn exact_match_counts_only_full_answers() {
    let m = Oracle {
        texts: vec![toks("ab=cd;"), toks("xy=zz;"), toks("ppp=q;")],
        vocab: 128,
    };
    let items = vec![
        (toks("ab="), toks("cd;")),  // right
        (toks("xy="), toks("zz;")),  // right
        (toks("xy="), toks("zq;")),  // wrong at the second token
        (toks("ppp="), toks("q;")),  // right (other length)
        (toks("ppp="), toks("q;;")), // too long: the model predicts 0 after ';'
        (toks("qq="), toks("aa;")),  // unknown prompt
    ];
    let hits = exact_match_hits(&m, &items);
    assert_eq!(hits, vec![true, true, false, true, false, false]);
    assert_eq!(exact_match(&m, &items), 0.5);
    // Decoding agrees with the teacher-forced shortcut.
    assert_eq!(exact_match_decoding(&m, &items, Some(b';' as u32)), 0.5);
    let got = m.greedy(&[toks("ab="), toks("xy=")], 10, Some(b';' as u32));
    assert_eq!(got, vec![toks("cd;"), toks("zz;")]);
    let got = m.greedy(&[toks("ab=")], 2, None);
    assert_eq!(got, vec![toks("cd")]);
}

#[test]
fn loss_of_uniform_model_is_log_vocab() {
    let m = Oracle {
        texts: vec![],
        vocab: 50,
    };
    let b = TokenBatch {
        input_ids: array![[1u32, 2, 3, 4], [5, 6, 7, 8]],
        labels: array![[1i64, 2, IGNORE, 4], [IGNORE, IGNORE, IGNORE, IGNORE]],
    };
    assert_eq!(b.target_count(), 2);
    let l = mean_loss(&m, &[b]);
    assert!((l - (50f64).ln()).abs() < 1e-9, "{l}");
}

#[test]
fn loss_counts_shifted_targets() {
    // The oracle knows "abc": logit 5 on the right token at each step.
    let m = Oracle {
        texts: vec![toks("abc")],
        vocab: 128,
    };
    let ids = Array2::from_shape_vec((1, 3), toks("abc")).unwrap();
    let b = TokenBatch {
        labels: ids.mapv(i64::from),
        input_ids: ids,
    };
    let z = m.logits(&b.input_ids);
    let expect = -(log_prob(z.slice(ndarray::s![0, 0, ..]), b'b' as usize)
        + log_prob(z.slice(ndarray::s![0, 1, ..]), b'c' as usize))
        / 2.0;
    let l = mean_loss(&m, &[b]);
    assert!((l - expect).abs() < 1e-12);
    // −log(e^5 / (e^5 + 127)) by hand.
    let by_hand = -(5f64 - (5f64.exp() + 127.0).ln());
    assert!((l - by_hand).abs() < 1e-9, "{l} vs {by_hand}");
}

#[test]
fn multiple_choice_picks_the_likeliest_completion() {
    let m = Oracle {
        texts: vec![toks("Ann lives in Rome."), toks("Bob is a cook.")],
        vocab: 128,
    };
    let item = |prompt: &str, choices: &[&str], correct| ChoiceItem {
        prompt: toks(prompt),
        choices: choices.iter().map(|c| toks(c)).collect(),
        correct,
    };
    let items = vec![
        item("Ann lives in", &[" Oslo.", " Rome.", " Lima."], 1),
        item("Bob is a", &[" cook.", " baker."], 0),
        item("Bob is a", &[" baker.", " cook."], 0), // labelled wrong on purpose
    ];
    let ll = choice_log_likelihoods(&m, &items);
    assert!(ll[0][1] > ll[0][0] && ll[0][1] > ll[0][2]);
    // " Rome." is 6 tokens, each with logit 5 against 127 zeros.
    let per = 5f64 - (5f64.exp() + 127.0).ln();
    assert!((ll[0][1] - 6.0 * per).abs() < 1e-6);
    assert!((multiple_choice(&m, &items) - 2.0 / 3.0).abs() < 1e-12);
}
