//! `TrainError`: why training or evaluation could not run.

use std::path::PathBuf;

use thiserror::Error;

use crate::data::IdxError;
use crate::models::ModelError;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("training config: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    /// A request that does not fit the model (an unknown layer, too many filters).
    #[error("{0}")]
    Request(String),
    #[error(transparent)]
    Idx(#[from] IdxError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the loss became NaN/inf at epoch {epoch}, iteration {iteration} (learning rate {lr:.3e}): lower learning_rate or add a schedule")]
    Diverged {
        epoch: usize,
        iteration: u64,
        lr: f64,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("network: {0}")]
    Candle(#[from] candle_core::Error),
}
