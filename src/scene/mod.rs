//! The synthetic bin-picking world: bins and piles of objects of many shape families and
//! mesh files, settled by physics, with randomised looks; an exact ray-casting renderer with
//! shadows, a colour-camera and a depth-sensor model; grasp labels; and writers for data sets
//! and rosbag2 files. Pure Rust, no ROS. ARCHITECTURE.md walks through one frame.

pub mod appearance;
pub mod bag;
pub mod camera;
pub mod config;
pub mod dataset;
pub mod families;
pub mod geometry;
pub mod grasps;
pub mod labels;
pub mod mesh;
pub mod mesh_io;
pub mod physics;
pub mod render;
pub mod sensor;
pub mod texture;
pub mod viewpoints;
pub mod world;
