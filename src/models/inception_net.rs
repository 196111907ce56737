//! A GoogLeNet-style classifier built from the Inception modules of `nn`.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{
    global_avg_pool, max_pool2d, Activation, ConvBnAct, ConvSpec, Dropout, Inception,
    InceptionSpec, PoolSpec, Trace,
};

/// A GoogLeNet-style network (Szegedy et al. 2015, without the auxiliary classifiers): stem
/// (7x7/2 conv, 3x3/2 pool, 1x1 conv, 3x3 conv, 3x3/2 pool), stages of Inception modules with
/// a 3x3/2 max-pool between stages, global average pool, dropout, fully connected classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InceptionNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Filters of the stem's three convolutions.
    pub stem_channels: [usize; 3],
    pub stages: Vec<Vec<InceptionSpec>>,
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    #[serde(default)]
    pub dropout: f64,
}

fn default_true() -> bool {
    true
}

impl InceptionNetConfig {
    /// GoogLeNet's filter counts (Table 1: inception 3a-3b, 4a-4e, 5a-5b).
    pub fn googlenet(in_channels: usize, num_classes: usize) -> Self {
        let s = InceptionSpec::new;
        Self {
            in_channels,
            num_classes,
            stem_channels: [64, 64, 192],
            stages: vec![
                vec![s(64, 96, 128, 16, 32, 32), s(128, 128, 192, 32, 96, 64)],
                vec![
                    s(192, 96, 208, 16, 48, 64),
                    s(160, 112, 224, 24, 64, 64),
                    s(128, 128, 256, 24, 64, 64),
                    s(112, 144, 288, 32, 64, 64),
                    s(256, 160, 320, 32, 128, 128),
                ],
                vec![
                    s(256, 160, 320, 32, 128, 128),
                    s(384, 192, 384, 48, 128, 128),
                ],
            ],
            batch_norm: true,
            dropout: 0.4,
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.stages.is_empty() || self.stages.iter().any(|s| s.is_empty()) {
            return Err("inception net needs at least one stage with one module".into());
        }
        Ok(())
    }
}

/// PyTorch names: `conv1`, `conv2`, `conv3` (each `conv` + `bn`), `stages.{s}.{j}.*`, `fc`.
#[derive(Clone, Debug)]
pub struct InceptionNet {
    stem: [ConvBnAct; 3],
    stages: Vec<Vec<Inception>>,
    dropout: Dropout,
    fc: Linear,
}

impl InceptionNet {
    /// Restarts the dropout masks' generator (each epoch of a resumable run).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    pub fn new(cfg: &InceptionNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let relu = Some(Activation::Relu);
        let bn = cfg.batch_norm;
        let [c1, c2, c3] = cfg.stem_channels;
        let stem = [
            ConvBnAct::basic(
                ConvSpec::same(cfg.in_channels, c1, 7).stride(2),
                bn,
                relu,
                vb.pp("conv1"),
            )?,
            ConvBnAct::basic(ConvSpec::same(c1, c2, 1), bn, relu, vb.pp("conv2"))?,
            ConvBnAct::basic(ConvSpec::same(c2, c3, 3), bn, relu, vb.pp("conv3"))?,
        ];
        let mut in_channels = c3;
        let mut stages = Vec::new();
        for (s, specs) in cfg.stages.iter().enumerate() {
            let mut stage = Vec::new();
            for (j, spec) in specs.iter().enumerate() {
                stage.push(Inception::new(
                    in_channels,
                    spec,
                    bn,
                    vb.pp(format!("stages.{s}.{j}")),
                )?);
                in_channels = spec.out_channels();
            }
            stages.push(stage);
        }
        Ok(Self {
            stem,
            stages,
            dropout: Dropout::new(cfg.dropout, Dropout::seed_for(&vb.prefix()))?,
            fc: linear(in_channels, cfg.num_classes, vb.pp("fc"))?,
        })
    }

    /// # Shapes
    /// (B, in_channels, H, W) -> logits (B, num_classes)
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let pool = |x: &Tensor| max_pool2d(x, PoolSpec::new(3, 2, 1));
        let mut x = self.stem[0].forward_t(x, train)?;
        trace.record("conv1", &x);
        x = pool(&x)?;
        trace.record("maxpool1", &x);
        x = self.stem[1].forward_t(&x, train)?;
        trace.record("conv2", &x);
        x = self.stem[2].forward_t(&x, train)?;
        trace.record("conv3", &x);
        x = pool(&x)?;
        trace.record("maxpool2", &x);
        for (s, stage) in self.stages.iter().enumerate() {
            if s > 0 {
                x = pool(&x)?;
                trace.record(format!("maxpool{}", s + 2), &x);
            }
            for (j, module) in stage.iter().enumerate() {
                x = module.forward_t(&x, train)?;
                trace.record(format!("stages.{s}.{j}"), &x);
            }
        }
        let x = self.dropout.forward_t(&global_avg_pool(&x)?, train)?;
        trace.record("avgpool", &x);
        let x = self.fc.forward(&x)?;
        trace.record("fc", &x);
        Ok(x)
    }
}
