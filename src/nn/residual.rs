//! The residual blocks of a ResNet (basic and bottleneck) with their projection shortcuts.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{Activation, ConvBnAct, ConvSpec};

/// Which residual block a ResNet stage is made of (He et al. 2016).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50 and deeper).
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of block width.
    pub fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// One residual block with torchvision's names: `conv1`, `bn1`, `conv2`, `bn2` (+ `conv3`,
/// `bn3` for the bottleneck), and `downsample.0` (1x1 conv) / `downsample.1` (batch norm) when
/// the skip connection must change resolution or width.
#[derive(Clone, Debug)]
pub struct ResidualBlock {
    convs: Vec<ConvBnAct>,
    downsample: Option<ConvBnAct>,
}

impl ResidualBlock {
    /// `width` is the 3x3 convolution's channel count; the block outputs
    /// `width * kind.expansion()` channels. `stride` 2 halves the resolution.
    pub fn new(
        kind: BlockKind,
        in_channels: usize,
        width: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out_channels = width * kind.expansion();
        let relu = Some(Activation::Relu);
        let layer = |n: usize, spec: ConvSpec, activation| {
            ConvBnAct::new(
                spec,
                true,
                activation,
                vb.pp(format!("conv{n}")),
                vb.pp(format!("bn{n}")),
            )
        };
        // The last convolution has no ReLU: it comes after the addition.
        let convs = match kind {
            BlockKind::Basic => vec![
                layer(
                    1,
                    ConvSpec::same(in_channels, width, 3).stride(stride),
                    relu,
                )?,
                layer(2, ConvSpec::same(width, width, 3), None)?,
            ],
            BlockKind::Bottleneck => vec![
                layer(1, ConvSpec::same(in_channels, width, 1), relu)?,
                layer(2, ConvSpec::same(width, width, 3).stride(stride), relu)?,
                layer(3, ConvSpec::same(width, out_channels, 1), None)?,
            ],
        };
        let downsample = if stride != 1 || in_channels != out_channels {
            Some(ConvBnAct::new(
                ConvSpec::same(in_channels, out_channels, 1).stride(stride),
                true,
                None,
                vb.pp("downsample.0"),
                vb.pp("downsample.1"),
            )?)
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    /// # Shapes
    /// (B, in_channels, H, W) -> (B, width * expansion, H / stride, W / stride)
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for conv in &self.convs {
            y = conv.forward_t(&y, train)?;
        }
        let skip = match &self.downsample {
            Some(downsample) => downsample.forward_t(x, train)?,
            None => x.clone(),
        };
        (y + skip)?.relu()
    }
}
