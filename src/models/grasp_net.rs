//! The GQ-CNN (Dex-Net 2.0) grasp-quality network: a depth patch aligned with the grasp and the
//! gripper depth in, one success logit out.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{max_pool2x2, Activation, ConvBnAct, ConvSpec, Dropout, Trace};

/// A GQ-CNN (Mahler et al. 2017, Dex-Net 2.0) scaled for a robot CPU: two pairs of
/// convolutions with a 2x2 max-pool after each pair on a depth patch centred on and aligned
/// with the grasp axis, a fully connected layer, the gripper depth through its own small layer,
/// both merged, one logit of grasp success.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraspNetConfig {
    /// Square depth-patch side in pixels (32 in Dex-Net 2.0); a multiple of 4.
    pub patch_size: usize,
    /// Filters of conv1_x and conv2_x (64 and 64 in the paper).
    pub channels: [usize; 2],
    /// Width of fc3 and fc4 (1024 in the paper).
    pub fc: usize,
    /// Width of the gripper-depth layer pc1 (16 in the paper).
    pub depth_fc: usize,
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    #[serde(default)]
    pub dropout: f64,
    /// Side of the square the patch covers at the grasp's depth, metres (the patch is
    /// resampled from the depth image, so the model works at any camera resolution).
    #[serde(default = "default_patch_width")]
    pub patch_width_m: f64,
}

fn default_true() -> bool {
    true
}

fn default_patch_width() -> f64 {
    0.12
}

impl GraspNetConfig {
    pub fn small() -> Self {
        Self {
            patch_size: 32,
            channels: [16, 32],
            fc: 128,
            depth_fc: 16,
            batch_norm: true,
            dropout: 0.3,
            patch_width_m: default_patch_width(),
        }
    }

    pub fn tiny() -> Self {
        Self {
            patch_size: 16,
            channels: [4, 8],
            fc: 16,
            depth_fc: 4,
            batch_norm: true,
            dropout: 0.0,
            patch_width_m: default_patch_width(),
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.patch_size < 8 || self.patch_size % 4 != 0 {
            return Err(format!(
                "grasp patch_size {} must be a multiple of 4, at least 8",
                self.patch_size
            ));
        }
        if !(self.patch_width_m > 0.0 && self.patch_width_m.is_finite()) {
            return Err(format!(
                "grasp patch_width_m must be positive, got {}",
                self.patch_width_m
            ));
        }
        Ok(())
    }
}

/// PyTorch names: `conv1_1`, `conv1_2`, `conv2_1`, `conv2_2` (with `bn1_1`, ...), `fc3`,
/// `pc1`, `fc4`, `fc5` (the layer names of Dex-Net's GQ-CNN).
#[derive(Clone, Debug)]
pub struct GraspNet {
    convs: [ConvBnAct; 4],
    fc3: Linear,
    pc1: Linear,
    fc4: Linear,
    fc5: Linear,
    dropout: Dropout,
}

impl GraspNet {
    /// Restarts the dropout masks' generator (each epoch of a resumable run).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    pub fn new(cfg: &GraspNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let relu = Some(Activation::Relu);
        let [c1, c2] = cfg.channels;
        let layer = |name: &str, spec: ConvSpec| {
            ConvBnAct::new(
                spec,
                cfg.batch_norm,
                relu,
                vb.pp(format!("conv{name}")),
                vb.pp(format!("bn{name}")),
            )
        };
        let side = cfg.patch_size / 4;
        Ok(Self {
            convs: [
                layer("1_1", ConvSpec::same(1, c1, 7))?,
                layer("1_2", ConvSpec::same(c1, c1, 5))?,
                layer("2_1", ConvSpec::same(c1, c2, 3))?,
                layer("2_2", ConvSpec::same(c2, c2, 3))?,
            ],
            fc3: linear(c2 * side * side, cfg.fc, vb.pp("fc3"))?,
            pc1: linear(1, cfg.depth_fc, vb.pp("pc1"))?,
            fc4: linear(cfg.fc + cfg.depth_fc, cfg.fc, vb.pp("fc4"))?,
            fc5: linear(cfg.fc, 1, vb.pp("fc5"))?,
            dropout: Dropout::new(cfg.dropout, Dropout::seed_for(&vb.prefix()))?,
        })
    }

    /// # Shapes
    /// - `patch`: (B, 1, S, S) depth patch (normalised as the model's config says)
    /// - `gripper_depth`: (B, 1), the depth of the grasp centre along the approach
    /// - returns: success logit (B, 1); `sigmoid` gives the probability
    pub fn forward_traced(
        &self,
        patch: &Tensor,
        gripper_depth: &Tensor,
        train: bool,
        trace: &mut Trace,
    ) -> Result<Tensor> {
        let names = ["1_1", "1_2", "2_1", "2_2"];
        let mut x = patch.clone();
        for (i, (conv, name)) in self.convs.iter().zip(names).enumerate() {
            x = conv.forward_t(&x, train)?;
            let modules = [format!("conv{name}"), format!("bn{name}")];
            trace.record_modules(&modules[0], &modules, &x);
            if i % 2 == 1 {
                x = max_pool2x2(&x)?;
                trace.record(format!("pool{}", i / 2 + 1), &x);
            }
        }
        let image = self
            .dropout
            .forward_t(&self.fc3.forward(&x.flatten_from(1)?)?.relu()?, train)?;
        trace.record("fc3", &image);
        let depth = self.pc1.forward(gripper_depth)?.relu()?;
        trace.record("pc1", &depth);
        let merged = Tensor::cat(&[&image, &depth], 1)?;
        let h = self
            .dropout
            .forward_t(&self.fc4.forward(&merged)?.relu()?, train)?;
        trace.record("fc4", &h);
        let logit = self.fc5.forward(&h)?;
        trace.record("fc5", &logit);
        Ok(logit)
    }
}
