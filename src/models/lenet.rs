//! LeNet-5, the classic small classifier, with average or max subsampling.

use candle_core::{Result, Tensor};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{avg_pool2d, max_pool2d, Activation, PoolSpec, Trace};

/// Which subsampling LeNet uses between its convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Average,
    Max,
}

/// LeNet-5 (LeCun et al. 1998): conv 5x5 (6) - pool - conv 5x5 (16) - pool - fc 120 - fc 84 -
/// fc classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeNet5Config {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Square input side; 32 in the paper (28x28 MNIST digits padded by 2).
    pub input_size: usize,
    pub activation: Activation,
    pub pooling: PoolKind,
    /// Zero padding of conv1: 2 gives 28x28 images the paper's 32x32 geometry (28 -> 28 -> 14
    /// -> 10 -> 5), as PyTorch's `Conv2d(1, 6, 5, padding=2)` LeNets do.
    #[serde(default)]
    pub conv1_padding: usize,
}

impl LeNet5Config {
    /// As published: 32x32 grey input, tanh, average pooling. Its first layer has
    /// 6 * (5 * 5 + 1) = 156 parameters.
    pub fn classic() -> Self {
        Self {
            in_channels: 1,
            num_classes: 10,
            input_size: 32,
            activation: Activation::Tanh,
            pooling: PoolKind::Average,
            conv1_padding: 0,
        }
    }

    /// Side of the 16 feature maps entering `fc1`.
    pub fn feature_side(&self) -> std::result::Result<usize, String> {
        let side = (self.input_size + 2 * self.conv1_padding)
            .checked_sub(4)
            .map(|s| s / 2)
            .and_then(|s| s.checked_sub(4))
            .map(|s| s / 2)
            .filter(|s| *s >= 1);
        side.ok_or_else(|| {
            format!(
                "LeNet-5 needs an input of at least 16 pixels, got {}",
                self.input_size
            )
        })
    }
}

/// PyTorch names: `conv1`, `conv2`, `fc1`, `fc2`, `fc3`.
#[derive(Clone, Debug)]
pub struct LeNet5 {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    activation: Activation,
    pooling: PoolKind,
}

impl LeNet5 {
    pub fn new(cfg: &LeNet5Config, vb: VarBuilder) -> Result<Self> {
        let side = cfg.feature_side().map_err(candle_core::Error::msg)?;
        let conv = Conv2dConfig::default();
        Ok(Self {
            conv1: conv2d(
                cfg.in_channels,
                6,
                5,
                Conv2dConfig {
                    padding: cfg.conv1_padding,
                    ..conv
                },
                vb.pp("conv1"),
            )?,
            conv2: conv2d(6, 16, 5, conv, vb.pp("conv2"))?,
            fc1: linear(16 * side * side, 120, vb.pp("fc1"))?,
            fc2: linear(120, 84, vb.pp("fc2"))?,
            fc3: linear(84, cfg.num_classes, vb.pp("fc3"))?,
            activation: cfg.activation,
            pooling: cfg.pooling,
        })
    }

    fn pool(&self, x: &Tensor) -> Result<Tensor> {
        let spec = PoolSpec::new(2, 2, 0);
        match self.pooling {
            PoolKind::Average => avg_pool2d(x, spec),
            PoolKind::Max => max_pool2d(x, spec),
        }
    }

    /// # Shapes
    /// (B, in_channels, S, S) -> logits (B, num_classes)
    pub fn forward_traced(&self, x: &Tensor, _train: bool, trace: &mut Trace) -> Result<Tensor> {
        let act = |x: &Tensor| self.activation.forward(x);
        let x = act(&crate::nn::conv2d(&self.conv1, x)?)?;
        trace.record("conv1", &x);
        let x = self.pool(&x)?;
        trace.record("pool1", &x);
        let x = act(&crate::nn::conv2d(&self.conv2, &x)?)?;
        trace.record("conv2", &x);
        let x = self.pool(&x)?.flatten_from(1)?;
        trace.record("pool2", &x);
        let x = act(&self.fc1.forward(&x)?)?;
        trace.record("fc1", &x);
        let x = act(&self.fc2.forward(&x)?)?;
        trace.record("fc2", &x);
        let x = self.fc3.forward(&x)?;
        trace.record("fc3", &x);
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{summarize, Architecture};

    #[test]
    fn padded_28_pixel_input_has_the_papers_geometry() {
        let padded = LeNet5Config {
            input_size: 28,
            conv1_padding: 2,
            ..LeNet5Config::classic()
        };
        assert_eq!(padded.feature_side().unwrap(), 5);
        let total = |cfg: LeNet5Config, side: usize| {
            summarize(&Architecture::Lenet5(cfg), [1, side, side])
                .unwrap()
                .to_string()
                .lines()
                .last()
                .unwrap()
                .to_string()
        };
        // 156 + 2 416 + 48 120 + 10 164 + 850: the published LeNet-5 either way.
        assert_eq!(total(padded, 28), "total params: 61706");
        assert_eq!(total(LeNet5Config::classic(), 32), "total params: 61706");
    }
}
