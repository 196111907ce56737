//! `NodeError`: why the node could not start or had to stop.

use thiserror::Error;

use super::ParamError;
use crate::models::ModelError;

/// Why the node could not start (or had to stop). Printed as is, then the process exits 1.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("ROS 2: {0}")]
    Ros(#[from] r2r::Error),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("segmentation model: {0}")]
    Model(#[from] ModelError),
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("input bag: {0}")]
    BagRead(#[from] crate::bag::ReadError),
    #[error("output bag: {0}")]
    BagWrite(#[from] crate::bag::WriteError),
    #[error("{0}")]
    Offline(String),
}
