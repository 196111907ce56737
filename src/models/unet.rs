//! The U-Net segmentation network: per-pixel class logits from a contracting and an expanding
//! path joined by skip connections.

use candle_core::{Result, Tensor};
use candle_nn::{
    conv2d, conv_transpose2d, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    VarBuilder,
};
use serde::{Deserialize, Serialize};

use crate::nn::{self, max_pool2x2, DoubleConv, Trace};

/// U-Net (Ronneberger et al. 2015) as the course teaches it: per level two 3x3 conv (+ batch
/// norm) + ReLU, filters doubling on the way down, 2x2 max-pool, 2x2 stride-2 transposed conv
/// up, skip concatenation, 1x1 head giving per-pixel class logits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Filters of the first level; level `i` has `base_channels * 2^i`.
    pub base_channels: usize,
    /// Number of down-sampling levels (the bottleneck is below the last).
    pub depth: usize,
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    /// `true`: 3x3 convs keep the size (padding 1), output = input size. `false`: the paper's
    /// valid convs, each shrinking by 2 pixels; skips are centre-cropped, the output is smaller.
    #[serde(default = "default_true")]
    pub padding: bool,
    /// The last class is the boundary a few pixels wide where objects touch (the paper's way
    /// to separate touching instances); instance extraction splits objects along it.
    #[serde(default)]
    pub boundary_class: bool,
}

fn default_true() -> bool {
    true
}

impl UNetConfig {
    /// The original paper's sizes: 64 filters, 4 levels, valid convolutions.
    pub fn paper(in_channels: usize, num_classes: usize) -> Self {
        Self {
            in_channels,
            num_classes,
            base_channels: 64,
            depth: 4,
            batch_norm: true,
            padding: false,
            boundary_class: false,
        }
    }

    /// The node's deployment size on a robot CPU: 16 filters, 4 levels, same-padding.
    pub fn small(in_channels: usize, num_classes: usize) -> Self {
        Self {
            in_channels,
            num_classes,
            base_channels: 16,
            depth: 4,
            batch_norm: true,
            padding: true,
            boundary_class: false,
        }
    }

    /// For tests and the untrained start-up model: 8 filters, 3 levels.
    pub fn tiny(in_channels: usize, num_classes: usize) -> Self {
        Self {
            in_channels,
            num_classes,
            base_channels: 8,
            depth: 3,
            batch_norm: true,
            padding: true,
            boundary_class: false,
        }
    }

    pub fn check(&self) -> std::result::Result<(), String> {
        if self.in_channels == 0 || self.num_classes == 0 || self.base_channels == 0 {
            return Err(
                "unet needs in_channels, num_classes and base_channels of at least 1".into(),
            );
        }
        if self.boundary_class && self.num_classes < 3 {
            return Err("a boundary class needs at least background, one object class and the boundary (num_classes >= 3)".into());
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("unet depth {} outside 1..=6", self.depth));
        }
        Ok(())
    }

    /// Output (height, width) for an input, or why that input size does not work.
    pub fn output_size(
        &self,
        height: usize,
        width: usize,
    ) -> std::result::Result<(usize, usize), String> {
        Ok((self.output_len(height)?, self.output_len(width)?))
    }

    pub fn check_input_size(&self, height: usize, width: usize) -> std::result::Result<(), String> {
        self.output_size(height, width).map(|_| ())
    }

    fn output_len(&self, input: usize) -> std::result::Result<usize, String> {
        let shrink = if self.padding { 0 } else { 4 };
        let fail = || {
            let hint = if self.padding {
                format!("use a multiple of {}", 1usize << self.depth)
            } else {
                "valid convolutions need each pooled size even; try 572 for depth 4".to_string()
            };
            format!(
                "input size {input} does not fit a U-Net of depth {}: {hint}",
                self.depth
            )
        };
        let mut n = input;
        for _ in 0..self.depth {
            n = n
                .checked_sub(shrink)
                .filter(|n| *n >= 2 && n % 2 == 0)
                .ok_or_else(fail)?;
            n /= 2;
        }
        n = n.checked_sub(shrink).filter(|n| *n >= 1).ok_or_else(fail)?;
        for _ in 0..self.depth {
            n = (2 * n)
                .checked_sub(shrink)
                .filter(|n| *n >= 1)
                .ok_or_else(fail)?;
        }
        Ok(n)
    }

    fn channels(&self, level: usize) -> usize {
        self.base_channels << level
    }
}

/// PyTorch module tree: `downs.{i}`, `bottleneck`, `ups.{i}` (ConvTranspose2d), `decs.{i}`,
/// `head` (1x1 Conv2d); each DoubleConv holds `conv1`, `bn1`, `conv2`, `bn2`.
#[derive(Clone, Debug)]
pub struct UNet {
    downs: Vec<DoubleConv>,
    bottleneck: DoubleConv,
    ups: Vec<ConvTranspose2d>,
    decs: Vec<DoubleConv>,
    head: Conv2d,
    config: UNetConfig,
}

impl UNet {
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let padding = usize::from(cfg.padding);
        let bn = cfg.batch_norm;
        let mut downs = Vec::with_capacity(cfg.depth);
        let mut in_channels = cfg.in_channels;
        for level in 0..cfg.depth {
            let out = cfg.channels(level);
            downs.push(DoubleConv::new(
                in_channels,
                out,
                padding,
                bn,
                vb.pp(format!("downs.{level}")),
            )?);
            in_channels = out;
        }
        let bottleneck = DoubleConv::new(
            in_channels,
            cfg.channels(cfg.depth),
            padding,
            bn,
            vb.pp("bottleneck"),
        )?;
        let up_cfg = ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        let mut ups = Vec::with_capacity(cfg.depth);
        let mut decs = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let level = cfg.depth - 1 - i;
            let (from, to) = (cfg.channels(level + 1), cfg.channels(level));
            ups.push(conv_transpose2d(
                from,
                to,
                2,
                up_cfg,
                vb.pp(format!("ups.{i}")),
            )?);
            decs.push(DoubleConv::new(
                2 * to,
                to,
                padding,
                bn,
                vb.pp(format!("decs.{i}")),
            )?);
        }
        let head = conv2d(
            cfg.base_channels,
            cfg.num_classes,
            1,
            Conv2dConfig::default(),
            vb.pp("head"),
        )?;
        Ok(Self {
            downs,
            bottleneck,
            ups,
            decs,
            head,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// # Shapes
    /// - `x`: (B, in_channels, H, W), H and W accepted by [`UNetConfig::check_input_size`]
    /// - returns: class logits (B, num_classes, H', W'), H' x W' from [`UNetConfig::output_size`]
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_traced(x, train, &mut Trace::off())
    }

    pub fn forward_traced(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let mut skips = Vec::with_capacity(self.downs.len());
        let mut x = x.clone();
        for (i, down) in self.downs.iter().enumerate() {
            x = down.forward_t(&x, train)?;
            trace.record(format!("downs.{i}"), &x);
            skips.push(x.clone());
            x = max_pool2x2(&x)?;
            trace.record(format!("pool.{i}"), &x);
        }
        x = self.bottleneck.forward_t(&x, train)?;
        trace.record("bottleneck", &x);
        let levels = self.ups.iter().zip(&self.decs).zip(skips.iter().rev());
        for (i, ((up, dec), skip)) in levels.enumerate() {
            x = nn::conv_transpose2d(up, &x)?;
            trace.record(format!("ups.{i}"), &x);
            let skip = center_crop(skip, x.dim(2)?, x.dim(3)?)?;
            x = Tensor::cat(&[&skip, &x], 1)?;
            x = dec.forward_t(&x, train)?;
            trace.record(format!("decs.{i}"), &x);
        }
        let x = nn::conv2d(&self.head, &x)?;
        trace.record("head", &x);
        Ok(x)
    }
}

/// The centre `height` x `width` window of a (B, C, H, W) tensor (the paper's skip cropping).
fn center_crop(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (height, width) {
        return Ok(x.clone());
    }
    x.narrow(2, (h - height) / 2, height)?
        .narrow(3, (w - width) / 2, width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn build(cfg: &UNetConfig) -> (UNet, VarMap) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        (UNet::new(cfg, vb).unwrap(), varmap)
    }

    #[test]
    fn padded_unet_keeps_the_input_size() {
        let cfg = UNetConfig::tiny(3, 4);
        let (net, _) = build(&cfg);
        let x = Tensor::zeros((2, 3, 32, 48), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), &[2, 4, 32, 48]);
        assert!(cfg.check_input_size(30, 48).is_err());
    }

    #[test]
    fn unpadded_unet_matches_the_paper_sizes() {
        // Ronneberger et al. 2015, Fig. 1: 572x572 input -> 388x388 output.
        let cfg = UNetConfig::paper(1, 2);
        assert_eq!(cfg.output_size(572, 572).unwrap(), (388, 388));
        let small = UNetConfig {
            base_channels: 2,
            depth: 2,
            ..cfg
        };
        assert!(UNetConfig {
            boundary_class: true,
            ..small.clone()
        }
        .check()
        .is_err());
        let (net, _) = build(&small);
        let (h, w) = small.output_size(44, 60).unwrap();
        let x = Tensor::zeros((1, 1, 44, 60), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), &[1, 2, h, w]);
    }

    #[test]
    fn tensor_names_and_count_follow_the_pytorch_module_tree() {
        let (_, varmap) = build(&UNetConfig::tiny(3, 4));
        let data = varmap.data().lock().unwrap();
        for name in [
            "downs.0.conv1.weight",
            "downs.0.bn1.running_var",
            "bottleneck.conv2.weight",
            "ups.0.weight",
            "ups.2.bias",
            "decs.2.bn2.bias",
            "head.weight",
            "head.bias",
        ] {
            assert!(data.contains_key(name), "missing {name}");
        }
        assert!(
            !data.contains_key("downs.0.conv1.bias"),
            "no conv bias in front of batch norm"
        );
        let params: usize = data.values().map(|v| v.elem_count()).sum();
        // Hand count for base 8, depth 3, 3 -> 4 classes, conv (no bias) + bn (4 tensors each).
        let conv = |i: usize, o: usize| 9 * i * o + 4 * o;
        let expected = conv(3, 8)
            + conv(8, 8)
            + conv(8, 16)
            + conv(16, 16)
            + conv(16, 32)
            + conv(32, 32)
            + conv(32, 64)
            + conv(64, 64)
            + (64 * 32 * 4 + 32)
            + conv(64, 32)
            + conv(32, 32)
            + (32 * 16 * 4 + 16)
            + conv(32, 16)
            + conv(16, 16)
            + (16 * 8 * 4 + 8)
            + conv(16, 8)
            + conv(8, 8)
            + (8 * 4 + 4);
        assert_eq!(params, expected);
    }
}
