//! The Inception module (four parallel branches concatenated) and its filter counts.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{max_pool2d, Activation, ConvBnAct, ConvSpec, PoolSpec};

/// Filter counts of one Inception module (Szegedy et al. 2015, Table 1 columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InceptionSpec {
    pub ch1x1: usize,
    pub ch3x3_reduce: usize,
    pub ch3x3: usize,
    pub ch5x5_reduce: usize,
    pub ch5x5: usize,
    pub pool_proj: usize,
}

impl InceptionSpec {
    pub const fn new(
        ch1x1: usize,
        ch3x3_reduce: usize,
        ch3x3: usize,
        ch5x5_reduce: usize,
        ch5x5: usize,
        pool_proj: usize,
    ) -> Self {
        Self {
            ch1x1,
            ch3x3_reduce,
            ch3x3,
            ch5x5_reduce,
            ch5x5,
            pool_proj,
        }
    }

    pub fn out_channels(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }
}

/// Inception module: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max-pool -> 1x1 branches, every
/// convolution followed by (batch norm and) ReLU, outputs concatenated on channels.
///
/// torchvision's names: `branch1.conv`, `branch2.{0,1}.conv`, `branch3.{0,1}.conv`,
/// `branch4.1.conv` (index 0 of branch 4 is the pool), each with `bn` beside `conv`.
#[derive(Clone, Debug)]
pub struct Inception {
    branch1: ConvBnAct,
    branch2: [ConvBnAct; 2],
    branch3: [ConvBnAct; 2],
    branch4: ConvBnAct,
}

impl Inception {
    pub fn new(
        in_channels: usize,
        spec: &InceptionSpec,
        batch_norm_enabled: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let relu = Some(Activation::Relu);
        let unit = |spec: ConvSpec, path: &str| {
            ConvBnAct::basic(spec, batch_norm_enabled, relu, vb.pp(path))
        };
        Ok(Self {
            branch1: unit(ConvSpec::same(in_channels, spec.ch1x1, 1), "branch1")?,
            branch2: [
                unit(
                    ConvSpec::same(in_channels, spec.ch3x3_reduce, 1),
                    "branch2.0",
                )?,
                unit(
                    ConvSpec::same(spec.ch3x3_reduce, spec.ch3x3, 3),
                    "branch2.1",
                )?,
            ],
            branch3: [
                unit(
                    ConvSpec::same(in_channels, spec.ch5x5_reduce, 1),
                    "branch3.0",
                )?,
                unit(
                    ConvSpec::same(spec.ch5x5_reduce, spec.ch5x5, 5),
                    "branch3.1",
                )?,
            ],
            branch4: unit(ConvSpec::same(in_channels, spec.pool_proj, 1), "branch4.1")?,
        })
    }

    /// # Shapes
    /// (B, in_channels, H, W) -> (B, spec.out_channels(), H, W)
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let b1 = self.branch1.forward_t(x, train)?;
        let b2 = self.branch2[1].forward_t(&self.branch2[0].forward_t(x, train)?, train)?;
        let b3 = self.branch3[1].forward_t(&self.branch3[0].forward_t(x, train)?, train)?;
        let pooled = max_pool2d(x, PoolSpec::new(3, 1, 1))?;
        let b4 = self.branch4.forward_t(&pooled, train)?;
        Tensor::cat(&[&b1, &b2, &b3, &b4], 1)
    }
}
