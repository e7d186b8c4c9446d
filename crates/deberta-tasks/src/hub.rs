//! `--model` resolution: a local directory, or a HuggingFace hub id looked up in the standard
//! cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`) and, unless
//! `HF_HUB_OFFLINE` is set, downloaded there (feature `hub`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Files a checkpoint directory may hold; the first group is required.
const REQUIRED: [&str; 1] = ["config.json"];
const OPTIONAL: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spm.model",
    "model.safetensors",
];

/// The hub cache directory the environment selects.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    home.map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// A local directory as is; otherwise the snapshot directory of hub id `spec`
/// (`org/name`, optionally `@revision`), downloading it when allowed.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let cache = cache_dir();
    let err = |reason: String| Error::Hub {
        id: id.to_string(),
        cache: cache.clone(),
        reason,
    };
    if id.is_empty() || id.starts_with('.') || id.starts_with('/') || id.split('/').count() > 2 {
        return Err(err(format!("`{spec}` is neither a directory nor a hub id")));
    }
    if let Some(dir) = cached_snapshot(&cache, id, revision) {
        return Ok(dir);
    }
    if offline() {
        return Err(err("not in the cache and HF_HUB_OFFLINE is set".into()));
    }
    download(id, revision).map_err(err)
}

/// `models--org--name/snapshots/<commit>` for `revision` (a ref name or a commit), when it
/// holds a `config.json`.
pub fn cached_snapshot(cache: &Path, id: &str, revision: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let commit = std::fs::read_to_string(repo.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let dir = repo.join("snapshots").join(commit);
    dir.join(REQUIRED[0]).is_file().then_some(dir)
}

#[cfg(feature = "hub")]
fn download(id: &str, revision: &str) -> std::result::Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| format!("hub client: {e}"))?;
    let repo = api.repo(Repo::with_revision(
        id.into(),
        RepoType::Model,
        revision.into(),
    ));
    let config = repo
        .get(REQUIRED[0])
        .map_err(|e| format!("cannot download config.json: {e}"))?;
    let mut have_weights = false;
    for file in OPTIONAL {
        let got = repo.get(file).is_ok();
        have_weights |= got && file == "model.safetensors";
    }
    if !have_weights {
        repo.get("pytorch_model.bin")
            .map_err(|e| format!("no model.safetensors and no pytorch_model.bin: {e}"))?;
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "bad cache path".to_string())
}

#[cfg(not(feature = "hub"))]
fn download(_id: &str, _revision: &str) -> std::result::Result<PathBuf, String> {
    Err("not in the cache, and this build has no hub downloads (feature `hub`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cached_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--m");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/abc")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc\n").unwrap();
        assert_eq!(cached_snapshot(tmp.path(), "org/m", "main"), None);
        std::fs::write(repo.join("snapshots/abc/config.json"), "{}").unwrap();
        assert_eq!(
            cached_snapshot(tmp.path(), "org/m", "main"),
            Some(repo.join("snapshots/abc"))
        );
        assert_eq!(cached_snapshot(tmp.path(), "org/other", "main"), None);
    }
}
