//! The multi-layer perceptron: fully connected layers with an activation between them.

use candle_core::{Result, Tensor};
use candle_nn::{linear, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::nn::{Activation, Dropout, Trace};

/// Multi-layer perceptron: fully connected layers with an activation between them; the last
/// layer gives logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Input features (an image is flattened: C * H * W).
    pub inputs: usize,
    pub hidden: Vec<usize>,
    pub outputs: usize,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    #[serde(default)]
    pub dropout: f64,
}

fn default_activation() -> Activation {
    Activation::Relu
}

impl MlpConfig {
    /// The course's digit classifier: 16x16 images, 100 sigmoid hidden units, 10 classes
    /// (256 * 100 + 100 + 100 * 10 + 10 = 26 710 parameters).
    pub fn digits16() -> Self {
        Self {
            inputs: 16 * 16,
            hidden: vec![100],
            outputs: 10,
            activation: Activation::Sigmoid { slope: 1.0 },
            dropout: 0.0,
        }
    }
}

/// PyTorch names: `layers.{i}` (a `ModuleList` of `Linear`).
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    dropout: Dropout,
}

impl Mlp {
    /// Restarts the dropout masks' generator (each epoch of a resumable run).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    pub fn new(cfg: &MlpConfig, vb: VarBuilder) -> Result<Self> {
        let widths: Vec<usize> = std::iter::once(cfg.inputs)
            .chain(cfg.hidden.iter().copied())
            .chain(std::iter::once(cfg.outputs))
            .collect();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            activation: cfg.activation,
            dropout: Dropout::new(cfg.dropout, Dropout::seed_for(&vb.prefix()))?,
        })
    }

    /// # Shapes
    /// (B, ...) flattened to (B, inputs) -> logits (B, outputs)
    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let mut x = x.flatten_from(1)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = self
                    .dropout
                    .forward_t(&self.activation.forward(&x)?, train)?;
            }
            trace.record(format!("layers.{i}"), &x);
        }
        Ok(x)
    }
}
