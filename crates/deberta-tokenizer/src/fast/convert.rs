//! Builds the `tokenizer.json` that transformers 4.57's `DebertaV2Converter` produces from an
//! `spm.model` (used when a directory has no `tokenizer.json`).
//!
//! normalizer `[Lowercase?] + Strip + Precompiled(charsmap) + Replace(" {2,}", " ")`,
//! pre-tokenizer `[Punctuation(isolated)?] + Metaspace(▁, always)`, model `Unigram` (or `BPE`
//! with merges derived from scores), control / user-defined pieces and the special tokens as
//! added tokens, `TemplateProcessing` post-processor and `Metaspace` decoder.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::config::{AddedToken, TokenizerConfig};
use crate::spm::model::{ModelProto, ModelType, PieceType};

/// Standard base64 (with padding), as Python's `base64.b64encode`.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn normalizer(proto: &ModelProto, cfg: &TokenizerConfig) -> Value {
    let mut list = Vec::new();
    if cfg.do_lower_case {
        list.push(json!({"type": "Lowercase"}));
    }
    list.push(json!({"type": "Strip", "strip_left": true, "strip_right": true}));
    let charsmap = &proto.normalizer_spec.precompiled_charsmap;
    if !charsmap.is_empty() {
        list.push(json!({"type": "Precompiled", "precompiled_charsmap": base64(charsmap)}));
    }
    list.push(json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}));
    json!({"type": "Sequence", "normalizers": list})
}

fn pre_tokenizer(cfg: &TokenizerConfig) -> Value {
    let mut list = Vec::new();
    if cfg.split_by_punct {
        list.push(json!({"type": "Punctuation", "behavior": "Isolated"}));
    }
    list.push(json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true}));
    json!({"type": "Sequence", "pretokenizers": list})
}

/// `generate_merges` of `convert_slow_tokenizer.py`: every split of a piece into two pieces,
/// ordered by the merged piece's score (descending), then by part lengths.
fn bpe_merges(proto: &ModelProto) -> Vec<(String, String)> {
    let vocab: HashMap<&str, usize> = proto
        .pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.piece.as_str(), i))
        .collect();
    let mut merges: Vec<(usize, usize, f32, usize, usize)> = Vec::new();
    for p in &proto.pieces {
        let mut local = Vec::new();
        let bounds: Vec<usize> = p.piece.char_indices().map(|(i, _)| i).skip(1).collect();
        for b in bounds {
            let (l, r) = p.piece.split_at(b);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                local.push((li, ri, p.score, l.chars().count(), r.chars().count()));
            }
        }
        local.sort_by_key(|&(li, ri, ..)| (li, ri));
        merges.extend(local);
    }
    // Python's sorted(reverse=True) is stable: equal keys keep their order.
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    let piece = |i: usize| {
        proto
            .pieces
            .get(i)
            .map(|p| p.piece.clone())
            .unwrap_or_default()
    };
    merges
        .into_iter()
        .map(|(l, r, ..)| (piece(l), piece(r)))
        .collect()
}

fn model(proto: &ModelProto, unk_id: u32) -> Value {
    match proto.trainer_spec.model_type {
        ModelType::Bpe => {
            let vocab: serde_json::Map<String, Value> = proto
                .pieces
                .iter()
                .enumerate()
                .map(|(i, p)| (p.piece.clone(), json!(i)))
                .collect();
            json!({
                "type": "BPE", "dropout": null, "unk_token": proto.trainer_spec.unk_piece,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab,
                "merges": bpe_merges(proto),
            })
        }
        _ => {
            let vocab: Vec<Value> = proto
                .pieces
                .iter()
                .map(|p| json!([p.piece, p.score]))
                .collect();
            json!({"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": false})
        }
    }
}

fn added_json(t: &AddedToken) -> Value {
    json!({
        "id": t.id, "content": t.content, "single_word": t.single_word, "lstrip": t.lstrip,
        "rstrip": t.rstrip, "normalized": t.normalized, "special": t.special,
    })
}

/// Added tokens: control and user-defined pieces (normalized=false), then the configured
/// special / added tokens that are not among them.
fn added_tokens(proto: &ModelProto, cfg: &TokenizerConfig) -> Vec<Value> {
    let specials = cfg.special.all();
    let mut out: Vec<AddedToken> = Vec::new();
    for (i, p) in proto.pieces.iter().enumerate() {
        if matches!(p.kind, PieceType::Control | PieceType::UserDefined) {
            out.push(AddedToken {
                content: p.piece.clone(),
                id: i as u32,
                special: p.kind == PieceType::Control || specials.contains(&p.piece),
                lstrip: false,
                rstrip: false,
                single_word: false,
                normalized: false,
            });
        }
    }
    for t in &cfg.added_tokens {
        if !out.iter().any(|o| o.content == t.content) {
            out.push(t.clone());
        }
    }
    out.sort_by_key(|t| t.id);
    out.iter().map(added_json).collect()
}

/// The `tokenizer.json` document for `proto` under `cfg` (whose `added_tokens` must already
/// hold ids for every special token).
pub fn tokenizer_json(
    proto: &ModelProto,
    cfg: &TokenizerConfig,
    unk_id: u32,
    cls: u32,
    sep: u32,
) -> Value {
    let (c, s) = (&cfg.special.cls, &cfg.special.sep);
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(proto, cfg),
        "normalizer": normalizer(proto, cfg),
        "pre_tokenizer": pre_tokenizer(cfg),
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": c, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": s, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": c, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": s, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": s, "type_id": 1}}],
            "special_tokens": {
                c.as_str(): {"id": c, "ids": [cls], "tokens": [c]},
                s.as_str(): {"id": s, "ids": [sep], "tokens": [s]},
            },
        },
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": model(proto, unk_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_python() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    /// The converted normaliser carries the charsmap exactly as transformers' converter wrote
    /// it into the committed DeBERTa-v3 `tokenizer.json`.
    #[test]
    fn charsmap_base64_matches_the_fixture_tokenizer_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/deberta-v3");
        let spm = crate::spm::SentencePiece::from_file(format!("{dir}/spm.model")).unwrap();
        let cfg = TokenizerConfig::from_dir(dir).unwrap();
        let ours = normalizer(spm.proto(), &cfg);
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/tokenizer.json")).unwrap(),
        )
        .unwrap();
        let charsmap = |v: &Value| -> Option<String> {
            v["normalizers"]
                .as_array()?
                .iter()
                .find(|n| n["type"] == "Precompiled")?["precompiled_charsmap"]
                .as_str()
                .map(String::from)
        };
        let theirs = charsmap(&file["normalizer"]).unwrap();
        assert!(theirs.len() > 1000);
        assert_eq!(charsmap(&ours).unwrap(), theirs);
    }
}
