//! Training: the optimisers, schedules and regularisers of the course (initialisations are in
//! `nn`, shared with the untrained start-up models),
//! written for Candle (which lacks momentum, checkpointable Adam, schedules and penalties),
//! and the training loops with atomic checkpoints.

mod augment;
mod bench;
mod calibration;
mod channel_moments;
mod checkpoint;
mod classification;
mod config;
mod curves;
mod depth;
mod fit;
mod grasp;
mod optimizer;
mod pipeline_eval;
mod pose;
mod regularization;
mod rgb_images;
mod schedule;
mod segmentation;
mod train_error;
mod transfer;
mod visualize;

pub use augment::{AugmentConfig, Draw, Warp};
pub use bench::{bench_inputs, bench_model, BenchReport};
pub use calibration::{
    binary_nll, calibrate_temperature, expected_calibration_error, fit_temperature,
    TEMPERATURE_RANGE,
};
pub use checkpoint::{load_checkpoint, publish_model, save_checkpoint, Progress, CHECKPOINT_FILE};
pub use classification::{ClassificationMetrics, ClassificationSet};
pub use config::{DataConfig, EarlyStopping, TrainConfig};
pub use curves::{render_curves, write_curves, write_rgb_png, EpochRow};
pub use depth::{masked_l1, DepthMetrics, DepthSet};
pub use fit::{evaluate_model, fit, Evaluation, Examples, FitReport};
pub use grasp::{average_precision, GraspMetrics, GraspSet};
pub use optimizer::{Optimizer, OptimizerConfig, Param};
pub use pipeline_eval::{
    evaluate_node_pipeline, evaluate_pipeline, PipelineMetrics, PipelineParams,
};
pub use pose::{rotation_error_deg, PoseMetrics, PoseSet};
pub use regularization::weight_penalty;
pub use schedule::Schedule;
pub use segmentation::{SegmentationMetrics, SegmentationSet};
pub use train_error::TrainError;
pub use transfer::{apply_freeze_and_groups, init_from, InitFrom, InitReport, LrGroup};
pub use visualize::{layer_names, visualize_filters, FilterImages};
