//! Convolution + batch norm + activation as one layer (`ConvBnAct`), the building block of the
//! convolutional networks.

use candle_core::{Result, Tensor};
use candle_nn::{
    batch_norm, conv2d, conv2d_no_bias, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig,
    VarBuilder,
};

use super::conv::{batch_norm_train, conv2d_batch_norm_eval, conv2d_bias_relu};
use super::Activation;

/// Geometry of a square-kernel convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvSpec {
    /// Stride 1 and "same" padding (`kernel / 2`), the common case.
    pub fn same(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: kernel / 2,
        }
    }

    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// Output length along one axis: `floor((n + 2p - k) / s) + 1`, `None` if the kernel does
    /// not fit.
    pub fn output_len(&self, input: usize) -> Option<usize> {
        (input + 2 * self.padding)
            .checked_sub(self.kernel)
            .map(|n| n / self.stride + 1)
    }
}

/// Convolution, optional batch norm, optional activation: the unit every network here is made
/// of.
///
/// PyTorch names: the convolution's `weight` (+ `bias` without batch norm) under `conv_vb`, the
/// batch norm's `weight`, `bias`, `running_mean`, `running_var` under `bn_vb`.
#[derive(Clone, Debug)]
pub struct ConvBnAct {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    activation: Option<Activation>,
}

impl ConvBnAct {
    pub fn new(
        spec: ConvSpec,
        batch_norm_enabled: bool,
        activation: Option<Activation>,
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: spec.padding,
            stride: spec.stride,
            ..Default::default()
        };
        let (i, o, k) = (spec.in_channels, spec.out_channels, spec.kernel);
        // The bias is redundant in front of batch norm, which has its own shift.
        let (conv, bn) = if batch_norm_enabled {
            let conv = conv2d_no_bias(i, o, k, cfg, conv_vb)?;
            let bn = batch_norm(o, BatchNormConfig::default(), bn_vb)?;
            (conv, Some(bn))
        } else {
            (conv2d(i, o, k, cfg, conv_vb)?, None)
        };
        Ok(Self {
            conv,
            bn,
            activation,
        })
    }

    /// torchvision's `BasicConv2d` layout: `conv` and `bn` children of `vb`.
    pub fn basic(
        spec: ConvSpec,
        batch_norm_enabled: bool,
        activation: Option<Activation>,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::new(
            spec,
            batch_norm_enabled,
            activation,
            vb.pp("conv"),
            vb.pp("bn"),
        )
    }

    /// # Shapes
    /// (B, in_channels, H, W) -> (B, out_channels, H', W'), H' from [`ConvSpec::output_len`]
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let cfg = self.conv.config();
        // A ReLU straight after the convolution runs inside it (one pass over the output).
        let relu = self.activation == Some(Activation::Relu);
        let x = match &self.bn {
            // Batch statistics: the convolution, then the batch norm (and ReLU) on its output.
            Some(bn) if train => {
                let y = conv2d_bias_relu(x, self.conv.weight(), self.conv.bias(), cfg, false)?;
                batch_norm_train(&y, bn, relu)?
            }
            // Running statistics: the batch norm is an affine map per channel, applied as
            // the convolution writes its outputs.
            Some(bn) => conv2d_batch_norm_eval(x, &self.conv, bn, relu)?,
            None => conv2d_bias_relu(x, self.conv.weight(), self.conv.bias(), cfg, relu)?,
        };
        if relu {
            Ok(x)
        } else {
            self.activate(x)
        }
    }

    fn activate(&self, x: Tensor) -> Result<Tensor> {
        match &self.activation {
            Some(activation) => activation.forward(&x),
            None => Ok(x),
        }
    }
}

/// Two 3x3 convolutions (+ batch norm) + ReLU: one U-Net level as the course teaches it.
///
/// PyTorch names: `conv1`, `bn1`, `conv2`, `bn2`.
#[derive(Clone, Debug)]
pub struct DoubleConv {
    first: ConvBnAct,
    second: ConvBnAct,
}

impl DoubleConv {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        padding: usize,
        batch_norm_enabled: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let relu = Some(Activation::Relu);
        let spec = |i| ConvSpec::same(i, out_channels, 3).padding(padding);
        Ok(Self {
            first: ConvBnAct::new(
                spec(in_channels),
                batch_norm_enabled,
                relu,
                vb.pp("conv1"),
                vb.pp("bn1"),
            )?,
            second: ConvBnAct::new(
                spec(out_channels),
                batch_norm_enabled,
                relu,
                vb.pp("conv2"),
                vb.pp("bn2"),
            )?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.second
            .forward_t(&self.first.forward_t(x, train)?, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::{ConvTranspose2dConfig, VarMap};

    fn grid(t: &Tensor) -> Vec<Vec<f32>> {
        t.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap()
    }

    fn image(rows: &[&[f32]]) -> Tensor {
        let (h, w) = (rows.len(), rows[0].len());
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn course_exercise_5x5_image_by_3x3_filter() {
        let x = image(&[
            &[1., 1., 1., 0., 0.],
            &[0., 1., 1., 1., 0.],
            &[0., 0., 1., 1., 1.],
            &[0., 0., 1., 1., 0.],
            &[0., 1., 1., 0., 0.],
        ]);
        let k = image(&[&[1., 0., 1.], &[0., 1., 0.], &[1., 0., 1.]]);
        let y = x.conv2d(&k, 0, 1, 1, 1).unwrap();
        assert_eq!(grid(&y), [[4., 3., 4.], [2., 4., 3.], [2., 3., 4.]]);
    }

    #[test]
    fn course_exercise_transposed_convolutions_of_a_2x2_input() {
        let x = image(&[&[0., 1.], &[2., 3.]]);
        let ones = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        // Each input value stamps the filter scaled by itself; overlaps add.
        let s1 = x.conv_transpose2d(&ones, 0, 0, 1, 1).unwrap();
        assert_eq!(grid(&s1), [[0., 1., 1.], [2., 6., 4.], [2., 5., 3.]]);
        let s2 = x.conv_transpose2d(&ones, 0, 0, 2, 1).unwrap();
        assert_eq!(
            grid(&s2),
            [
                [0., 0., 1., 1.],
                [0., 0., 1., 1.],
                [2., 2., 3., 3.],
                [2., 2., 3., 3.]
            ]
        );
        let k = image(&[&[1., 0., 1.], &[0., 1., 0.], &[1., 0., 1.]]);
        let s1 = x.conv_transpose2d(&k, 0, 0, 1, 1).unwrap();
        assert_eq!(
            grid(&s1),
            [
                [0., 1., 0., 1.],
                [2., 3., 3., 3.],
                [0., 3., 3., 1.],
                [2., 3., 2., 3.]
            ]
        );
        let s2 = x.conv_transpose2d(&k, 0, 0, 2, 1).unwrap();
        assert_eq!(
            grid(&s2),
            [
                [0., 0., 1., 0., 1.],
                [0., 0., 0., 1., 0.],
                [2., 0., 6., 0., 4.],
                [0., 2., 0., 3., 0.],
                [2., 0., 5., 0., 3.]
            ]
        );
        // The U-Net's up-sampling layer: 2x2 stride 2 doubles the size.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let cfg = ConvTranspose2dConfig {
            stride: 2,
            ..Default::default()
        };
        let up = candle_nn::conv_transpose2d(3, 2, 2, cfg, vb).unwrap();
        let y = Tensor::zeros((1, 3, 5, 7), DType::F32, &Device::Cpu)
            .unwrap()
            .apply(&up)
            .unwrap();
        assert_eq!(y.dims(), &[1, 2, 10, 14]);
    }

    #[test]
    fn course_exercise_output_sizes_of_an_8x8_input_with_3x3_filters_at_stride_2() {
        let x = Tensor::zeros((1, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        for (padding, side) in [(0, 3), (1, 4)] {
            let spec = ConvSpec::same(1, 1, 3).stride(2).padding(padding);
            // floor((8 + 2p - 3) / 2) + 1
            assert_eq!(spec.output_len(8), Some(side));
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let conv = ConvBnAct::basic(spec, false, None, vb).unwrap();
            assert_eq!(
                conv.forward_t(&x, false).unwrap().dims(),
                &[1, 1, side, side]
            );
        }
    }

    #[test]
    fn strided_convolution_gradient_has_the_input_shape_when_height_and_width_differ() {
        // 11x6 input, 5x5 kernel, stride 2, padding 2: remainders 0 (height) and 1 (width),
        // which candle's own backward gets wrong.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let conv = ConvBnAct::basic(ConvSpec::same(2, 3, 5).stride(2), false, None, vb).unwrap();
        let x = Var::ones((1, 2, 11, 6), DType::F32, &Device::Cpu).unwrap();
        let y = conv.forward_t(x.as_tensor(), true).unwrap();
        assert_eq!(y.dims(), &[1, 3, 6, 3]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&x).unwrap().dims(), &[1, 2, 11, 6]);
    }
}
