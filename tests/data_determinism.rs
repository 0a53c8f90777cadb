//! The built-in data is a deterministic function of its configuration.

use mofo::data::tokens::tokenize_qa;
use mofo::data::{
    BatchSource, KnowledgeConfig, LmBatches, QaBatches, SpecialTokens, TaskConfig, TaskKind, IGNORE,
};

fn bytes(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

const SPECIAL: SpecialTokens = SpecialTokens {
    bos: Some(256),
    eos: 257,
    pad: 258,
};

#[test]
fn same_seed_same_world_other_seed_other_world() {
    let cfg = KnowledgeConfig {
        entities: 50,
        ..Default::default()
    };
    let a = cfg.generate().unwrap();
    let b = cfg.generate().unwrap();
    assert_eq!(a, b);
    let c = KnowledgeConfig { seed: 7, ..cfg }.generate().unwrap();
    assert_ne!(a.entities, c.entities);
    assert_eq!(a.probes.len(), 100);
    assert!(!a.heldout_sentences.is_empty());

    let t = TaskConfig::default();
    assert_eq!(t.generate().unwrap(), t.generate().unwrap());
    let u = TaskConfig {
        seed: 9,
        ..t.clone()
    }
    .generate()
    .unwrap();
    assert_ne!(t.generate().unwrap().eval, u.eval);
}

#[test]
fn batches_depend_only_on_seed_and_index() {
    let kb = KnowledgeConfig {
        entities: 30,
        ..Default::default()
    }
    .generate()
    .unwrap();
    let lm = LmBatches::new(&bytes, &kb.train_sentences, SPECIAL, 4, 48, 11).unwrap();
    let b3 = lm.batch(3);
    assert_eq!(b3, lm.batch(3));
    assert_ne!(b3, lm.batch(4));
    assert_eq!(b3.input_ids.dim(), (4, 48));
    assert!(b3.input_ids.column(0).iter().all(|&x| x == 256));
    // Loss on every token but BOS.
    assert_eq!(b3.target_count(), 4 * 47);
    // Evaluation packs whole sentences (rows long enough for the longest).
    let lm = LmBatches::new(&bytes, &kb.train_sentences, SPECIAL, 4, 96, 11).unwrap();
    let eval = lm.eval_batches();
    assert_eq!(eval, lm.eval_batches());
    let total: usize = kb.train_sentences.iter().map(|s| s.len() + 1).sum();
    assert_eq!(eval.iter().map(|b| b.target_count()).sum::<usize>(), total);

    let task = TaskConfig {
        kind: TaskKind::Reverse,
        ..Default::default()
    }
    .generate()
    .unwrap();
    let qa = QaBatches::new(tokenize_qa(&bytes, &task.train, 257), SPECIAL, 3, 64, 5).unwrap();
    let b = qa.batch(0);
    assert_eq!(b, qa.batch(0));
    assert_eq!(b.input_ids.dim(), (3, 64));
    // Labels only on answers and their EOS: 4 letters + EOS per example.
    for r in 0..3 {
        let labelled: Vec<i64> = b
            .labels
            .row(r)
            .iter()
            .copied()
            .filter(|&l| l != IGNORE)
            .collect();
        assert!(!labelled.is_empty());
        assert_eq!(labelled.len() % 5, 0);
        assert!(labelled
            .chunks(5)
            .all(|c| c[4] == 257 && c[..4].iter().all(|&l| (97..123).contains(&l))));
        // Padding is never a target.
        for (x, l) in b.input_ids.row(r).iter().zip(b.labels.row(r)) {
            if *x == 258 {
                assert_eq!(*l, IGNORE);
            }
        }
    }
}
