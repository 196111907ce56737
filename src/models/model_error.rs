//! `ModelError`: why a model folder cannot be used, each message saying how to fix it.

use std::path::PathBuf;

use thiserror::Error;

/// Why a model folder cannot be used. Start-up fails on these with the message as is.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("model config {path} not found: give the model folder's path (it holds model.yaml and model.safetensors), e.g. models/<name>")]
    ConfigMissing { path: PathBuf },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model config {path} is not valid: {message}; compare it with a shipped models/*/model.yaml")]
    ConfigInvalid { path: PathBuf, message: String },
    #[error("weights {path} not found and model.yaml sets no untrained_seed: copy the trained model.safetensors into the folder, or train one with perception_train")]
    WeightsMissing { path: PathBuf },
    #[error("weights {path} do not fit the architecture in model.yaml: {problems}")]
    WeightsMismatch { path: PathBuf, problems: String },
    #[error("network error: {0}")]
    Candle(#[from] candle_core::Error),
}
