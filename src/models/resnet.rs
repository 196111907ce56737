//! The ResNet family (basic and bottleneck blocks, ImageNet or small stem), also PoseNet's
//! backbone.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{
    global_avg_pool, max_pool2d, Activation, BlockKind, ConvBnAct, ConvSpec, PoolSpec,
    ResidualBlock, Trace,
};

/// How a ResNet first reduces the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 7x7 stride-2 convolution + 3x3 stride-2 max-pool (ImageNet ResNets): /4.
    Imagenet,
    /// One 3x3 stride-1 convolution (CIFAR-style, for small inputs).
    Small,
}

/// ResNet (He et al. 2016): a stem, four stages of residual blocks (the first stage at full
/// width and stride 1, then widths doubling and stride 2), global average pool, and a fully
/// connected classifier (none when `num_classes` is 0: a backbone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: Vec<usize>,
    /// Width of the stem and first stage (64 in the paper).
    pub base_channels: usize,
    pub stem: Stem,
}

impl ResNetConfig {
    pub fn resnet18(in_channels: usize, num_classes: usize) -> Self {
        Self {
            in_channels,
            num_classes,
            block: BlockKind::Basic,
            layers: vec![2, 2, 2, 2],
            base_channels: 64,
            stem: Stem::Imagenet,
        }
    }

    pub fn resnet34(in_channels: usize, num_classes: usize) -> Self {
        Self {
            layers: vec![3, 4, 6, 3],
            ..Self::resnet18(in_channels, num_classes)
        }
    }

    pub fn resnet50(in_channels: usize, num_classes: usize) -> Self {
        Self {
            block: BlockKind::Bottleneck,
            layers: vec![3, 4, 6, 3],
            ..Self::resnet18(in_channels, num_classes)
        }
    }

    /// Channels of the pooled feature vector.
    pub fn feature_channels(&self) -> usize {
        let last_width = self.base_channels << (self.layers.len().saturating_sub(1));
        last_width * self.block.expansion()
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.layers.is_empty() || self.layers.contains(&0) || self.base_channels == 0 {
            return Err("resnet needs at least one stage, each with at least one block".into());
        }
        Ok(())
    }
}

/// torchvision's names: `conv1`, `bn1`, `layer{s}.{j}.*`, `fc`.
#[derive(Clone, Debug)]
pub struct ResNet {
    stem: ConvBnAct,
    stem_pool: bool,
    stages: Vec<Vec<ResidualBlock>>,
    fc: Option<Linear>,
}

impl ResNet {
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let relu = Some(Activation::Relu);
        let stem_spec = match cfg.stem {
            Stem::Imagenet => ConvSpec::same(cfg.in_channels, cfg.base_channels, 7).stride(2),
            Stem::Small => ConvSpec::same(cfg.in_channels, cfg.base_channels, 3),
        };
        let stem = ConvBnAct::new(stem_spec, true, relu, vb.pp("conv1"), vb.pp("bn1"))?;
        let mut in_channels = cfg.base_channels;
        let mut stages = Vec::new();
        for (s, &blocks) in cfg.layers.iter().enumerate() {
            let width = cfg.base_channels << s;
            let mut stage = Vec::new();
            for j in 0..blocks {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                stage.push(ResidualBlock::new(
                    cfg.block,
                    in_channels,
                    width,
                    stride,
                    vb.pp(format!("layer{}.{j}", s + 1)),
                )?);
                in_channels = width * cfg.block.expansion();
            }
            stages.push(stage);
        }
        let fc = if cfg.num_classes > 0 {
            Some(linear(in_channels, cfg.num_classes, vb.pp("fc"))?)
        } else {
            None
        };
        Ok(Self {
            stem,
            stem_pool: cfg.stem == Stem::Imagenet,
            stages,
            fc,
        })
    }

    /// The pooled feature vector, (B, C, H, W) -> (B, feature_channels).
    pub fn features_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let mut x = self.stem.forward_t(x, train)?;
        trace.record_modules("conv1", &["conv1".into(), "bn1".into()], &x);
        if self.stem_pool {
            x = max_pool2d(&x, PoolSpec::new(3, 2, 1))?;
            trace.record("maxpool", &x);
        }
        for (s, stage) in self.stages.iter().enumerate() {
            for (j, block) in stage.iter().enumerate() {
                x = block.forward_t(&x, train)?;
                trace.record(format!("layer{}.{j}", s + 1), &x);
            }
        }
        let x = global_avg_pool(&x)?;
        trace.record("avgpool", &x);
        Ok(x)
    }

    /// # Shapes
    /// (B, in_channels, H, W) -> logits (B, num_classes), or features (B, feature_channels)
    /// for a backbone.
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let x = self.features_traced(x, train, trace)?;
        match &self.fc {
            Some(fc) => {
                let x = fc.forward(&x)?;
                trace.record("fc", &x);
                Ok(x)
            }
            None => Ok(x),
        }
    }
}
