//! The VGG family of classifiers: blocks of 3x3 convolutions and max-pools, then fully
//! connected layers.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{max_pool2x2, Activation, ConvBnAct, ConvSpec, Dropout, Trace};

/// The VGG family (Simonyan & Zisserman 2014): blocks of 3x3 same-padded convolutions + ReLU,
/// each block followed by a 2x2 max-pool, then fully connected layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VggConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Input (height, width); each must be divisible by 2^blocks.
    pub input_size: [usize; 2],
    /// Filters of each convolution, one list per block.
    pub blocks: Vec<Vec<usize>>,
    #[serde(default)]
    pub batch_norm: bool,
    /// Widths of the hidden fully connected layers.
    pub classifier: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
}

impl VggConfig {
    /// Configuration "D" of the paper: 13 convolutions, 3 fully connected layers, 138 357 544
    /// parameters for 224x224 RGB and 1000 classes.
    pub fn vgg16(in_channels: usize, num_classes: usize, input_size: [usize; 2]) -> Self {
        Self {
            in_channels,
            num_classes,
            input_size,
            blocks: vec![
                vec![64, 64],
                vec![128, 128],
                vec![256, 256, 256],
                vec![512, 512, 512],
                vec![512, 512, 512],
            ],
            batch_norm: false,
            classifier: vec![4096, 4096],
            dropout: 0.5,
        }
    }

    /// Configuration "A" (8 convolutions).
    pub fn vgg11(in_channels: usize, num_classes: usize, input_size: [usize; 2]) -> Self {
        Self {
            blocks: vec![
                vec![64],
                vec![128],
                vec![256, 256],
                vec![512, 512],
                vec![512, 512],
            ],
            ..Self::vgg16(in_channels, num_classes, input_size)
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        let step = 1usize << self.blocks.len();
        if self.blocks.is_empty() || self.blocks.iter().any(|b| b.is_empty()) {
            return Err("vgg needs at least one block and one convolution per block".into());
        }
        if self.input_size.iter().any(|s| *s == 0 || s % step != 0) {
            return Err(format!(
                "vgg input {:?} must be a multiple of {step} (one 2x2 pool per block)",
                self.input_size
            ));
        }
        Ok(())
    }
}

/// torchvision's names: `features.{i}` counting every conv, batch norm, ReLU and pool module,
/// `classifier.{0,3,6}` for the linear layers (ReLU and dropout in between).
#[derive(Clone, Debug)]
pub struct Vgg {
    /// (index in `features` of each conv, the conv), grouped by block.
    blocks: Vec<Vec<(usize, ConvBnAct)>>,
    batch_norm: bool,
    pool_indices: Vec<usize>,
    classifier: Vec<Linear>,
    dropout: Dropout,
}

impl Vgg {
    /// Restarts the dropout masks' generator (each epoch of a resumable run).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    pub fn new(cfg: &VggConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let relu = Some(Activation::Relu);
        let mut index = 0;
        let mut in_channels = cfg.in_channels;
        let mut blocks = Vec::new();
        let mut pool_indices = Vec::new();
        for widths in &cfg.blocks {
            let mut block = Vec::new();
            for &width in widths {
                let conv = ConvBnAct::new(
                    ConvSpec::same(in_channels, width, 3),
                    cfg.batch_norm,
                    relu,
                    vb.pp(format!("features.{index}")),
                    vb.pp(format!("features.{}", index + 1)),
                )?;
                block.push((index, conv));
                index += if cfg.batch_norm { 3 } else { 2 };
                in_channels = width;
            }
            blocks.push(block);
            pool_indices.push(index);
            index += 1;
        }
        let step = 1usize << cfg.blocks.len();
        let mut features = in_channels * (cfg.input_size[0] / step) * (cfg.input_size[1] / step);
        let mut classifier = Vec::new();
        for (i, &width) in cfg.classifier.iter().chain([&cfg.num_classes]).enumerate() {
            classifier.push(linear(
                features,
                width,
                vb.pp(format!("classifier.{}", 3 * i)),
            )?);
            features = width;
        }
        Ok(Self {
            blocks,
            batch_norm: cfg.batch_norm,
            pool_indices,
            classifier,
            dropout: Dropout::new(cfg.dropout, Dropout::seed_for(&vb.prefix()))?,
        })
    }

    /// # Shapes
    /// (B, in_channels, H, W) with (H, W) = `input_size` -> logits (B, num_classes)
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let mut x = x.clone();
        for (block, pool_index) in self.blocks.iter().zip(&self.pool_indices) {
            for (index, conv) in block {
                x = conv.forward_t(&x, train)?;
                let name = format!("features.{index}");
                let mut modules = vec![name.clone()];
                if self.batch_norm {
                    modules.push(format!("features.{}", index + 1));
                }
                trace.record_modules(&name, &modules, &x);
            }
            x = max_pool2x2(&x)?;
            trace.record(format!("features.{pool_index}"), &x);
        }
        let mut x = x.flatten_from(1)?;
        let last = self.classifier.len() - 1;
        for (i, layer) in self.classifier.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = self.dropout.forward_t(&x.relu()?, train)?;
            }
            trace.record(format!("classifier.{}", 3 * i), &x);
        }
        Ok(x)
    }
}
