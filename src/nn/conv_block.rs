use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{
    batch_norm, conv2d, conv2d_no_bias, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig,
    VarBuilder,
};

/// 3x3 convolution, optional batch norm, ReLU.
///
/// PyTorch names: `conv{n}.weight` (+ `conv{n}.bias` without batch norm),
/// `bn{n}.{weight,bias,running_mean,running_var}`.
#[derive(Clone, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

impl ConvBnRelu {
    /// `index` is the `n` of `conv{n}` / `bn{n}` inside the parent module.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        padding: usize,
        batch_norm_enabled: bool,
        index: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding,
            ..Default::default()
        };
        let conv_vb = vb.pp(format!("conv{index}"));
        // The bias is redundant in front of batch norm, which has its own shift.
        let (conv, bn) = if batch_norm_enabled {
            let conv = conv2d_no_bias(in_channels, out_channels, 3, cfg, conv_vb)?;
            let bn = batch_norm(
                out_channels,
                BatchNormConfig::default(),
                vb.pp(format!("bn{index}")),
            )?;
            (conv, Some(bn))
        } else {
            (conv2d(in_channels, out_channels, 3, cfg, conv_vb)?, None)
        };
        Ok(Self { conv, bn })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.apply(&self.conv)?;
        let x = match &self.bn {
            Some(bn) => bn.forward_t(&x, train)?,
            None => x,
        };
        x.relu()
    }
}

/// Two [`ConvBnRelu`] in a row: one U-Net level as the course teaches it.
#[derive(Clone, Debug)]
pub struct DoubleConv {
    first: ConvBnRelu,
    second: ConvBnRelu,
}

impl DoubleConv {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        padding: usize,
        batch_norm_enabled: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            first: ConvBnRelu::new(
                in_channels,
                out_channels,
                padding,
                batch_norm_enabled,
                1,
                vb.clone(),
            )?,
            second: ConvBnRelu::new(
                out_channels,
                out_channels,
                padding,
                batch_norm_enabled,
                2,
                vb,
            )?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.second
            .forward_t(&self.first.forward_t(x, train)?, train)
    }
}
