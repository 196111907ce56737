//! Training: the optimisers, schedules and regularisers of the course, written for Candle
//! (which lacks momentum, checkpointable Adam, schedules and penalties).

mod optimizer;
mod regularization;
mod schedule;

pub use optimizer::{Optimizer, OptimizerConfig, Param};
pub use regularization::weight_penalty;
pub use schedule::Schedule;
