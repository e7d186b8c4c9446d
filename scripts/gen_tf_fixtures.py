#!/usr/bin/env python3
"""TensorFlow fixtures (issue 6): tf_model.h5 checkpoints written by the TF classes of
transformers 4.57.6, their outputs, a PyTorch cross-check, and `deberta convert` round trips.

Needs two reference environments (../shared/reference/setup.sh makes the first):
    ~/deberta-ref/venv     torch 2.15.0 + transformers 5.24.0 (PyTorch classes)
    ~/deberta-ref/venv457  transformers 4.57.6 + tensorflow-cpu 2.20.0 + tf-keras 2.20.1
                           (pip install tensorflow-cpu==2.20.0 tf-keras==2.20.1)

Run from the repository root with the TF environment; it calls the torch one itself:
    ~/deberta-ref/venv457/bin/python scripts/gen_tf_fixtures.py            # fixtures + round trips
    ~/deberta-ref/venv457/bin/python scripts/gen_tf_fixtures.py roundtrip  # round trips only
    ~/deberta-ref/venv457/bin/python scripts/gen_tf_fixtures.py fixtures   # no round trips

Writes fixtures/tf/<case>/{config.json, tf_model.h5, input.json, expected.safetensors},
fixtures/tf/manifest.json, fixtures/tf/pt_vs_tf.json (the PyTorch classes on the same weights)
and fixtures/tf/convert_roundtrip.json (each `deberta convert` direction loaded back by
transformers). Outputs are committed; CI never runs this script.

TF zeroes the attention of padded query rows where PyTorch (>= 4.47) spreads it uniformly, so
per-token outputs are compared at real tokens only, and sequence-level logits only for rows
whose first token is real (REFERENCE.md §2.4).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

TF_VERSION = "2.20.0"
TF_KERAS_VERSION = "2.20.1"
TRANSFORMERS_TF_VERSION = "4.57.6"
TORCH_PYTHON = os.path.expanduser("~/deberta-ref/venv/bin/python")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROOT = os.path.join(REPO, "fixtures", "tf")

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=128, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
V3 = dict(relative_attention=True, position_buckets=32, norm_rel_ebd="layer_norm", share_att_key=True,
          pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0, max_relative_positions=-1)
CONV = dict(V3, conv_kernel_size=3, conv_act="gelu", pooler_hidden_act="tanh")
# DeBERTa-v2-base style: absolute positions, token types, separate pos_proj / pos_q_proj.
V2_ABS = dict(V3, position_biased_input=True, type_vocab_size=2, share_att_key=False)

HEADS = {
    "base": "DebertaV2Model",
    "mlm": "DebertaV2ForMaskedLM",
    "seq": "DebertaV2ForSequenceClassification",
    "tok": "DebertaV2ForTokenClassification",
    "qa": "DebertaV2ForQuestionAnswering",
    "mc": "DebertaV2ForMultipleChoice",
}

# name -> (head, config overrides, edit)
CASES = {f"{h}_v3": (h, dict(V3, num_labels=3 if h in ("seq", "tok") else 2), None) for h in HEADS}
CASES.update({f"{h}_conv": (h, dict(CONV, num_labels=3 if h in ("seq", "tok") else 2), None) for h in HEADS})
CASES.update({
    "base_v2_abs": ("base", V2_ABS, None),
    "seq_v2_abs": ("seq", dict(V2_ABS, num_labels=2), None),
    "mlm_embedding_size": ("mlm", dict(CONV, embedding_size=24), None),
    # TF ignores conv_groups and stores a full kernel; with block-diagonal weights it computes
    # exactly the grouped PyTorch conv, which is what our loader extracts.
    "base_conv_groups2_block_diagonal": ("base", dict(CONV, conv_groups=2), "block_diagonal"),
})


# ---------------------------------------------------------------------------------------------
# The TF side (this interpreter).

def tf_env():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras
    import transformers
    have = (tf.__version__, tf_keras.__version__, transformers.__version__)
    want = (TF_VERSION, TF_KERAS_VERSION, TRANSFORMERS_TF_VERSION)
    if have != want:
        sys.exit(f"need tensorflow/tf-keras/transformers {want}, have {have}")
    return tf, transformers


def perturb_tf(model, seed, edit):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        noise = rng.standard_normal(w.shape).astype(np.float32)
        name = w.name
        if "LayerNorm/gamma" in name:
            value = 1.0 + 0.2 * noise
        elif name.endswith("bias:0") or name.endswith("beta:0"):
            value = 0.1 * noise
        else:
            value = 0.15 * noise
        if edit == "block_diagonal" and name.endswith("conv/conv/kernel:0"):
            k, h_in, h_out = value.shape
            groups = getattr(model.config, "conv_groups", 1)
            gin = np.arange(h_in)[:, None] // (h_in // groups)
            gout = np.arange(h_out)[None, :] // (h_out // groups)
            value = value * (gin == gout)[None, :, :]
        w.assign(value)


def make_inputs(head, cfg, seed):
    rng = np.random.default_rng(seed + 1)
    lens = [12, 9, 5, 12, 7, 3] if head == "mc" else [12, 9, 5]
    L = max(lens)
    ids = rng.integers(4, cfg.vocab_size, (len(lens), L))
    mask = np.ones((len(lens), L), dtype=np.int64)
    for r, n in enumerate(lens):  # right padding: the first token is real in every row
        mask[r, n:] = 0
        ids[r, n:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if cfg.type_vocab_size > 0:
        inputs["token_type_ids"] = rng.integers(0, cfg.type_vocab_size, (len(lens), L))
    if head == "mc":
        inputs = {k: v.reshape(2, 3, L) for k, v in inputs.items()}
    return inputs


def tf_outputs(model, inputs):
    import tensorflow as tf
    feed = {k: tf.constant(v, dtype=tf.int32) for k, v in inputs.items()}
    out = model(feed, output_hidden_states=True, training=False)
    tensors = {f"hidden_states.{i}": h.numpy() for i, h in enumerate(out.hidden_states)}
    for field in ("last_hidden_state", "logits", "start_logits", "end_logits"):
        value = getattr(out, field, None)
        if value is not None:
            tensors[field] = value.numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def build_case(transformers, name, head, overrides, edit, seed):
    from safetensors.numpy import save_file
    case_dir = os.path.join(ROOT, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    fresh_keras_names()
    cfg = transformers.DebertaV2Config(**{**TINY, **overrides})
    model = getattr(transformers, "TF" + HEADS[head])(cfg)
    inputs = make_inputs(head, cfg, seed)
    model({k: v for k, v in inputs.items()}, training=False)  # build
    perturb_tf(model, seed, edit)
    model.save_pretrained(case_dir)
    expected = tf_outputs(model, inputs)
    save_file(expected, os.path.join(case_dir, "expected.safetensors"))
    with open(os.path.join(case_dir, "input.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in inputs.items()}, f)
    return {"name": name, "class": HEADS[head], "tf_class": "TF" + HEADS[head],
            "tensors": sorted(expected)}


# ---------------------------------------------------------------------------------------------
# Comparison at real tokens.

def real_rows(name, value, mask):
    """The entries of an output that are defined the same way by TF and PyTorch."""
    flat = mask.reshape(-1, mask.shape[-1])  # multiple choice runs the backbone on [B*C, L]
    for m in (mask, flat):
        if value.shape[: m.ndim] == m.shape:  # per token: [.., L, ...]
            return value[m.astype(bool)]
    first = mask[..., 0].astype(bool)  # per sequence (or choice): rows whose first token is real
    if value.shape[: first.ndim] == first.shape:
        return value[first]
    raise ValueError(f"{name}: cannot align {value.shape} with mask {mask.shape}")


def max_diff(got, expected, mask, names=None):
    worst = 0.0
    for key in names or expected:
        if key.startswith("attentions.") or key == "loss" or key not in got:
            continue
        a = real_rows(key, np.asarray(got[key]), mask)
        b = real_rows(key, np.asarray(expected[key]), mask)
        worst = max(worst, float(np.abs(a - b).max()) if a.size else 0.0)
    return worst


def missing_outputs(got, expected):
    return sorted(k for k in expected if not k.startswith("attentions.") and k != "loss" and k not in got)


# ---------------------------------------------------------------------------------------------
# TF names -> PyTorch names, written independently of the Rust map to cross-check it.

def pt_name(tf_name, cfg):
    parts = tf_name.split(":")[0].split("/")[1:]  # drop the Keras model name
    path = ".".join(parts).replace("layer_._", "layer.")
    path = path.replace(".pos_proj.", ".pos_key_proj.").replace(".pos_q_proj.", ".pos_query_proj.")
    if path.endswith(".gamma"):
        path = path[: -len("gamma")] + "weight"
    elif path.endswith(".beta"):
        path = path[: -len("beta")] + "bias"
    elif path.endswith("_embeddings.embeddings"):
        path = path[: -len("embeddings")] + "weight"
    elif path.endswith(".kernel"):
        path = path[: -len("kernel")] + "weight"
    return path


def pt_value(path, value, cfg):
    if path.endswith("conv.conv.weight"):  # [k, H, H] -> [H_out, H_in / groups, k]
        full = np.transpose(value, (2, 1, 0))
        g = getattr(cfg, "conv_groups", 1)
        step = full.shape[1] // g
        return np.concatenate([full[o * step:(o + 1) * step, o * step:(o + 1) * step, :] for o in range(g)], 0)
    parent = path.split(".")[-2]
    if value.ndim == 2 and path.endswith("weight") and not parent.endswith("embeddings"):
        return value.T  # Dense kernel [in, out] -> [out, in]
    return value


def tf_to_pt_dir(tf_dir, out_dir, head, transformers):
    """The TF checkpoint's weights under PyTorch names, as model.safetensors + config.json."""
    import h5py
    from safetensors.numpy import save_file
    cfg = transformers.DebertaV2Config.from_pretrained(tf_dir)
    tensors = {}
    with h5py.File(os.path.join(tf_dir, "tf_model.h5"), "r") as f:
        for layer in f.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for w in f[layer].attrs.get("weight_names", []):
                w = w.decode() if isinstance(w, bytes) else w
                path = pt_name(w, cfg)
                if head == "base":
                    path = path[len("deberta."):]
                tensors[path] = np.ascontiguousarray(pt_value(path, np.asarray(f[layer][w]), cfg))
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    shutil.copy(os.path.join(tf_dir, "config.json"), out_dir)


def torch_jobs(jobs):
    """Runs PyTorch jobs in the torch environment: [{dir, class, input, output}] ->
    [{loading_info, error}]."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jobs.json")
        with open(path, "w") as f:
            json.dump(jobs, f)
        subprocess.run([TORCH_PYTHON, os.path.abspath(__file__), "torch-jobs", path], check=True)
        with open(path + ".result") as f:
            return json.load(f)


def torch_side(jobs_path):
    """Inside the torch environment: load each directory with transformers, run its inputs."""
    import torch
    import transformers
    from safetensors.torch import save_file
    assert torch.__version__.split("+")[0] == "2.15.0" and transformers.__version__ == "5.24.0"
    torch.set_num_threads(1)
    with open(jobs_path) as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        try:
            if os.path.exists(os.path.join(job["dir"], "pytorch_model.bin")):
                torch.load(os.path.join(job["dir"], "pytorch_model.bin"), weights_only=True)
            model, info = getattr(transformers, job["class"]).from_pretrained(job["dir"], output_loading_info=True)
            model.eval()
            with open(job["input"]) as f:
                inputs = {k: torch.tensor(v) for k, v in json.load(f).items()
                          if k in ("input_ids", "attention_mask", "token_type_ids", "position_ids")}
            with torch.no_grad():
                out = model(**inputs, output_hidden_states=True)
            tensors = {f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)}
            for field in ("last_hidden_state", "logits", "start_logits", "end_logits"):
                if getattr(out, field, None) is not None:
                    tensors[field] = getattr(out, field)
            save_file({k: v.float().contiguous().clone() for k, v in tensors.items()}, job["output"])
            problems = {k: sorted(map(str, v)) for k, v in info.items() if v}
            results.append({"loading_info": problems, "error": None})
        except Exception as e:  # recorded, so that the JSON says what failed
            results.append({"loading_info": {}, "error": f"{type(e).__name__}: {e}"})
    with open(jobs_path + ".result", "w") as f:
        json.dump(results, f)


def load_st(path):
    from safetensors.numpy import load_file
    return load_file(path)


def load_mask(input_path):
    with open(input_path) as f:
        return np.asarray(json.load(f)["attention_mask"])


def pt_cross_check(transformers, manifest):
    jobs, tmp = [], tempfile.mkdtemp()
    for case in manifest:
        head = next(h for h, c in HEADS.items() if c == case["class"])
        pt_dir = os.path.join(tmp, case["name"])
        tf_to_pt_dir(os.path.join(ROOT, case["name"]), pt_dir, head, transformers)
        jobs.append({"dir": pt_dir, "class": case["class"],
                     "input": os.path.join(ROOT, case["name"], "input.json"),
                     "output": os.path.join(tmp, case["name"] + ".out.safetensors")})
    results = []
    for case, job, res in zip(manifest, jobs, torch_jobs(jobs)):
        entry = {"name": case["name"], "class": case["class"], "loading_info_problems": res["loading_info"],
                 "error": res["error"]}
        if res["error"] is None:
            expected = load_st(os.path.join(ROOT, case["name"], "expected.safetensors"))
            got = load_st(job["output"])
            entry["max_abs_diff"] = max_diff(got, expected, load_mask(job["input"]))
            entry["missing_outputs"] = missing_outputs(got, expected)
        entry["ok"] = (res["error"] is None and not res["loading_info"] and not entry["missing_outputs"]
                       and entry["max_abs_diff"] <= 1e-4)
        results.append(entry)
        print("pt vs tf:", entry)
    shutil.rmtree(tmp)
    with open(os.path.join(ROOT, "pt_vs_tf.json"), "w") as f:
        json.dump(results, f, indent=1)


# ---------------------------------------------------------------------------------------------
# `deberta convert` round trips.

def rust_convert(src, fmt, dst):
    cmd = ["cargo", "run", "-q", "-p", "deberta-cli", "--bin", "deberta", "--", "convert",
           "--model", src, "--to", fmt, "--output", dst]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def fixture_dir(kind, name):
    return os.path.join(REPO, "fixtures", kind, name)


# (fixture set, case, class, target format, input file, expected file, whether conversion must fail)
def roundtrip_cases():
    cases = []
    for name, (head, _, _) in CASES.items():
        for fmt in ("safetensors", "pytorch"):
            cases.append(("tf", name, HEADS[head], fmt, "input.json", "expected.safetensors", False))
    cases.append(("tf", "seq_v2_abs", HEADS["seq"], "tf", "input.json", "expected.safetensors", False))
    for name, head in [("mlm_legacy_v3", "mlm"), ("mlm_legacy_conv_embedding_size", "mlm"), ("seq_v3", "seq"),
                       ("seq_conv", "seq"), ("tok_v3", "tok"), ("tok_conv", "tok"), ("qa_v3", "qa"),
                       ("qa_conv", "qa"), ("mc_v3", "mc"), ("mc_conv", "mc")]:
        cases.append(("heads", name, HEADS[head], "tf", "nolabels.input.json", "nolabels.expected.safetensors", False))
    cases.append(("heads", "seq_conv", HEADS["seq"], "pytorch", "nolabels.input.json", "nolabels.expected.safetensors", False))
    for name in ("v3_buckets", "conv_groups_gelu", "separate_pos_proj", "token_types_positions", "format_pytorch_bin"):
        cases.append(("models", name, "DebertaV2Model", "tf", "input.json", "expected.safetensors", False))
    cases.append(("models", "format_pytorch_bin", "DebertaV2Model", "safetensors", "input.json", "expected.safetensors", False))
    # TF cannot express these; convert must refuse with a clear message.
    cases.append(("heads", "mlm_lm_predictions_v3", HEADS["mlm"], "tf", "nolabels.input.json", "nolabels.expected.safetensors", True))
    cases.append(("models", "embedding_size", "DebertaV2Model", "tf", "input.json", "expected.safetensors", True))
    return cases


def fresh_keras_names():
    """Keras numbers unnamed layers per process (`dropout`, `dropout_1`, ...); start afresh so
    each model is named as in a new process."""
    import tf_keras
    tf_keras.backend.clear_session()


def tf_load_and_run(transformers, out_dir, cls, input_path):
    fresh_keras_names()
    model, info = getattr(transformers, "TF" + cls).from_pretrained(out_dir, output_loading_info=True)
    with open(input_path) as f:
        inputs = {k: np.asarray(v) for k, v in json.load(f).items()
                  if k in ("input_ids", "attention_mask", "token_type_ids", "position_ids")}
    problems = {k: sorted(map(str, v)) for k, v in info.items() if v}
    return tf_outputs(model, inputs), problems


def check_copied_files(src, dst):
    names = ["config.json"] + [n for n in ("spm.model", "tokenizer.json", "tokenizer_config.json",
                                           "special_tokens_map.json", "added_tokens.json")
                               if os.path.exists(os.path.join(src, n))]
    return sorted(n for n in names if not os.path.exists(os.path.join(dst, n)))


def roundtrips(transformers):
    results, tmp = [], tempfile.mkdtemp()
    torch_pending = []
    for i, (kind, name, cls, fmt, inp, exp, must_fail) in enumerate(roundtrip_cases()):
        src, dst = fixture_dir(kind, name), os.path.join(tmp, f"{i}_{name}_{fmt}")
        proc = rust_convert(src, fmt, dst)
        entry = {"source": f"{kind}/{name}", "class": cls, "to": fmt, "expect_error": must_fail}
        if must_fail:
            entry["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            entry["ok"] = proc.returncode != 0 and "panicked" not in proc.stderr
            results.append(entry)
            continue
        if proc.returncode != 0:
            entry.update(error=proc.stderr.strip(), ok=False)
            results.append(entry)
            continue
        entry["missing_files"] = check_copied_files(src, dst)
        mask = load_mask(os.path.join(src, inp))
        expected = load_st(os.path.join(src, exp))
        if fmt == "tf":
            got, problems = tf_load_and_run(transformers, dst, cls, os.path.join(src, inp))
            entry.update(loading_info_problems=problems, max_abs_diff=max_diff(got, expected, mask),
                         missing_outputs=missing_outputs(got, expected))
            results.append(entry)
        else:
            out = os.path.join(tmp, f"{i}.out.safetensors")
            torch_pending.append((entry, {"dir": dst, "class": cls, "input": os.path.join(src, inp), "output": out},
                                  expected, mask))
            results.append(entry)
    for (entry, job, expected, mask), res in zip(torch_pending, torch_jobs([p[1] for p in torch_pending])):
        entry["loading_info_problems"] = res["loading_info"]
        if res["error"]:
            entry["error"] = res["error"]
            continue
        got = load_st(job["output"])
        entry["max_abs_diff"] = max_diff(got, expected, mask)
        entry["missing_outputs"] = missing_outputs(got, expected)
    for entry in results:
        if not entry["expect_error"]:
            entry["ok"] = (not entry.get("error") and not entry.get("loading_info_problems")
                           and not entry.get("missing_files") and not entry.get("missing_outputs")
                           and entry.get("max_abs_diff", 1.0) <= 1e-4)
        print("convert:", entry)
    shutil.rmtree(tmp)
    with open(os.path.join(ROOT, "convert_roundtrip.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    if sys.argv[1:2] == ["torch-jobs"]:
        return torch_side(sys.argv[2])
    tf, transformers = tf_env()
    only_roundtrip = sys.argv[1:2] == ["roundtrip"]
    if not only_roundtrip:
        os.makedirs(ROOT, exist_ok=True)
        manifest = []
        for i, (name, (head, overrides, edit)) in enumerate(CASES.items()):
            manifest.append(build_case(transformers, name, head, overrides, edit, seed=3000 + i))
            print(f"{name}: ok")
        with open(os.path.join(ROOT, "manifest.json"), "w") as f:
            json.dump({"tensorflow": TF_VERSION, "tf_keras": TF_KERAS_VERSION,
                       "transformers": TRANSFORMERS_TF_VERSION, "cases": manifest}, f, indent=1)
        pt_cross_check(transformers, manifest)
    if sys.argv[1:2] != ["fixtures"]:
        roundtrips(transformers)


if __name__ == "__main__":
    main()
