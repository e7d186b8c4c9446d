//! TensorFlow weight names <-> PyTorch (transformers) names, and how each tensor's layout
//! differs between the two.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/deberta_v2/modeling_tf_deberta_v2.py>
//! (`name=` of each Keras layer and `add_weight`; e.g. `pos_proj` at L691, `pos_q_proj` at L698,
//! the conv kernel at L363, the position table at L963).
//!
//! | TF (after the Keras model name) | PyTorch | layout |
//! |---|---|---|
//! | `…/LayerNorm/gamma`, `…/beta` | `….LayerNorm.weight`, `.bias` | same |
//! | `…/kernel` of a Dense | `….weight` | `[in, out]` vs `[out, in]` |
//! | `…/word_embeddings/weight` | `….word_embeddings.weight` | same |
//! | `…/{position,token_type}_embeddings/embeddings` | `….weight` | same |
//! | `encoder/rel_embeddings.weight` | `encoder.rel_embeddings.weight` | same |
//! | `layer_._{i}` | `layer.{i}` | |
//! | `attention/self/pos_proj`, `pos_q_proj` | `pos_key_proj`, `pos_query_proj` | Dense |
//! | `encoder/conv/conv/kernel` | `encoder.conv.conv.weight` | `[k, H_in, H_out]` vs `[H_out, H_in/groups, k]` |

/// How a tensor's TF layout maps to the PyTorch one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Stored identically.
    Same,
    /// A Dense kernel: TF `[in, out]`, PyTorch `[out, in]`.
    Transposed,
    /// The nGiE conv kernel: TF `[k, H_in, H_out]`, PyTorch `[H_out, H_in / groups, k]`.
    ConvKernel,
}

/// Leaf names that differ: (TF, PyTorch).
const LEAVES: [(&str, &str); 3] = [("gamma", "weight"), ("beta", "bias"), ("kernel", "weight")];

/// Layer names that differ: (TF, PyTorch).
const LAYERS: [(&str, &str); 2] = [
    ("pos_proj", "pos_key_proj"),
    ("pos_q_proj", "pos_query_proj"),
];

/// The PyTorch name and layout of a TF weight name such as
/// `deberta/encoder/layer_._0/attention/self/query_proj/kernel:0` (the Keras model name
/// already removed). `None` for names that have no PyTorch counterpart.
pub fn tf_to_pt(tf_name: &str) -> Option<(String, Layout)> {
    let base = tf_name.strip_suffix(":0").unwrap_or(tf_name);
    let parts: Vec<&str> = base.split('/').collect();
    let (leaf, layers) = parts.split_last()?;
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    for layer in layers {
        if let Some(i) = layer.strip_prefix("layer_._") {
            out.push(format!("layer.{i}"));
        } else if let Some((_, pt)) = LAYERS.iter().find(|(tf, _)| tf == layer) {
            out.push((*pt).to_string());
        } else {
            out.push((*layer).to_string());
        }
    }
    let parent = layers.last().copied().unwrap_or("");
    let (pt_leaf, layout) = match *leaf {
        "kernel" if parent == "conv" => ("weight", Layout::ConvKernel),
        "kernel" => ("weight", Layout::Transposed),
        "embeddings" if parent.ends_with("_embeddings") => ("weight", Layout::Same),
        other => (
            LEAVES
                .iter()
                .find(|(tf, _)| *tf == other)
                .map_or(other, |(_, pt)| *pt),
            Layout::Same,
        ),
    };
    out.push(pt_leaf.to_string());
    let name = out.join(".");
    is_known(&name).then_some((name, layout))
}

fn is_known(pt_name: &str) -> bool {
    pt_name.starts_with("deberta.") || HEAD_PREFIXES.iter().any(|p| pt_name.starts_with(p))
}

/// Top-level PyTorch names of the head layers TF has.
const HEAD_PREFIXES: [&str; 4] = ["cls.predictions.", "pooler.", "classifier.", "qa_outputs."];

/// The TF name (without the Keras model name and `:0`) and layout of a PyTorch weight name of a
/// head model (`deberta.…`, `cls.predictions.…`, ...). `None` when TF has no such weight.
pub fn pt_to_tf(pt_name: &str) -> Option<(String, Layout)> {
    let parts: Vec<&str> = pt_name.split('.').collect();
    let (leaf, layers) = parts.split_last()?;
    if !is_known(pt_name) || pt_name.starts_with("cls.predictions.decoder.") {
        return None;
    }
    if pt_name == "deberta.encoder.rel_embeddings.weight" {
        return Some(("deberta/encoder/rel_embeddings.weight".into(), Layout::Same));
    }
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    let mut i = 0;
    while let Some(layer) = layers.get(i) {
        match (*layer, layers.get(i + 1)) {
            ("layer", Some(n)) if n.parse::<usize>().is_ok() => {
                out.push(format!("layer_._{n}"));
                i += 2;
                continue;
            }
            _ => {}
        }
        let tf = LAYERS
            .iter()
            .find(|(_, pt)| pt == layer)
            .map_or(*layer, |(tf, _)| *tf);
        out.push(tf.to_string());
        i += 1;
    }
    let parent = layers.last().copied().unwrap_or("");
    let (tf_leaf, layout) = pt_leaf_to_tf(parent, leaf)?;
    out.push(tf_leaf.to_string());
    Some((out.join("/"), layout))
}

fn pt_leaf_to_tf(parent: &str, leaf: &str) -> Option<(&'static str, Layout)> {
    Some(match (parent, leaf) {
        ("LayerNorm", "weight") => ("gamma", Layout::Same),
        ("LayerNorm", "bias") => ("beta", Layout::Same),
        ("word_embeddings", "weight") => ("weight", Layout::Same),
        ("position_embeddings" | "token_type_embeddings", "weight") => ("embeddings", Layout::Same),
        ("conv", "weight") => ("kernel", Layout::ConvKernel),
        (_, "weight") => ("kernel", Layout::Transposed),
        (_, "bias") => ("bias", Layout::Same),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let cases = [
            (
                "deberta/encoder/layer_._1/attention/self/pos_proj/kernel:0",
                "deberta.encoder.layer.1.attention.self.pos_key_proj.weight",
                Layout::Transposed,
            ),
            (
                "deberta/encoder/layer_._0/attention/self/pos_q_proj/bias:0",
                "deberta.encoder.layer.0.attention.self.pos_query_proj.bias",
                Layout::Same,
            ),
            (
                "deberta/embeddings/LayerNorm/gamma:0",
                "deberta.embeddings.LayerNorm.weight",
                Layout::Same,
            ),
            (
                "deberta/embeddings/position_embeddings/embeddings:0",
                "deberta.embeddings.position_embeddings.weight",
                Layout::Same,
            ),
            (
                "deberta/embeddings/word_embeddings/weight:0",
                "deberta.embeddings.word_embeddings.weight",
                Layout::Same,
            ),
            (
                "deberta/encoder/rel_embeddings.weight:0",
                "deberta.encoder.rel_embeddings.weight",
                Layout::Same,
            ),
            (
                "deberta/encoder/conv/conv/kernel:0",
                "deberta.encoder.conv.conv.weight",
                Layout::ConvKernel,
            ),
            (
                "cls/predictions/bias:0",
                "cls.predictions.bias",
                Layout::Same,
            ),
            (
                "cls/predictions/transform/LayerNorm/beta:0",
                "cls.predictions.transform.LayerNorm.bias",
                Layout::Same,
            ),
            (
                "qa_outputs/kernel:0",
                "qa_outputs.weight",
                Layout::Transposed,
            ),
        ];
        for (tf, pt, layout) in cases {
            assert_eq!(tf_to_pt(tf), Some((pt.to_string(), layout)), "{tf}");
            let back = pt_to_tf(pt).unwrap();
            assert_eq!(format!("{}:0", back.0), tf, "{pt}");
            assert_eq!(back.1, layout);
        }
    }

    #[test]
    fn rejects_names_tf_lacks() {
        assert_eq!(pt_to_tf("lm_predictions.lm_head.dense.weight"), None);
        assert_eq!(pt_to_tf("cls.predictions.decoder.weight"), None);
        assert_eq!(tf_to_pt("something/else:0"), None);
    }
}
