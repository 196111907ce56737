//! Training: the optimisers, schedules, initialisations and regularisers of the course,
//! written for Candle (which lacks momentum, checkpointable Adam, schedules and penalties),
//! and the training loops with atomic checkpoints.

mod checkpoint;
mod classification;
mod config;
mod init;
mod optimizer;
mod regularization;
mod schedule;
mod train_error;

pub use checkpoint::{load_checkpoint, publish_model, save_checkpoint, Progress, CHECKPOINT_FILE};
pub use classification::{
    evaluate, fit_classification, ClassificationMetrics, ClassificationSet, FitReport,
};
pub use config::{DataConfig, EarlyStopping, TrainConfig};
pub use init::{initialize, Init};
pub use optimizer::{Optimizer, OptimizerConfig, Param};
pub use regularization::weight_penalty;
pub use schedule::Schedule;
pub use train_error::TrainError;
