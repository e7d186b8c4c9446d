//! Every route on the committed fixture models: the JSON equals what `deberta`'s subcommands
//! print for the same inputs (the pipelines' serialised outputs), TEI's shapes and headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, fixture, get, TestServer};
use deberta::HeadKind;
use deberta_server::ServerConfig;
use deberta_tasks::*;
use serde_json::{json, Value};

const TOL: f64 = 1e-5;

fn to_json<T: serde::Serialize>(x: T) -> Value {
    serde_json::to_value(x).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_matches_classify_and_has_tei_shapes_and_headers() {
    let dir = fixture("nli");
    let server = TestServer::start(
        &dir,
        HeadKind::SequenceClassification,
        ServerConfig::default(),
    )
    .await;
    let cli = TextClassification::new(common::engine(&dir, HeadKind::SequenceClassification));
    let all = ClassifyOptions {
        top_k: TopK::All,
        function_to_apply: None,
    };
    let one = |text: &str, pair: Option<&str>| ClassifyInput {
        text: text.into(),
        text_pair: pair.map(Into::into),
    };

    let r = server
        .post("/predict", &json!({"inputs": "I love this."}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_close(
        &r.json(),
        &to_json(cli.run(&one("I love this.", None), &all).unwrap()),
        TOL,
    );
    for h in [
        "x-compute-time",
        "x-compute-tokens",
        "x-total-time",
        "x-tokenization-time",
        "x-queue-time",
        "x-inference-time",
        "x-request-id",
    ] {
        assert!(r.header(h).is_some(), "missing {h}");
    }
    assert!(
        r.header("x-compute-tokens")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 2
    );

    // A pair, and a batch of a text and a pair (TEI's forms).
    let r = server
        .post(
            "/predict",
            &json!({"inputs": ["A man eats.", "Someone eats."]}),
        )
        .await;
    let want = cli
        .run(&one("A man eats.", Some("Someone eats.")), &all)
        .unwrap();
    assert_close(&r.json(), &to_json(want), TOL);
    let r = server
        .post(
            "/predict",
            &json!({"inputs": [["Hello there."], ["A man eats.", "Someone eats."]]}),
        )
        .await;
    let want = cli.run_batch(
        &[
            one("Hello there.", None),
            one("A man eats.", Some("Someone eats.")),
        ],
        &all,
    );
    let want: Vec<Value> = want.into_iter().map(|w| to_json(w.unwrap())).collect();
    assert_close(&r.json(), &Value::Array(want), TOL);

    // raw_scores = `--function-to-apply none`; scores sorted best first.
    let raw = ClassifyOptions {
        top_k: TopK::All,
        function_to_apply: Some(ScoreFunction::None),
    };
    let r = server
        .post("/predict", &json!({"inputs": "Fine.", "raw_scores": true}))
        .await;
    assert_close(
        &r.json(),
        &to_json(cli.run(&one("Fine.", None), &raw).unwrap()),
        TOL,
    );
    let scores: Vec<f64> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));

    // Request ids: echoed when sent, generated otherwise.
    let r = common::post(
        server.addr,
        "/predict",
        &json!({"inputs": "x y"}),
        &[("x-request-id", "abc-123")],
    )
    .await
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_shot_matches_the_cli_and_wrong_routes_name_the_head() {
    let dir = fixture("nli");
    let server = TestServer::start(
        &dir,
        HeadKind::SequenceClassification,
        ServerConfig::default(),
    )
    .await;
    let cli = ZeroShot::new(common::engine(&dir, HeadKind::SequenceClassification));
    for multi_label in [false, true] {
        let options = ZeroShotOptions {
            candidate_labels: vec!["sports".into(), "politics".into(), "cooking".into()],
            multi_label,
            ..Default::default()
        };
        let texts = [
            "The match ended 3-1.",
            "Parliament passed the bill after a long debate.",
        ];
        let body = json!({"inputs": texts, "candidate_labels": "sports, politics, cooking", "multi_label": multi_label});
        let r = server.post("/zero-shot", &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let inputs: Vec<ZeroShotInput> = texts
            .iter()
            .map(|t| ZeroShotInput {
                text: t.to_string(),
                candidate_labels: None,
            })
            .collect();
        let want: Vec<Value> = cli
            .run_batch(&inputs, &options)
            .into_iter()
            .map(|w| to_json(w.unwrap()))
            .collect();
        assert_close(&r.json(), &Value::Array(want), TOL);
    }
    // A single input gives a single object.
    let r = server
        .post("/zero-shot", &json!({"inputs": "Tea time.", "candidate_labels": ["food", "war"], "hypothesis_template": "It is about {}."}))
        .await;
    assert_eq!(r.json()["sequence"], "Tea time.");

    for (route, body, needs) in [
        ("/fill-mask", json!({"inputs": "a [MASK]"}), "masked-lm"),
        (
            "/qa",
            json!({"inputs": {"question": "q?", "context": "c."}}),
            "question-answering",
        ),
        (
            "/token-classify",
            json!({"inputs": "Ann lives in Paris."}),
            "token-classification",
        ),
        (
            "/choice",
            json!({"inputs": {"prompt": "p", "choices": ["a", "b"]}}),
            "multiple-choice",
        ),
    ] {
        let r = server.post(route, &body).await;
        assert_eq!(r.status, 422, "{route}");
        assert_eq!(r.error_type(), "Validation");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needs) && msg.contains(route), "{msg}");
    }
    // /rerank needs one label.
    let r = server
        .post("/rerank", &json!({"query": "q", "texts": ["a"]}))
        .await;
    assert_eq!(r.status, 422);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_scores_pairs_with_a_one_label_model() {
    let tmp = tempfile::tempdir().unwrap();
    common::make_reranker(tmp.path());
    let server = TestServer::start(
        tmp.path(),
        HeadKind::SequenceClassification,
        ServerConfig::default(),
    )
    .await;
    let cli = TextClassification::new(common::engine(tmp.path(), HeadKind::SequenceClassification));
    let texts = [
        "Deep learning is a kind of machine learning.",
        "Paris is in France.",
        "Cats sleep a lot.",
    ];
    let body = json!({"query": "What is deep learning?", "texts": texts, "return_text": true});
    let r = server.post("/rerank", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ranks = r.json();
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), 3);
    let options = ClassifyOptions {
        top_k: TopK::All,
        function_to_apply: Some(ScoreFunction::Sigmoid),
    };
    for rank in ranks {
        let i = rank["index"].as_u64().unwrap() as usize;
        assert_eq!(rank["text"], texts[i]);
        let input = ClassifyInput {
            text: "What is deep learning?".into(),
            text_pair: Some(texts[i].into()),
        };
        let ClassifyOutput::List(want) = cli.run(&input, &options).unwrap() else {
            panic!()
        };
        assert!((rank["score"].as_f64().unwrap() - want[0].score).abs() < TOL);
    }
    let scores: Vec<f64> = ranks.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let info = get(server.addr, "/info", &[]).await.unwrap().json();
    assert!(info["model_type"]["reranker"].is_object(), "{info}");
    let r = server
        .post(
            "/rerank",
            &json!({"query": "q", "texts": ["a"], "raw_scores": true}),
        )
        .await;
    assert!(r.json()[0].get("text").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_mask_matches_the_cli() {
    let dir = fixture("fill_mask");
    let server = TestServer::start(&dir, HeadKind::MaskedLm, ServerConfig::default()).await;
    let cli = FillMask::new(common::engine(&dir, HeadKind::MaskedLm)).unwrap();
    let text = "The capital of France is [MASK].";
    let r = server.post("/fill-mask", &json!({"inputs": text})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_close(
        &r.json(),
        &to_json(cli.run(text, &FillMaskOptions::default()).unwrap()),
        TOL,
    );
    let options = FillMaskOptions {
        top_k: 2,
        targets: Some(vec!["Paris".into(), "London".into()]),
    };
    let texts = ["[MASK] is a city.", "The [MASK] sat on the [MASK]."];
    let r = server
        .post(
            "/fill-mask",
            &json!({"inputs": texts, "top_k": 2, "targets": ["Paris", "London"]}),
        )
        .await;
    let want: Vec<Value> = cli
        .run_batch(&texts, &options)
        .into_iter()
        .map(|w| to_json(w.unwrap()))
        .collect();
    assert_close(&r.json(), &Value::Array(want), TOL);
    let r = server
        .post("/fill-mask", &json!({"inputs": "no mask here"}))
        .await;
    assert_eq!((r.status, r.error_type().as_str()), (422, "Validation"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_classify_matches_the_cli() {
    let dir = fixture("ner");
    let server =
        TestServer::start(&dir, HeadKind::TokenClassification, ServerConfig::default()).await;
    let cli = TokenClassification::new(common::engine(&dir, HeadKind::TokenClassification));
    let text = "My name is Wolfgang and I live in Berlin.";
    for (agg, name) in [
        (Aggregation::None, "none"),
        (Aggregation::Simple, "simple"),
        (Aggregation::Max, "max"),
    ] {
        let options = NerOptions {
            aggregation: agg,
            ignore_labels: vec![],
            stride: None,
        };
        let body = json!({"inputs": [text, "Ann met Bob."], "aggregation_strategy": name, "ignore_labels": []});
        let r = server.post("/token-classify", &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let want: Vec<Value> = cli
            .run_batch(&[text, "Ann met Bob."], &options)
            .into_iter()
            .map(|w| to_json(w.unwrap()))
            .collect();
        assert_close(&r.json(), &Value::Array(want), TOL);
    }
    let r = server
        .post("/token-classify", &json!({"inputs": text}))
        .await;
    assert_close(
        &r.json(),
        &to_json(cli.run(text, &NerOptions::default()).unwrap()),
        TOL,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_matches_the_cli() {
    let dir = fixture("qa");
    let server =
        TestServer::start(&dir, HeadKind::QuestionAnswering, ServerConfig::default()).await;
    let cli = QuestionAnswering::new(common::engine(&dir, HeadKind::QuestionAnswering));
    let input = QaInput {
        question: "Where do I live?".into(),
        context: "My name is Sarah and I live in London. I work in a bakery near the river.".into(),
    };
    let r = server.post("/qa", &json!({"inputs": input})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_close(
        &r.json(),
        &to_json(cli.run(&input, &QaOptions::default()).unwrap()),
        TOL,
    );
    let options = QaOptions {
        top_k: 3,
        max_answer_len: 5,
        handle_impossible_answer: true,
        ..Default::default()
    };
    let body = json!({"inputs": [input.clone()], "top_k": 3, "max_answer_len": 5, "handle_impossible_answer": true});
    let r = server.post("/qa", &body).await;
    let want = to_json(vec![cli.run(&input, &options).unwrap()]);
    assert_close(&r.json(), &want, TOL);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choice_matches_the_cli() {
    let dir = fixture("choice");
    let server = TestServer::start(&dir, HeadKind::MultipleChoice, ServerConfig::default()).await;
    let cli = MultipleChoice::new(common::engine(&dir, HeadKind::MultipleChoice));
    let inputs = vec![
        ChoiceInput {
            prompt: "The sky is".into(),
            choices: vec!["blue.".into(), "made of green cheese and jam.".into()],
        },
        ChoiceInput {
            prompt: "Water boils at".into(),
            choices: vec![
                "100 degrees.".into(),
                "night.".into(),
                "the station.".into(),
            ],
        },
    ];
    let r = server.post("/choice", &json!({"inputs": inputs})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let want: Vec<Value> = cli
        .run_batch(&inputs)
        .into_iter()
        .map(|w| to_json(w.unwrap()))
        .collect();
    assert_close(&r.json(), &Value::Array(want), TOL);
    let r = server.post("/choice", &json!({"inputs": inputs[0]})).await;
    assert_close(&r.json(), &to_json(cli.run(&inputs[0]).unwrap()), TOL);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_decode_info_health_metrics_and_openapi() {
    let dir = fixture("nli");
    let server = TestServer::start(
        &dir,
        HeadKind::SequenceClassification,
        ServerConfig::default(),
    )
    .await;
    let tok = common::engine(&dir, HeadKind::SequenceClassification)
        .tokenizer()
        .clone();

    let text = "Zoë likes tea.";
    let r = server.post("/tokenize", &json!({"inputs": text})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens = r.json();
    let tokens = tokens[0].as_array().unwrap();
    let enc = tok.encode(text, None, &Default::default()).unwrap();
    assert_eq!(tokens.len(), enc.input_ids.len());
    assert_eq!(tokens[0]["special"], true);
    assert!(tokens[0]["start"].is_null());
    for t in &tokens[1..tokens.len() - 1] {
        let (a, b) = (
            t["start"].as_u64().unwrap() as usize,
            t["stop"].as_u64().unwrap() as usize,
        );
        assert_eq!(t["text"].as_str().unwrap(), &text[a..b], "byte offsets");
    }
    let ids: Vec<u32> = tokens
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, enc.input_ids);
    let r = server
        .post(
            "/tokenize",
            &json!({"inputs": ["a b", "c"], "add_special_tokens": false}),
        )
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert_eq!(
        r.json()[1].as_array().unwrap().len(),
        tok.encode_raw("c").unwrap().ids.len()
    );

    let r = server.post("/decode", &json!({"ids": ids})).await;
    assert_eq!(r.json(), json!([tok.decode(&ids, true).unwrap()]));
    let r = server
        .post(
            "/decode",
            &json!({"ids": [ids.clone(), ids], "skip_special_tokens": false}),
        )
        .await;
    assert!(r.json()[0].as_str().unwrap().contains("[CLS]"));

    let info = get(server.addr, "/info", &[]).await.unwrap().json();
    assert_eq!(info["head"], "DebertaV2ForSequenceClassification");
    assert_eq!(info["max_batch_tokens"], 16384);
    assert_eq!(info["max_client_batch_size"], 32);
    assert_eq!(
        info["model_type"]["classifier"]["id2label"]["0"],
        "entailment"
    );
    assert_eq!(info["routes"], json!(["/predict", "/rerank", "/zero-shot"]));

    assert_eq!(get(server.addr, "/health", &[]).await.unwrap().status, 200);

    let m = get(server.addr, "/metrics", &[]).await.unwrap();
    assert_eq!(m.status, 200);
    let text = m.text();
    for name in [
        "te_request_count",
        "te_request_success",
        "te_queue_size",
        "te_batch_next_size",
        "te_batch_next_tokens",
        "te_request_input_length",
        "te_request_duration",
        "te_request_inference_duration",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }

    let spec = get(server.addr, "/api-doc/openapi.json", &[])
        .await
        .unwrap()
        .json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for route in [
        "/predict",
        "/rerank",
        "/tokenize",
        "/decode",
        "/info",
        "/health",
        "/metrics",
        "/fill-mask",
        "/zero-shot",
        "/token-classify",
        "/qa",
        "/choice",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} not in the OpenAPI document"
        );
    }
    check_refs(&spec, &spec);
    let predict = &spec["paths"]["/predict"]["post"]["responses"];
    for code in ["200", "400", "413", "422", "424", "429"] {
        assert!(predict.get(code).is_some(), "/predict documents {code}");
    }
    let docs = get(server.addr, "/docs/", &[]).await.unwrap();
    assert_eq!(docs.status, 200);
    assert!(docs.text().to_lowercase().contains("swagger"));
    server.stop().await;
}

/// Every `$ref` of the document resolves inside it.
fn check_refs(doc: &Value, node: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let path = r.trim_start_matches("#/");
                let mut target = doc;
                for part in path.split('/') {
                    target = &target[part];
                }
                assert!(!target.is_null(), "unresolved $ref {r}");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}
