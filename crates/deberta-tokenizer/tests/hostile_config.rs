//! Wrong-typed values in `tokenizer_config.json` / `special_tokens_map.json` are errors that
//! name the file and the field, not silently ignored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use deberta_tokenizer::TokenizerConfig;

fn err(file: &str, json: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(file), json).unwrap();
    let e = TokenizerConfig::from_dir(tmp.path())
        .expect_err("should fail")
        .to_string();
    println!("error: {e}");
    assert!(e.contains(file), "{e}");
    e
}

#[test]
fn wrong_typed_fields_name_the_field() {
    for (file, json, field) in [
        (
            "tokenizer_config.json",
            r#"{"model_max_length": "abc"}"#,
            "model_max_length",
        ),
        (
            "tokenizer_config.json",
            r#"{"model_max_length": -5}"#,
            "model_max_length",
        ),
        (
            "tokenizer_config.json",
            r#"{"model_max_length": 2.5}"#,
            "model_max_length",
        ),
        (
            "tokenizer_config.json",
            r#"{"mask_token": 5}"#,
            "mask_token",
        ),
        (
            "special_tokens_map.json",
            r#"{"mask_token": 5}"#,
            "mask_token",
        ),
        (
            "special_tokens_map.json",
            r#"{"cls_token": {"lstrip": true}}"#,
            "cls_token",
        ),
        (
            "special_tokens_map.json",
            r#"{"additional_special_tokens": "[X]"}"#,
            "additional_special_tokens",
        ),
        (
            "special_tokens_map.json",
            r#"{"additional_special_tokens": ["[X]", 7]}"#,
            "additional_special_tokens[1]",
        ),
    ] {
        let e = err(file, json);
        assert!(e.contains(field), "{json}: {e}");
    }
}

#[test]
fn values_transformers_writes_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"model_max_length": 1000000000000000019884624838656, "mask_token": {"content": "[MASK]", "lstrip": true}, "pad_token": null}"#,
    )
    .unwrap();
    let cfg = TokenizerConfig::from_dir(tmp.path()).unwrap();
    assert_eq!(cfg.model_max_length, usize::MAX);
    assert_eq!(cfg.special.mask, "[MASK]");
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"model_max_length": 512}"#,
    )
    .unwrap();
    assert_eq!(
        TokenizerConfig::from_dir(tmp.path())
            .unwrap()
            .model_max_length,
        512
    );
}
