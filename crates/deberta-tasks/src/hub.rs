//! `--model` resolution: a local directory, or a HuggingFace hub id looked up in the standard
//! cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`) and, unless
//! `HF_HUB_OFFLINE` is set, downloaded there (feature `hub`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Files a checkpoint directory must hold.
const REQUIRED: [&str; 1] = ["config.json"];
/// Files a checkpoint directory may hold (downloaded when the repository has them).
#[cfg(feature = "hub")]
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

/// Why a hub id did not resolve (the `source` of [`Error::Hub`]).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The argument is neither an existing directory nor shaped like `org/name[@revision]`.
    #[error("`{0}` is neither a directory nor a hub id")]
    NotAnId(String),
    /// The model is not cached and downloads are switched off.
    #[error("not in the cache and HF_HUB_OFFLINE is set")]
    Offline,
    /// The model is not cached and this build cannot download.
    #[error("not in the cache, and this build has no hub downloads (feature `hub`)")]
    NoDownloads,
    /// The hub client could not be set up, or the repository's file list not fetched.
    #[cfg(feature = "hub")]
    #[error("{what}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        source: hf_hub::api::sync::ApiError,
    },
    /// A file the repository lists could not be downloaded.
    #[cfg(feature = "hub")]
    #[error("cannot download {file}")]
    Download {
        /// The file.
        file: String,
        /// The client's error.
        source: hf_hub::api::sync::ApiError,
    },
    /// The repository lacks a file every checkpoint needs.
    #[error("the repository has no {0}")]
    Missing(String),
    /// The downloaded file's path has no directory.
    #[error("unexpected cache path {0}")]
    CachePath(PathBuf),
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
    let err = |source: HubError| Error::Hub {
        id: id.to_string(),
        cache: cache.clone(),
        source,
    };
    if id.is_empty() || id.starts_with('.') || id.starts_with('/') || id.split('/').count() > 2 {
        return Err(err(HubError::NotAnId(spec.to_string())));
    }
    if let Some(dir) = cached_snapshot(&cache, id, revision) {
        return Ok(dir);
    }
    if offline() {
        return Err(err(HubError::Offline));
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

/// Downloads the files of [`REQUIRED`] and those of [`OPTIONAL`] the repository lists, plus
/// `pytorch_model.bin` when there is no `model.safetensors`. Every failed download is an error
/// naming the file (a file the repository does not list is not attempted).
#[cfg(feature = "hub")]
fn download(id: &str, revision: &str) -> std::result::Result<PathBuf, HubError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|source| HubError::Api {
            what: "cannot start the hub client",
            source,
        })?;
    let repo = api.repo(Repo::with_revision(
        id.into(),
        RepoType::Model,
        revision.into(),
    ));
    let info = repo.info().map_err(|source| HubError::Api {
        what: "cannot list the repository's files",
        source,
    })?;
    let listed = |file: &str| info.siblings.iter().any(|s| s.rfilename == file);
    let get = |file: &str| {
        repo.get(file).map_err(|source| HubError::Download {
            file: file.to_string(),
            source,
        })
    };
    for file in REQUIRED {
        if !listed(file) {
            return Err(HubError::Missing(file.to_string()));
        }
    }
    let config = get(REQUIRED[0])?;
    for file in OPTIONAL.into_iter().filter(|f| listed(f)) {
        get(file)?;
    }
    if !listed("model.safetensors") {
        if !listed("pytorch_model.bin") {
            return Err(HubError::Missing(
                "model.safetensors and no pytorch_model.bin".into(),
            ));
        }
        get("pytorch_model.bin")?;
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| HubError::CachePath(config.clone()))
}

#[cfg(not(feature = "hub"))]
fn download(_id: &str, _revision: &str) -> std::result::Result<PathBuf, HubError> {
    Err(HubError::NoDownloads)
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
