//! The activation functions a model config can name, and applying them to a tensor.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The activations of the course. In YAML (read with `singleton_map_recursive`, as
/// `model.yaml` is): `relu`, `tanh`, `leaky_relu`, `softmax`, `{sigmoid: {slope: 1.0}}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `1 / (1 + exp(-slope * x))`; slope 1 is the logistic function.
    Sigmoid {
        slope: f64,
    },
    Tanh,
    Relu,
    /// `max(x, 0.01 x)`, PyTorch's default negative slope.
    LeakyRelu,
    /// Over the channel dimension (dim 1): class probabilities per sample or per pixel.
    Softmax,
}

/// LeakyReLU's negative slope, as in the course and PyTorch's `nn.LeakyReLU()`.
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

impl Activation {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match *self {
            Self::Sigmoid { slope } => candle_nn::ops::sigmoid(&(x * slope)?),
            Self::Tanh => x.tanh(),
            Self::Relu => x.relu(),
            Self::LeakyRelu => candle_nn::ops::leaky_relu(x, LEAKY_RELU_SLOPE),
            Self::Softmax => candle_nn::ops::softmax(x, if x.rank() == 1 { 0 } else { 1 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn each_activation_matches_its_formula() {
        let xs = [-2.0f32, -0.5, 0.0, 0.5, 2.0];
        let x = Tensor::new(&xs, &Device::Cpu).unwrap();
        let close = |got: Vec<f32>, f: &dyn Fn(f32) -> f32| {
            for (g, x) in got.iter().zip(xs) {
                assert!((g - f(x)).abs() < 1e-6, "{g} vs {} at {x}", f(x));
            }
        };
        let slope = 2.5;
        close(
            values(&Activation::Sigmoid { slope }.forward(&x).unwrap()),
            &|x| 1.0 / (1.0 + (-(slope as f32) * x).exp()),
        );
        close(values(&Activation::Tanh.forward(&x).unwrap()), &|x| {
            x.tanh()
        });
        close(values(&Activation::Relu.forward(&x).unwrap()), &|x| {
            x.max(0.0)
        });
        close(values(&Activation::LeakyRelu.forward(&x).unwrap()), &|x| {
            if x > 0.0 {
                x
            } else {
                0.01 * x
            }
        });
    }

    #[test]
    fn softmax_runs_over_the_channel_dimension() {
        // (B=1, C=2, H=1, W=2): each pixel's two channels sum to one.
        let x = Tensor::new(&[[[[0.0f32, 3.0]], [[0.0f32, 1.0]]]], &Device::Cpu).unwrap();
        let p = Activation::Softmax.forward(&x).unwrap();
        let sums = values(&p.sum(1).unwrap());
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
        assert!((values(&p)[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn yaml_spelling() {
        let read = |text: &str| -> Activation {
            serde_yaml::with::singleton_map_recursive::deserialize(
                serde_yaml::Deserializer::from_str(text),
            )
            .unwrap()
        };
        assert_eq!(
            read("{sigmoid: {slope: 0.5}}"),
            Activation::Sigmoid { slope: 0.5 }
        );
        let b = read("leaky_relu");
        assert_eq!(b, Activation::LeakyRelu);
    }
}
