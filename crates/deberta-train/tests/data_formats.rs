//! The JSON-lines formats on the real DeBERTa-v3 tokenizer: every task, bad lines, label sets,
//! run_ner alignment, run_qa windows and post-processing, MLM packing and masking, tensors.
//!
//! Expected ids and labels were computed once with transformers 5.24 (`AutoTokenizer` on the
//! same files, `is_split_into_words=True` for NER, run_qa's `only_second` windows); no Python
//! runs here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use deberta::{DebertaV2Config, HeadKind};
use deberta_tokenizer::Tokenizer;
use deberta_train::data::{
    apply_label_set, label_set_from, load_jsonl, qa_predictions, BatchLabels, DataOptions, Dataset,
    LabelSet, MaskingSeed, ProblemType, Target, Task,
};
use deberta_train::Error;

fn tokenizer() -> Tokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deberta-tokenizer/tests/fixtures/deberta-v3");
    Tokenizer::from_dir(dir).unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    path
}

fn load(path: &Path, task: Task, config: &DebertaV2Config, opts: &DataOptions) -> Dataset {
    load_jsonl(path, task, &tokenizer(), config, opts).unwrap()
}

fn bad_lines(ds: &Dataset) -> Vec<usize> {
    ds.skipped.iter().map(|b| b.line).collect()
}

fn message(ds: &Dataset, line: usize) -> String {
    ds.skipped
        .iter()
        .find(|b| b.line == line)
        .map(|b| b.message.clone())
        .unwrap_or_else(|| panic!("line {line} is not reported: {:?}", ds.skipped))
}

// ---------------------------------------------------------------- sequence classification

#[test]
fn sequence_classification_discovers_sorted_names_and_skips_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "train.jsonl",
        &[
            r#"{"text": "Is it good?", "text_pair": "Yes it is.", "label": "pos"}"#,
            r#"{"text": "Awful.", "label": "neg"}"#,
            r#"{"text": "broken"#,
            r#"{"text": "no label"}"#,
            r#"{"text": "   ", "label": "pos"}"#,
            r#"{"text": "typed", "label": true}"#,
            "",
            r#"["not", "an", "object"]"#,
            r#"{"text": 3, "label": "pos"}"#,
            r#"{"text": "Fine.", "label": "meh"}"#,
        ],
    );
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    let labels = ds.labels.clone().unwrap();
    assert_eq!(labels.names, ["meh", "neg", "pos"]);
    assert_eq!(labels.problem_type, ProblemType::SingleLabel);
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.examples.lines, [1, 2, 10]);
    assert_eq!(bad_lines(&ds), [3, 4, 5, 6, 8, 9]);
    assert!(message(&ds, 3).contains("invalid JSON"));
    assert!(message(&ds, 4).contains("`label`"));
    assert!(message(&ds, 5).contains("`text` is empty"));
    assert!(message(&ds, 6).contains("`label`"));
    assert!(message(&ds, 8).contains("JSON object"));
    assert!(message(&ds, 9).contains("`text` must be a string"));
    // run_glue: tokenizer(text, text_pair, truncation=True) (transformers 5.24).
    let f = &ds.features[0];
    assert_eq!(
        f.sequences[0].input_ids,
        [1, 273, 268, 278, 397, 302, 2, 1595, 278, 269, 260, 2]
    );
    assert_eq!(
        f.sequences[0].token_type_ids,
        [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(f.target, Target::Class(2));
    assert_eq!(ds.features[1].target, Target::Class(1));

    let batch = ds.batch(&[1, 0], None).unwrap();
    assert_eq!(batch.dims, [2, 12]);
    assert_eq!(batch.size, 2);
    assert_eq!(batch.labels, BatchLabels::Classes(vec![1, 2]));
    let row0 = &batch.input_ids[..12];
    let n0 = ds.features[1].sequences[0].input_ids.len();
    assert!(
        row0[n0..].iter().all(|&id| id == 0),
        "right-padded with [PAD]"
    );
    assert_eq!(batch.attention_mask[..12].iter().sum::<u32>() as usize, n0);
    assert_eq!(
        &batch.token_type_ids.as_ref().unwrap()[12..],
        f.sequences[0].token_type_ids
    );
}

#[test]
fn truncation_is_longest_first_at_max_length() {
    let dir = tempfile::tempdir().unwrap();
    let long = "word ".repeat(50);
    let line = format!(r#"{{"text": "{long}", "text_pair": "short pair", "label": 0}}"#);
    let path = write(&dir, "t.jsonl", &[&line]);
    let opts = DataOptions {
        max_length: 16,
        ..Default::default()
    };
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &opts,
    );
    let seq = &ds.features[0].sequences[0];
    assert_eq!(seq.input_ids.len(), 16);
    // The short pair survives whole: its 2 tokens + [SEP] have type 1.
    assert_eq!(seq.token_type_ids.iter().filter(|&&t| t == 1).count(), 3);
}

#[test]
fn explicit_labels_fix_the_order_and_reject_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "t.jsonl",
        &[
            r#"{"text": "a", "label": "pos"}"#,
            r#"{"text": "b", "label": "neutral"}"#,
            r#"{"text": "c", "label": 0}"#,
            r#"{"text": "d", "label": 7}"#,
        ],
    );
    let opts = DataOptions {
        labels: Some(vec!["pos".into(), "neg".into()]),
        ..Default::default()
    };
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &opts,
    );
    assert_eq!(ds.labels.as_ref().unwrap().names, ["pos", "neg"]);
    let targets: Vec<_> = ds.features.iter().map(|f| f.target.clone()).collect();
    assert_eq!(targets, [Target::Class(0), Target::Class(0)]);
    assert_eq!(bad_lines(&ds), [2, 4]);
    assert!(
        message(&ds, 2).contains("unknown label `neutral`"),
        "{}",
        message(&ds, 2)
    );
    assert!(message(&ds, 4).contains("not a label id"));
}

#[test]
fn config_labels_are_used_when_they_fit_and_applied_labels_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(
        &dir,
        "train.jsonl",
        &[
            r#"{"text": "a", "label": "POS"}"#,
            r#"{"text": "b", "label": "POS"}"#,
        ],
    );
    let mut config = DebertaV2Config {
        id2label: Some([(0, "NEG".to_string()), (1, "POS".to_string())].into()),
        ..Default::default()
    };
    let opts = DataOptions::default();
    let set = label_set_from(&train, Task::SequenceClassification, &config, &opts)
        .unwrap()
        .unwrap();
    assert_eq!(set.names, ["NEG", "POS"], "the model's ids are kept");

    // Labels outside the config's: discovered from the file instead.
    let other = write(
        &dir,
        "other.jsonl",
        &[
            r#"{"text": "a", "label": "x"}"#,
            r#"{"text": "b", "label": "y"}"#,
        ],
    );
    let set2 = label_set_from(&other, Task::SequenceClassification, &config, &opts)
        .unwrap()
        .unwrap();
    assert_eq!(set2.names, ["x", "y"]);

    // Once applied, loading is strict: an unknown label is a bad line.
    apply_label_set(&mut config, &set);
    let eval = write(
        &dir,
        "eval.jsonl",
        &[
            r#"{"text": "a", "label": "MAYBE"}"#,
            r#"{"text": "b", "label": "NEG"}"#,
        ],
    );
    let ds = load(&eval, Task::SequenceClassification, &config, &opts);
    assert_eq!(ds.labels.as_ref().unwrap(), &set);
    assert_eq!(bad_lines(&ds), [1]);
    assert_eq!(ds.features[0].target, Target::Class(0));
}

#[test]
fn apply_label_set_writes_config_json_fields() {
    let mut config = DebertaV2Config::default();
    let set = LabelSet::new(
        vec!["b".into(), "a".into(), "c".into()],
        ProblemType::MultiLabel,
    )
    .unwrap();
    apply_label_set(&mut config, &set);
    let json: serde_json::Value = serde_json::from_str(&config.to_json_string().unwrap()).unwrap();
    assert_eq!(
        json["id2label"],
        serde_json::json!({"0": "b", "1": "a", "2": "c"})
    );
    assert_eq!(
        json["label2id"],
        serde_json::json!({"a": 1, "b": 0, "c": 2})
    );
    assert_eq!(json["num_labels"], 3);
    assert_eq!(json["problem_type"], "multi_label_classification");
    assert_eq!(config.num_labels(), 3);
    assert_eq!(LabelSet::from_config(&config).unwrap(), set);
    assert!(LabelSet::new(vec!["a".into(), "a".into()], ProblemType::SingleLabel).is_err());
    assert!(LabelSet::from_config(&DebertaV2Config::default()).is_none());
}

#[test]
fn float_labels_mean_regression_and_one_label_configs_regress() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "sts.jsonl",
        &[
            r#"{"text": "a", "text_pair": "b", "label": 3.8}"#,
            r#"{"text": "c", "text_pair": "d", "label": 1}"#,
            r#"{"text": "e", "text_pair": "f", "label": "high"}"#,
        ],
    );
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    let set = ds.labels.clone().unwrap();
    assert_eq!(set.problem_type, ProblemType::Regression);
    assert_eq!(set.names, ["LABEL_0"]);
    assert_eq!(bad_lines(&ds), [3]);
    assert!(message(&ds, 3).contains("number for regression"));
    let batch = ds.batch(&[0, 1], None).unwrap();
    assert_eq!(
        batch.labels,
        BatchLabels::Regression {
            values: vec![3.8, 1.0],
            width: 1
        }
    );

    // Integer scores with a num_labels=1 config are regression too (transformers' inference).
    let ints = write(
        &dir,
        "ints.jsonl",
        &[
            r#"{"text": "a", "label": 1}"#,
            r#"{"text": "b", "label": 5}"#,
        ],
    );
    let config = DebertaV2Config {
        num_labels_field: Some(1),
        ..Default::default()
    };
    let set = label_set_from(
        &ints,
        Task::SequenceClassification,
        &config,
        &DataOptions::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(set.problem_type, ProblemType::Regression);
    // Without it, integers are class ids (at least two classes).
    let set = label_set_from(
        &ints,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(set.problem_type, ProblemType::SingleLabel);
    assert_eq!(set.names.len(), 6);
    // One explicit label name means regression.
    let opts = DataOptions {
        labels: Some(vec!["score".into()]),
        ..Default::default()
    };
    let ds = load(
        &ints,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &opts,
    );
    assert_eq!(ds.labels.unwrap().problem_type, ProblemType::Regression);
}

#[test]
fn list_labels_mean_multi_label() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "ml.jsonl",
        &[
            r#"{"text": "a", "label": ["sports", "politics"]}"#,
            r#"{"text": "b", "label": []}"#,
            r#"{"text": "c", "label": ["tech", 0]}"#,
            r#"{"text": "d", "label": [[1]]}"#,
            r#"{"text": "e", "label": "tech"}"#,
            r#"{"text": "f", "label": [0, 0, 1]}"#,
        ],
    );
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    let set = ds.labels.clone().unwrap();
    assert_eq!(set.problem_type, ProblemType::MultiLabel);
    assert_eq!(set.names, ["politics", "sports", "tech"]);
    assert_eq!(bad_lines(&ds), [4]);
    let batch = ds.batch(&[0, 1, 2, 3, 4], None).unwrap();
    assert_eq!(
        batch.labels,
        BatchLabels::MultiLabel {
            values: vec![1., 1., 0., 0., 0., 0., 1., 0., 1., 0., 0., 1., 0., 0., 1.],
            width: 3
        }
    );

    // 0/1 vectors of one width: that many labels.
    let vectors = write(
        &dir,
        "v.jsonl",
        &[
            r#"{"text": "a", "label": [0, 1, 1, 0]}"#,
            r#"{"text": "b", "label": [1, 0, 0, 0]}"#,
        ],
    );
    let ds = load(
        &vectors,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert_eq!(ds.labels.as_ref().unwrap().names.len(), 4);
    assert_eq!(
        ds.features[0].target,
        Target::MultiLabel(vec![0., 1., 1., 0.])
    );
}

// ---------------------------------------------------------------- token classification

#[test]
fn token_classification_labels_first_sub_tokens_like_run_ner() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "ner.jsonl",
        &[
            r#"{"tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."], "tags": ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]}"#,
            r#"{"tokens": ["Xylophonists", "unbelievably", "(", "Zürich", ")"], "tags": ["O", "O", "O", "B-LOC", "O"]}"#,
            r#"{"tokens": ["a", "b"], "tags": ["O"]}"#,
            r#"{"tokens": ["a", ""], "tags": ["O", "O"]}"#,
            r#"{"tokens": "a b", "tags": ["O", "O"]}"#,
            r#"{"tokens": ["a"], "tags": [["O"]]}"#,
        ],
    );
    let ds = load(
        &path,
        Task::TokenClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert_eq!(
        ds.labels.as_ref().unwrap().names,
        ["B-LOC", "B-MISC", "B-ORG", "O"]
    );
    assert_eq!(bad_lines(&ds), [3, 4, 5, 6]);
    assert!(message(&ds, 3).contains("`tags` has 1"));
    assert!(message(&ds, 4).contains("`tokens[1]` is empty"));
    assert!(message(&ds, 5).contains("`tokens` must be a list"));
    assert!(message(&ds, 6).contains("`tags[0]`"));

    // transformers 5.24, is_split_into_words=True; labels sorted [B-LOC, B-MISC, B-ORG, O].
    let f = &ds.features[0];
    assert_eq!(
        f.sequences[0].input_ids,
        [1, 2805, 27144, 2324, 660, 264, 20007, 1668, 12649, 323, 2]
    );
    assert_eq!(
        f.target,
        Target::Tokens(vec![-100, 2, 3, 1, 3, 3, 3, 1, 3, 3, -100])
    );
    let f = &ds.features[1];
    // [CLS] ▁Xylo phon ists ▁unbelievably ▁( ▁Zürich ▁) [SEP]
    assert_eq!(
        f.sequences[0].input_ids,
        [1, 114998, 29534, 6467, 29306, 287, 71875, 1263, 2]
    );
    assert_eq!(
        f.target,
        Target::Tokens(vec![-100, 3, -100, -100, 3, 3, 0, 3, -100])
    );
    assert_eq!(f.word_starts, [(1, 0), (4, 1), (5, 2), (6, 3), (7, 4)]);
    assert_eq!(ds.examples.tokens[1].tags, ["O", "O", "O", "B-LOC", "O"]);

    // The slow (sentencepiece) tokenizer prepares the same features.
    let dir_v3 = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deberta-tokenizer/tests/fixtures/deberta-v3");
    let slow = Tokenizer::from_dir_with(dir_v3, deberta_tokenizer::Impl::Slow).unwrap();
    let ds_slow = load_jsonl(
        &path,
        Task::TokenClassification,
        &slow,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    )
    .unwrap();
    assert_eq!(ds_slow.features, ds.features);

    let batch = ds.batch(&[1, 0], None).unwrap();
    assert_eq!(batch.dims, [2, 11]);
    let BatchLabels::Tokens(t) = &batch.labels else {
        panic!()
    };
    assert_eq!(
        &t[..11],
        [-100, 3, -100, -100, 3, 3, 0, 3, -100, -100, -100]
    );
}

#[test]
fn token_classification_truncates_words_to_max_length() {
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (0..20).map(|i| format!("\"w{i}\"")).collect();
    let tags: Vec<&str> = (0..20).map(|_| "\"O\"").collect();
    let line = format!(
        r#"{{"tokens": [{}], "tags": [{}]}}"#,
        words.join(","),
        tags.join(",")
    );
    let path = write(&dir, "t.jsonl", &[&line]);
    let opts = DataOptions {
        max_length: 8,
        ..Default::default()
    };
    let ds = load(
        &path,
        Task::TokenClassification,
        &DebertaV2Config::default(),
        &opts,
    );
    let f = &ds.features[0];
    assert_eq!(f.sequences[0].input_ids.len(), 8);
    assert_eq!(f.sequences[0].input_ids.last(), Some(&2));
    assert!(f.word_starts.len() <= 6);
    assert_eq!(
        ds.examples.tokens[0].words.len(),
        20,
        "the gold words stay whole"
    );
}

// ---------------------------------------------------------------- question answering

const CONTEXT: &str = "France is a country in Europe. Its capital is Paris, a city on the Seine. Paris has many museums.";

fn qa_dataset(dir: &tempfile::TempDir) -> Dataset {
    let lines = [
        format!(
            r#"{{"id": "paris", "question": "  What is the capital of France?", "context": "{CONTEXT}", "answers": {{"text": ["Paris"], "answer_start": [46]}}}}"#
        ),
        format!(
            r#"{{"id": 7, "question": "What is the capital of France?", "context": "{CONTEXT}", "answers": {{"text": ["museums"], "answer_start": [89]}}}}"#
        ),
        format!(
            r#"{{"question": "What?", "context": "{CONTEXT}", "answers": {{"text": ["museums"], "answer_start": [95]}}}}"#
        ),
        format!(
            r#"{{"question": "What?", "context": "{CONTEXT}", "answers": {{"text": ["a"], "answer_start": []}}}}"#
        ),
        r#"{"question": "What?", "context": "", "answers": {"text": [], "answer_start": []}}"#
            .to_string(),
        format!(
            r#"{{"question": "What is the capital of France?", "context": "{CONTEXT}", "answers": {{"text": [], "answer_start": []}}}}"#
        ),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let path = write(dir, "qa.jsonl", &refs);
    let opts = DataOptions {
        max_length: 24,
        doc_stride: 4,
        ..Default::default()
    };
    load(
        &path,
        Task::QuestionAnswering,
        &DebertaV2Config::default(),
        &opts,
    )
}

#[test]
fn question_answering_windows_and_answer_positions_follow_run_qa() {
    let dir = tempfile::tempdir().unwrap();
    let ds = qa_dataset(&dir);
    assert_eq!(bad_lines(&ds), [3, 4, 5]);
    assert!(message(&ds, 3).contains("after the context"));
    assert!(message(&ds, 4).contains("answers.text"));
    assert!(message(&ds, 5).contains("`context` is empty"));
    assert_eq!(ds.examples.qa.len(), 3);
    assert_eq!(ds.examples.qa[1].id.as_deref(), Some("7"));
    // Two windows per example (transformers 5.24: max_length 24, stride 4, only_second).
    let per: Vec<usize> = ds.features.iter().map(|f| f.example).collect();
    assert_eq!(per, [0, 0, 1, 1, 2, 2]);
    assert_eq!(
        ds.features[0].sequences[0].input_ids,
        [
            1, 458, 269, 262, 1909, 265, 2378, 302, 2, 2378, 269, 266, 658, 267, 1611, 260, 2952,
            1909, 269, 3045, 261, 266, 707, 2
        ]
    );
    assert_eq!(
        ds.features[1].sequences[0].input_ids,
        [
            1, 458, 269, 262, 1909, 265, 2378, 302, 2, 3045, 261, 266, 707, 277, 262, 53745, 260,
            3045, 303, 386, 10078, 260, 2
        ]
    );
    assert_eq!(ds.features[1].context_offsets[9], Some((45, 51)));
    assert_eq!(ds.features[1].context_offsets[3], None);

    let tok = tokenizer();
    let answer_of = |fi: usize| {
        let f = &ds.features[fi];
        let Target::Span { start, end } = f.target else {
            panic!()
        };
        if (start, end) == (0, 0) {
            return None;
        }
        let ids = &f.sequences[0].input_ids[start as usize..=end as usize];
        Some(tok.decode(ids, true).unwrap().trim().to_string())
    };
    // "Paris" (46..51) lies in both windows; "museums" only in the second.
    assert_eq!(answer_of(0).as_deref(), Some("Paris"));
    assert_eq!(answer_of(1).as_deref(), Some("Paris"));
    assert_eq!(answer_of(2), None);
    assert_eq!(answer_of(3).as_deref(), Some("museums"));
    // No answer: [CLS] in every window.
    assert_eq!(answer_of(4), None);
    assert_eq!(answer_of(5), None);

    let batch = ds.batch(&[2, 3], None).unwrap();
    assert_eq!(
        batch.labels,
        BatchLabels::Spans {
            start: vec![0, 20],
            end: vec![0, 20]
        }
    );
}

#[test]
fn doc_stride_must_leave_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "qa.jsonl",
        &[r#"{"question": "q", "context": "c", "answers": {"text": [], "answer_start": []}}"#],
    );
    let err = load_jsonl(
        &path,
        Task::QuestionAnswering,
        &tokenizer(),
        &DebertaV2Config::default(),
        &DataOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("doc_stride"), "{err}");
}

#[test]
fn qa_predictions_pick_the_best_valid_span_over_windows() {
    let dir = tempfile::tempdir().unwrap();
    let ds = qa_dataset(&dir);
    let n = ds.len();
    let mut start = vec![vec![-100f32; 24]; n];
    let mut end = vec![vec![-100f32; 24]; n];
    // Example 0: the best logits point into the question (skipped), then at "Paris" in the
    // first window (token 19) with 5 + 5, while the second window's "Paris" (9) scores 4 + 4.
    start[0][2] = 50.0;
    end[0][3] = 50.0;
    start[0][19] = 5.0;
    end[0][19] = 5.0;
    start[1][9] = 4.0;
    end[1][9] = 4.0;
    // Example 1: ends before starts are skipped; "many museums" (19..=20) in the second window.
    start[3][21] = 9.0;
    end[3][18] = 9.5;
    start[3][19] = 3.0;
    end[3][20] = 3.0;
    // Example 2: spans longer than max_answer_length (3 here) are skipped.
    start[4][9] = 6.0;
    end[4][22] = 6.0;
    end[4][12] = 1.0;
    start[4][10] = 1.0;
    let mut short = ds.clone();
    short.max_answer_length = 3;
    let answers = qa_predictions(&short, &start, &end);
    // The v3 tokenizer's offsets include the space before a word, so run_qa's text does too
    // (SQuAD's normalisation strips it).
    assert_eq!(answers, [" Paris", " many museums", " is a country"]);
    // Nothing valid at all: run_qa's "empty".
    let flat = vec![vec![0f32; 24]; n];
    let none = qa_predictions(&short, &flat, &vec![vec![-1f32; 3]; n]);
    assert_eq!(none[0], "empty");
}

// ---------------------------------------------------------------- multiple choice

#[test]
fn multiple_choice_pairs_the_prompt_with_each_choice() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "mc.jsonl",
        &[
            r#"{"prompt": "The sky is", "choices": ["blue", "green", "made of cheese and other things"], "label": 0}"#,
            r#"{"prompt": "Grass is", "choices": ["red", "green"], "label": 1}"#,
            r#"{"prompt": "Snow is", "choices": ["white", "black", "hot"], "label": 3}"#,
            r#"{"prompt": "Fire is", "choices": ["hot", "cold", "wet"], "label": 0}"#,
        ],
    );
    let ds = load(
        &path,
        Task::MultipleChoice,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert_eq!(bad_lines(&ds), [2, 3]);
    assert!(message(&ds, 2).contains("first example has 3"));
    assert!(message(&ds, 3).contains("`label`"));
    let f = &ds.features[0];
    assert_eq!(f.sequences.len(), 3);
    let tok = tokenizer();
    let pair = tok
        .encode("The sky is", Some("green"), &Default::default())
        .unwrap();
    assert_eq!(f.sequences[1].input_ids, pair.input_ids);
    assert_eq!(f.sequences[1].token_type_ids, pair.token_type_ids);
    let batch = ds.batch(&[0, 1], None).unwrap();
    let l = f.sequences[2].input_ids.len();
    assert_eq!(batch.dims, [2, 3, l]);
    assert_eq!(batch.input_ids.len(), 2 * 3 * l);
    assert_eq!(batch.labels, BatchLabels::Classes(vec![0, 0]));
    let (input, labels) = batch.to_tensors(&Device::Cpu).unwrap();
    assert_eq!(input.input_ids.dims(), [2, 3, l]);
    assert_eq!(input.attention_mask.unwrap().dims(), [2, 3, l]);
    assert_eq!(labels.as_labels().labels.unwrap().dims(), [2]);
}

// ---------------------------------------------------------------- masked LM

fn mlm_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"text": "Sentence number {i} talks about the weather, trains and the sea."}}"#
            )
        })
        .collect()
}

#[test]
fn masked_lm_packs_blocks_wrapped_in_cls_sep_and_drops_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let lines = mlm_lines(10);
    let mut refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    refs.insert(3, r#"{"text": ""}"#);
    let path = write(&dir, "mlm.jsonl", &refs);
    let tok = tokenizer();
    let total: usize = (0..10)
        .map(|i| {
            let text = format!("Sentence number {i} talks about the weather, trains and the sea.");
            tok.encode_raw(&text).unwrap().len()
        })
        .sum();
    let opts = DataOptions {
        max_length: 18,
        ..Default::default()
    };
    let ds = load(&path, Task::MaskedLm, &DebertaV2Config::default(), &opts);
    assert_eq!(bad_lines(&ds), [4]);
    assert_eq!(ds.len(), total / 16);
    for f in &ds.features {
        let s = &f.sequences[0];
        assert_eq!(s.input_ids.len(), 18);
        assert_eq!((s.input_ids[0], s.input_ids[17]), (1, 2));
        assert_eq!(s.special_tokens_mask.iter().sum::<u32>(), 2);
    }
    // The stream, unwrapped, is the concatenation of the texts.
    let first: Vec<u32> = ds.features[0].sequences[0].input_ids[1..17].to_vec();
    let text0 = tok
        .encode_raw("Sentence number 0 talks about the weather, trains and the sea.")
        .unwrap();
    assert_eq!(
        &first[..text0.len().min(16)],
        &text0.ids[..text0.len().min(16)]
    );

    // A corpus shorter than one block gives that one short block.
    let one = write(&dir, "one.jsonl", &[r#"{"text": "Hello world"}"#]);
    let ds = load(
        &one,
        Task::MaskedLm,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.features[0].sequences[0].input_ids.first(), Some(&1));
    assert!(
        ds.batch(&[0], None).is_err(),
        "masked LM needs a masking seed"
    );
}

#[test]
fn masking_rates_follow_the_collator_and_are_a_function_of_seed_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let lines = mlm_lines(10_000);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let path = write(&dir, "mlm.jsonl", &refs);
    let opts = DataOptions {
        max_length: 130,
        ..Default::default()
    };
    let ds = load(&path, Task::MaskedLm, &DebertaV2Config::default(), &opts);
    let mlm = ds.mlm.unwrap();
    assert_eq!(mlm.mask_id, 128000);
    assert_eq!(mlm.vocab_len, 128001, "len(tokenizer)");
    let indices: Vec<usize> = (0..ds.len()).collect();
    let seed = MaskingSeed { seed: 42, step: 7 };
    let batch = ds.batch(&indices, Some(seed)).unwrap();
    let BatchLabels::Tokens(labels) = &batch.labels else {
        panic!()
    };
    let originals: Vec<u32> = ds
        .features
        .iter()
        .flat_map(|f| f.sequences[0].input_ids.clone())
        .collect();
    let specials: Vec<u32> = ds
        .features
        .iter()
        .flat_map(|f| f.sequences[0].special_tokens_mask.clone())
        .collect();
    assert_eq!(
        originals.len(),
        batch.input_ids.len(),
        "full blocks, no padding"
    );
    let (mut candidates, mut selected, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
    for i in 0..originals.len() {
        if specials[i] == 1 {
            assert_eq!(labels[i], -100);
            assert_eq!(batch.input_ids[i], originals[i]);
            continue;
        }
        candidates += 1;
        if labels[i] == -100 {
            assert_eq!(batch.input_ids[i], originals[i]);
            continue;
        }
        selected += 1;
        assert_eq!(labels[i], originals[i] as i64);
        match batch.input_ids[i] {
            128000 => masked += 1,
            id if id == originals[i] => kept += 1,
            id => {
                assert!(id < 128001);
                random += 1;
            }
        }
    }
    assert!(candidates > 100_000, "{candidates}");
    let rate = selected as f64 / candidates as f64;
    assert!((rate - 0.15).abs() < 0.005, "selected {rate}");
    let share = |n: usize| n as f64 / selected as f64;
    assert!(
        (share(masked) - 0.8).abs() < 0.015,
        "masked {}",
        share(masked)
    );
    // A random draw equal to the original counts as kept (1 in 128001).
    assert!(
        (share(random) - 0.1).abs() < 0.01,
        "random {}",
        share(random)
    );
    assert!((share(kept) - 0.1).abs() < 0.01, "kept {}", share(kept));

    // Deterministic per (seed, step) and independent of the batch's order.
    let again = ds.batch(&[3, 1], Some(seed)).unwrap();
    let l = 130;
    assert_eq!(again.input_ids[l..2 * l], batch.input_ids[l..2 * l]);
    assert_eq!(again.input_ids[..l], batch.input_ids[3 * l..4 * l]);
    let next = ds
        .batch(&[1], Some(MaskingSeed { seed: 42, step: 8 }))
        .unwrap();
    assert_ne!(next.input_ids[..l], batch.input_ids[l..2 * l]);
    let other = ds
        .batch(&[1], Some(MaskingSeed { seed: 43, step: 7 }))
        .unwrap();
    assert_ne!(other.input_ids[..l], batch.input_ids[l..2 * l]);
}

// ---------------------------------------------------------------- files, tensors, tasks

#[test]
fn a_file_without_usable_lines_is_a_data_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.jsonl", &["{", r#"{"text": "x"}"#]);
    let err = load_jsonl(
        &path,
        Task::SequenceClassification,
        &tokenizer(),
        &DebertaV2Config::default(),
        &DataOptions::default(),
    )
    .unwrap_err();
    let Error::Data { path: p, message } = &err else {
        panic!("{err}")
    };
    assert!(p.ends_with("bad.jsonl"));
    assert!(message.contains("line 1"), "{message}");
    let missing = load_jsonl(
        &dir.path().join("nope.jsonl"),
        Task::MaskedLm,
        &tokenizer(),
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn an_over_long_line_is_skipped_without_failing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, r#"{{"text": "ok"}}"#).unwrap();
    let long = format!(
        r#"{{"text": "{}"}}"#,
        "a".repeat(deberta_train::data::MAX_LINE_BYTES)
    );
    writeln!(f, "{long}").unwrap();
    writeln!(f, r#"{{"text": "also ok"}}"#).unwrap();
    drop(f);
    let ds = load(
        &path,
        Task::MaskedLm,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    assert_eq!(bad_lines(&ds), [2]);
    assert!(message(&ds, 2).contains("longer than"));
    assert_eq!(ds.examples.lines, [1, 3]);
}

#[test]
fn tensors_have_the_shapes_and_dtypes_the_heads_take() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "r.jsonl",
        &[
            r#"{"text": "a b c", "label": 0.5}"#,
            r#"{"text": "d", "label": 2.0}"#,
        ],
    );
    let ds = load(
        &path,
        Task::SequenceClassification,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    let (input, labels) = ds
        .batch(&[0, 1], None)
        .unwrap()
        .to_tensors(&Device::Cpu)
        .unwrap();
    assert_eq!(input.input_ids.dtype(), DType::U32);
    let l = input.input_ids.dims()[1];
    assert_eq!(input.token_type_ids.unwrap().dims(), [2, l]);
    let t = labels.labels.unwrap();
    assert_eq!((t.dims(), t.dtype()), (&[2usize, 1][..], DType::F32));

    let ds = qa_dataset(&dir);
    let (_, labels) = ds
        .batch(&[0, 1, 2], None)
        .unwrap()
        .to_tensors(&Device::Cpu)
        .unwrap();
    let l = labels.as_labels();
    assert!(l.labels.is_none());
    assert_eq!(l.start_positions.unwrap().dtype(), DType::I64);
    assert_eq!(l.end_positions.unwrap().to_vec1::<i64>().unwrap().len(), 3);

    let mlm = write(
        &dir,
        "m.jsonl",
        &[r#"{"text": "one two three"}"#, r#"{"text": "four"}"#],
    );
    let ds = load(
        &mlm,
        Task::MaskedLm,
        &DebertaV2Config::default(),
        &DataOptions::default(),
    );
    let batch = ds
        .batch(&[0], Some(MaskingSeed { seed: 1, step: 0 }))
        .unwrap();
    let (input, labels) = batch.to_tensors(&Device::Cpu).unwrap();
    assert_eq!(labels.labels.unwrap().dims(), input.input_ids.dims());
}

#[test]
fn tasks_map_from_heads() {
    assert_eq!(
        Task::from_head(HeadKind::TokenClassification).unwrap(),
        Task::TokenClassification
    );
    assert_eq!(
        Task::from_head(HeadKind::MaskedLm).unwrap().head(),
        HeadKind::MaskedLm
    );
    assert!(Task::from_head(HeadKind::Base).is_err());
    assert_eq!(ProblemType::Regression.as_str(), "regression");
    assert_eq!(
        ProblemType::MultiLabel.as_str(),
        "multi_label_classification"
    );
}
