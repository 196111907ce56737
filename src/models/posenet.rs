//! PoseNet camera relocalisation: a ResNet backbone and regressors for position (metres) and
//! orientation (quaternion).

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{ResNet, ResNetConfig, Stem};
use crate::nn::{BlockKind, Dropout, Trace};

/// PoseNet (Kendall et al. 2015): a CNN backbone, a fully connected layer, then two regressors
/// for the camera position (metres) and orientation (quaternion w, x, y, z).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseNetConfig {
    /// Its `num_classes` is ignored: the backbone ends at the pooled features.
    pub backbone: ResNetConfig,
    /// Width of the fully connected layer (2048 in the paper).
    pub hidden: usize,
    #[serde(default)]
    pub dropout: f64,
    /// Weight of the orientation error in the loss (`beta`; the paper uses 120-750 outdoors).
    pub beta: f64,
}

impl PoseNetConfig {
    /// ResNet-18-shaped backbone at 32 filters, for a work cell seen from many viewpoints.
    pub fn small() -> Self {
        Self {
            backbone: ResNetConfig {
                base_channels: 32,
                ..ResNetConfig::resnet18(3, 0)
            },
            hidden: 256,
            dropout: 0.2,
            beta: 10.0,
        }
    }

    pub fn tiny() -> Self {
        Self {
            backbone: ResNetConfig {
                in_channels: 3,
                num_classes: 0,
                block: BlockKind::Basic,
                layers: vec![1, 1],
                base_channels: 8,
                stem: Stem::Small,
            },
            hidden: 16,
            dropout: 0.0,
            beta: 10.0,
        }
    }

    fn backbone(&self) -> ResNetConfig {
        ResNetConfig {
            num_classes: 0,
            ..self.backbone.clone()
        }
    }
}

/// PyTorch names: `backbone.*` (a ResNet without `fc`), `fc`, `fc_xyz`, `fc_wpqr`.
#[derive(Clone, Debug)]
pub struct PoseNet {
    backbone: ResNet,
    fc: Linear,
    fc_xyz: Linear,
    fc_wpqr: Linear,
    dropout: Dropout,
}

impl PoseNet {
    /// Restarts the dropout masks' generator (each epoch of a resumable run).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    pub fn new(cfg: &PoseNetConfig, vb: VarBuilder) -> Result<Self> {
        let backbone_cfg = cfg.backbone();
        Ok(Self {
            backbone: ResNet::new(&backbone_cfg, vb.pp("backbone"))?,
            fc: linear(backbone_cfg.feature_channels(), cfg.hidden, vb.pp("fc"))?,
            fc_xyz: linear(cfg.hidden, 3, vb.pp("fc_xyz"))?,
            fc_wpqr: linear(cfg.hidden, 4, vb.pp("fc_wpqr"))?,
            dropout: Dropout::new(cfg.dropout, Dropout::seed_for(&vb.prefix()))?,
        })
    }

    /// # Shapes
    /// (B, 3, H, W) -> (B, 7): position (x, y, z) metres then the raw quaternion (w, x, y, z),
    /// not yet normalised (the loss needs it raw; see [`PoseNet::split`]).
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        trace.enter("backbone");
        let features = self.backbone.features_traced(x, train, trace);
        trace.exit();
        let features = features?;
        let h = self
            .dropout
            .forward_t(&self.fc.forward(&features)?.relu()?, train)?;
        trace.record("fc", &h);
        let xyz = self.fc_xyz.forward(&h)?;
        trace.record("fc_xyz", &xyz);
        let wpqr = self.fc_wpqr.forward(&h)?;
        trace.record("fc_wpqr", &wpqr);
        Tensor::cat(&[&xyz, &wpqr], 1)
    }

    /// Splits a (B, 7) output into position (B, 3) and the unit quaternion (B, 4).
    pub fn split(output: &Tensor) -> Result<(Tensor, Tensor)> {
        let xyz = output.narrow(1, 0, 3)?;
        let q = output.narrow(1, 3, 4)?;
        let norm = (q.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-12)?;
        Ok((xyz, q.broadcast_div(&norm)?))
    }
}
