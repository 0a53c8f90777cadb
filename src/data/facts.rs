//! A generated world of entities and facts: the pre-training corpus that
//! carries checkable knowledge.
//!
//! Each of `entities` generated people has a home city and a job. Every fact
//! is written with several paraphrase templates; template 0 of each relation
//! ("{name} lives in {city}.", "{name} works as a {job}.") is the probe
//! template and always in the training corpus. Of the other (fact, template)
//! sentences a share `heldout_share` is held out for the held-out
//! pre-training loss. Fact-free general sentences from a small grammar are
//! mixed in (also split into training and held out).
//!
//! Knowledge is checked two ways for every fact:
//! - greedy recall: the probe prefix ("Kalo Mirate lives in") must be
//!   continued by exactly the answer (" Varnoton.");
//! - multiple choice: the log-likelihood of the right completion must exceed
//!   that of `choices − 1` distractors of the same relation (the way
//!   lm-eval-harness scores MMLU and ARC).
//!
//! Everything is a deterministic function of the configuration (seed
//! included).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::rng::{derived_rng, stream};
use super::DataError;

/// How the knowledge corpus is generated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// Number of people (each has two facts: city and job). Default 200.
    pub entities: usize,
    /// Number of distinct cities. Default 24.
    pub cities: usize,
    /// Share of the non-probe (fact, template) sentences held out. Default 0.15.
    pub heldout_share: f64,
    /// Number of general (fact-free) sentences. Default 400.
    pub general_sentences: usize,
    /// Options per multiple-choice question (right one included). Default 4.
    pub choices: usize,
    /// Seed of the generated world. Default 1.
    pub seed: u64,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            entities: 200,
            cities: 24,
            heldout_share: 0.15,
            general_sentences: 400,
            choices: 4,
            seed: 1,
        }
    }
}

/// A relation between a person and a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    /// Home city.
    City,
    /// Job.
    Job,
}

impl Relation {
    /// Both relations.
    pub const ALL: [Relation; 2] = [Relation::City, Relation::Job];

    /// The paraphrase templates; `{n}` is the name, `{v}` the value. The value
    /// always ends the sentence, so a prefix of template 0 is a probe.
    pub fn templates(self) -> &'static [&'static str] {
        match self {
            Relation::City => &[
                "{n} lives in {v}.",
                "{n} resides in the city of {v}.",
                "The home town of {n} is {v}.",
                "Everyone knows that {n} lives in {v}.",
                "{n} has a house in {v}.",
                "If you visit {n}, you travel to {v}.",
            ],
            Relation::Job => &[
                "{n} works as a {v}.",
                "By trade, {n} is a {v}.",
                "The job of {n} is that of a {v}.",
                "People say that {n} works as a {v}.",
                "{n} earns a living as a {v}.",
                "Ask {n} and you meet a {v}.",
            ],
        }
    }
}

/// A generated person.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// Full name ("Kalo Mirate").
    pub name: String,
    /// Index into [`KnowledgeBase::cities`].
    pub city: usize,
    /// Index into [`KnowledgeBase::jobs`].
    pub job: usize,
}

/// One knowledge question: greedy recall and multiple choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Index of the entity.
    pub entity: usize,
    /// The relation asked about.
    pub relation: Relation,
    /// The prefix given to the model ("Kalo Mirate lives in").
    pub prompt: String,
    /// The expected continuation (" Varnoton.").
    pub answer: String,
    /// Completions for multiple choice (answer included).
    pub choices: Vec<String>,
    /// Position of the answer in `choices`.
    pub correct: usize,
}

/// The generated world and its corpora.
#[derive(Clone, Debug, PartialEq)]
pub struct KnowledgeBase {
    /// City names.
    pub cities: Vec<String>,
    /// Job names.
    pub jobs: Vec<String>,
    /// The people.
    pub entities: Vec<Entity>,
    /// Sentences of the pre-training corpus.
    pub train_sentences: Vec<String>,
    /// Held-out sentences (held-out pre-training loss).
    pub heldout_sentences: Vec<String>,
    /// One probe per fact (entities × relations).
    pub probes: Vec<Probe>,
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "te", "su", "no", "vi", "da", "be", "zo", "fi", "ga", "ho", "ju", "pe",
    "ri", "ma", "to", "le",
];
const CITY_SUFFIXES: &[&str] = &["ton", "burg", "mar", "dor", "vik", "lan"];
const JOBS: &[&str] = &[
    "baker", "pilot", "farmer", "doctor", "teacher", "painter", "sailor", "miner", "weaver",
    "potter", "singer", "lawyer", "nurse", "tailor", "hunter", "fisher",
];
const ADJECTIVES: &[&str] = &[
    "old", "small", "quiet", "green", "bright", "cold", "busy", "wide",
];
const NOUNS: &[&str] = &[
    "river", "garden", "market", "bridge", "tower", "forest", "harbor", "road", "school", "field",
];
const VERBS: &[&str] = &["stands", "lies", "sleeps", "shines", "waits", "turns"];
const PREPOSITIONS: &[&str] = &["near", "beside", "behind", "under", "above", "past"];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn word(rng: &mut impl Rng, syllables: usize) -> String {
    (0..syllables)
        .map(|_| *SYLLABLES.choose(rng).expect("non-empty"))
        .collect()
}

/// Fills a template.
pub fn fill(template: &str, name: &str, value: &str) -> String {
    template.replace("{n}", name).replace("{v}", value)
}

impl KnowledgeConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(m));
        if self.general_sentences > 20000 {
            return bad(format!(
                "knowledge.general_sentences must be at most 20000, got {}",
                self.general_sentences
            ));
        }
        if self.entities == 0 || self.entities > 5000 {
            return bad(format!(
                "knowledge.entities must be in 1..=5000, got {}",
                self.entities
            ));
        }
        if self.cities < 2 || self.cities > 200 {
            return bad(format!(
                "knowledge.cities must be in 2..=200, got {}",
                self.cities
            ));
        }
        if !(0.0..0.9).contains(&self.heldout_share) {
            return bad(format!(
                "knowledge.heldout_share must be in [0, 0.9), got {}",
                self.heldout_share
            ));
        }
        if self.choices < 2 || self.choices > self.cities.min(JOBS.len()) {
            return bad(format!(
                "knowledge.choices must be in 2..={}, got {}",
                self.cities.min(JOBS.len()),
                self.choices
            ));
        }
        Ok(())
    }

    /// Generates the world.
    pub fn generate(&self) -> Result<KnowledgeBase, DataError> {
        self.validate()?;
        let mut rng = derived_rng(self.seed, stream::ENTITIES, 0);
        let mut seen = HashSet::new();
        let mut cities = Vec::with_capacity(self.cities);
        while cities.len() < self.cities {
            let c = capitalise(&format!(
                "{}{}",
                word(&mut rng, 2),
                CITY_SUFFIXES.choose(&mut rng).expect("non-empty")
            ));
            if seen.insert(c.clone()) {
                cities.push(c);
            }
        }
        let jobs: Vec<String> = JOBS.iter().map(|s| s.to_string()).collect();
        let mut entities = Vec::with_capacity(self.entities);
        while entities.len() < self.entities {
            let name = format!(
                "{} {}",
                capitalise(&word(&mut rng, 2)),
                capitalise(&word(&mut rng, 3))
            );
            if seen.insert(name.clone()) {
                entities.push(Entity {
                    name,
                    city: rng.random_range(0..cities.len()),
                    job: rng.random_range(0..jobs.len()),
                });
            }
        }

        let mut held = derived_rng(self.seed, stream::HELDOUT, 0);
        let mut train_sentences = Vec::new();
        let mut heldout_sentences = Vec::new();
        for e in &entities {
            for rel in Relation::ALL {
                let value = match rel {
                    Relation::City => &cities[e.city],
                    Relation::Job => &jobs[e.job],
                };
                for (i, t) in rel.templates().iter().enumerate() {
                    let s = fill(t, &e.name, value);
                    if i > 0 && held.random::<f64>() < self.heldout_share {
                        heldout_sentences.push(s);
                    } else {
                        train_sentences.push(s);
                    }
                }
            }
        }
        let mut general = derived_rng(self.seed, stream::GENERAL, 0);
        let mut distinct = HashSet::new();
        let mut attempts = 0usize;
        while distinct.len() < self.general_sentences && attempts < 20 * self.general_sentences {
            attempts += 1;
            let pick = |r: &mut rand_chacha::ChaCha8Rng, xs: &[&'static str]| {
                *xs.choose(r).expect("non-empty")
            };
            let s = format!(
                "The {} {} {} {} the {}.",
                pick(&mut general, ADJECTIVES),
                pick(&mut general, NOUNS),
                pick(&mut general, VERBS),
                pick(&mut general, PREPOSITIONS),
                pick(&mut general, NOUNS)
            );
            if !distinct.insert(s.clone()) {
                continue;
            }
            if general.random::<f64>() < self.heldout_share {
                heldout_sentences.push(s);
            } else {
                train_sentences.push(s);
            }
        }

        let mut dis = derived_rng(self.seed, stream::DISTRACTORS, 0);
        let mut probes = Vec::with_capacity(entities.len() * 2);
        for (ei, e) in entities.iter().enumerate() {
            for rel in Relation::ALL {
                let (values, right) = match rel {
                    Relation::City => (&cities, e.city),
                    Relation::Job => (&jobs, e.job),
                };
                let template = rel.templates()[0];
                let cut = template
                    .find(" {v}")
                    .expect("probe template ends with value");
                let prompt = fill(&template[..cut], &e.name, "");
                let completion = |v: &str| fill(&template[cut..], &e.name, v);
                let mut others: Vec<usize> = (0..values.len()).filter(|&v| v != right).collect();
                others.shuffle(&mut dis);
                let mut options: Vec<usize> = others[..self.choices - 1].to_vec();
                let correct = dis.random_range(0..self.choices);
                options.insert(correct, right);
                probes.push(Probe {
                    entity: ei,
                    relation: rel,
                    prompt,
                    answer: completion(&values[right]),
                    choices: options.iter().map(|&v| completion(&values[v])).collect(),
                    correct,
                });
            }
        }
        Ok(KnowledgeBase {
            cities,
            jobs,
            entities,
            train_sentences,
            heldout_sentences,
            probes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_prefixes_of_training_sentences() {
        let kb = KnowledgeConfig {
            entities: 20,
            ..Default::default()
        }
        .generate()
        .unwrap();
        assert_eq!(kb.probes.len(), 40);
        let train: HashSet<&String> = kb.train_sentences.iter().collect();
        for p in &kb.probes {
            assert!(train.contains(&format!("{}{}", p.prompt, p.answer)));
            assert_eq!(p.choices[p.correct], p.answer);
            let distinct: HashSet<&String> = p.choices.iter().collect();
            assert_eq!(distinct.len(), p.choices.len());
        }
        assert!(kb.heldout_sentences.iter().all(|s| !train.contains(s)));
    }
}
