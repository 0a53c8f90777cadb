//! Tokenizers: the built-in byte tokenizer and Hugging Face `tokenizer.json`
//! files built in the test (nothing downloaded).

use std::path::PathBuf;

use mofo::tokenizer::{ByteTokenizer, HfTokenizer, Tokenizer, TokenizerError};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mofo-tokenizer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn byte_tokenizer_round_trips() {
    let t = ByteTokenizer;
    let text = "héllo, wörld! 日本";
    let ids = t.encode(text).unwrap();
    assert_eq!(ids.len(), text.len());
    assert!(ids.iter().all(|&i| i < 256));
    assert_eq!(t.decode(&ids).unwrap(), text);
    // Specials are skipped on decode.
    let mut with_specials = vec![ByteTokenizer::BOS];
    with_specials.extend(&ids);
    with_specials.extend([ByteTokenizer::EOS, ByteTokenizer::PAD]);
    assert_eq!(t.decode(&with_specials).unwrap(), text);
    assert_eq!(t.vocab_size(), 259);
    assert_eq!((t.bos_id(), t.eos_id()), (Some(256), Some(257)));
    // A cut multi-byte character decodes to U+FFFD, not an error.
    assert_eq!(t.decode(&ids[..2]).unwrap(), "h\u{fffd}");
    assert!(matches!(
        t.decode(&[65, 259]),
        Err(TokenizerError::IdOutOfRange {
            id: 259,
            vocab: 259
        })
    ));
}

fn added(id: u32, content: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true})
}

/// A WordLevel tokenizer.json with a whitespace pre-tokenizer.
fn word_level_json() -> String {
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "[UNK]"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {
            "type": "WordLevel",
            "vocab": {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "!": 5, "mofo": 6},
            "unk_token": "[UNK]"
        }
    })
    .to_string()
}

/// A byte-pair-encoding tokenizer.json over characters with two merges.
fn bpe_json() -> String {
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<unk>"), added(7, "<|endoftext|>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": null,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": "<unk>",
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "ba": 6, "<|endoftext|>": 7},
            "merges": ["a b", "ab c"]
        }
    })
    .to_string()
}

#[test]
fn word_level_tokenizer_json() {
    let dir = temp_dir("wordlevel");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, word_level_json()).unwrap();
    let t = HfTokenizer::from_file(&path).unwrap();
    assert_eq!(t.encode("Hello world !").unwrap(), vec![3, 4, 5]);
    assert_eq!(t.encode("hello zebra").unwrap(), vec![3, 0]);
    assert_eq!(t.vocab_size(), 7);
    assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
    assert_eq!(t.decode(&[1, 3, 6, 2]).unwrap(), "hello mofo");
    assert!(matches!(
        t.decode(&[3, 7]),
        Err(TokenizerError::IdOutOfRange { id: 7, vocab: 7 })
    ));
    // Overriding the special tokens; an unknown name is an error.
    let t = t.with_special_tokens(None, Some("!")).unwrap();
    assert_eq!((t.bos_id(), t.eos_id()), (None, Some(5)));
    assert!(matches!(
        t.with_special_tokens(Some("<bos>"), None),
        Err(TokenizerError::UnknownSpecial(s)) if s == "<bos>"
    ));
    // tokenizer_config.json beside the file names the specials.
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "</s>"}, "eos_token": "mofo"}"#,
    )
    .unwrap();
    let t = HfTokenizer::from_file(&path).unwrap();
    assert_eq!((t.bos_id(), t.eos_id()), (Some(2), Some(6)));
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "nope"}"#,
    )
    .unwrap();
    assert!(matches!(
        HfTokenizer::from_file(&path),
        Err(TokenizerError::UnknownSpecial(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bpe_tokenizer_json() {
    let dir = temp_dir("bpe");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, bpe_json()).unwrap();
    let t = HfTokenizer::from_file(&path).unwrap();
    assert_eq!(t.encode("abcab").unwrap(), vec![5, 4]);
    assert_eq!(t.encode("ba").unwrap(), vec![2, 1]);
    assert_eq!(t.decode(&[5, 4]).unwrap(), "abc ab");
    assert_eq!((t.bos_id(), t.eos_id()), (None, Some(7)));
    // Through the trait object, as the command line uses it.
    let boxed: Box<dyn Tokenizer> = Box::new(t);
    assert_eq!(boxed.vocab_size(), 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_tokenizer_files_are_typed_errors() {
    let dir = temp_dir("bad");
    let path = dir.join("tokenizer.json");
    let load_err = |text: &str| {
        std::fs::write(&path, text).unwrap();
        match HfTokenizer::from_file(&path) {
            Err(TokenizerError::Load { message, .. }) => eprintln!("rejected: {message}"),
            other => panic!("expected Load error for {text:?}, got {other:?}"),
        }
    };
    load_err("");
    load_err("{ not json");
    load_err(r#"{"model": {"type": "NoSuchModel"}}"#);
    let truncated = word_level_json();
    load_err(&truncated[..truncated.len() / 2]);
    assert!(matches!(
        HfTokenizer::from_file(&dir.join("absent.json")),
        Err(TokenizerError::Load { .. })
    ));
    std::fs::write(&path, word_level_json()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), "{oops").unwrap();
    assert!(matches!(
        HfTokenizer::from_file(&path),
        Err(TokenizerError::Load { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
