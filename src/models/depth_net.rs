//! The monocular depth network: a U-Net-shaped encoder-decoder regressing metres in a bounded
//! working range.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{UNet, UNetConfig};
use crate::nn::Trace;

/// Supervised monocular depth regression: a U-Net-shaped encoder-decoder with one output
/// channel, squashed into the working range `[min_depth_m, max_depth_m]` by a sigmoid so every
/// prediction is a valid depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthNetConfig {
    pub in_channels: usize,
    pub base_channels: usize,
    pub depth: usize,
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    pub min_depth_m: f64,
    pub max_depth_m: f64,
}

fn default_true() -> bool {
    true
}

impl DepthNetConfig {
    /// A bin-picking cell seen from 0.3-2 m: 16 filters, 4 levels.
    pub fn small() -> Self {
        Self {
            in_channels: 3,
            base_channels: 16,
            depth: 4,
            batch_norm: true,
            min_depth_m: 0.2,
            max_depth_m: 2.5,
        }
    }

    pub fn tiny() -> Self {
        Self {
            base_channels: 8,
            depth: 3,
            ..Self::small()
        }
    }

    pub fn unet(&self) -> UNetConfig {
        UNetConfig {
            in_channels: self.in_channels,
            num_classes: 1,
            base_channels: self.base_channels,
            depth: self.depth,
            batch_norm: self.batch_norm,
            padding: true,
            boundary_class: false,
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if !(self.min_depth_m >= 0.0 && self.max_depth_m > self.min_depth_m) {
            return Err(format!(
                "depth range [{}, {}] m must satisfy 0 <= min < max",
                self.min_depth_m, self.max_depth_m
            ));
        }
        self.unet().check()
    }
}

/// PyTorch names: those of [`UNet`] with `num_classes` 1.
#[derive(Clone, Debug)]
pub struct DepthNet {
    unet: UNet,
    min_depth_m: f64,
    max_depth_m: f64,
}

impl DepthNet {
    pub fn new(cfg: &DepthNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        Ok(Self {
            unet: UNet::new(&cfg.unet(), vb)?,
            min_depth_m: cfg.min_depth_m,
            max_depth_m: cfg.max_depth_m,
        })
    }

    /// # Shapes
    /// (B, in_channels, H, W), H and W multiples of 2^depth -> depth in metres (B, 1, H, W)
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let logit = self.unet.forward_traced(x, train, trace)?;
        let unit = candle_nn::ops::sigmoid(&logit)?;
        let depth_m = ((unit * (self.max_depth_m - self.min_depth_m))? + self.min_depth_m)?;
        trace.record("depth_m", &depth_m);
        Ok(depth_m)
    }
}
