//! perception: camera streams in, what a collaborative robot needs out.
//!
//! Layering (ARCHITECTURE.md at the repository root has the whole picture): `ros` (behind the `ros` feature) -> `pipeline` ->
//! {`models`, `preprocess`, `postprocess`}; `models` -> `nn`. `runtime` holds the ROS-free
//! parts of the node (stamp pairing, frame queue, statistics). Nothing here but `ros` knows r2r.

pub mod bag;
pub mod data;
pub mod image;
pub mod models;
pub mod nn;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
#[cfg(feature = "ros")]
pub mod ros;
pub mod runtime;
pub mod scene;
pub mod train;
