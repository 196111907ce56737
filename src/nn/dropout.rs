//! Inverted dropout with a seeded generator, so training runs are reproducible.

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Inverted dropout: in training each element is zeroed with probability `p` and the rest
/// scaled by `1 / (1 - p)`, so evaluation is the identity.
///
/// Masks come from a seeded `StdRng` (candle's CPU generator cannot be seeded), so a run is
/// reproducible; clones share the generator.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    rng: Arc<Mutex<StdRng>>,
}

impl Dropout {
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout probability {p} outside [0, 1)");
        }
        Ok(Self {
            p,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        })
    }

    /// A seed that differs per layer but depends only on the layer's name.
    pub fn seed_for(name: &str) -> u64 {
        // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    pub fn reseed(&self, seed: u64) {
        *self.rng.lock().expect("dropout RNG lock poisoned") = StdRng::seed_from_u64(seed);
    }

    pub fn p(&self) -> f64 {
        self.p
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep_scale = (1.0 / (1.0 - self.p)) as f32;
        let mask: Vec<f32> = {
            let mut rng = self.rng.lock().expect("dropout RNG lock poisoned");
            (0..x.elem_count())
                .map(|_| {
                    if rng.gen::<f64>() < self.p {
                        0.0
                    } else {
                        keep_scale
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn drops_the_given_fraction_keeps_the_mean_and_is_identity_in_eval() {
        let x = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
        let dropout = Dropout::new(0.3, 1).unwrap();
        let y: Vec<f32> = dropout
            .forward_t(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.3).abs() < 0.02, "dropped fraction {zeros}");
        let mean = y.iter().sum::<f32>() / y.len() as f32;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        let eval: Vec<f32> = dropout
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(eval.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn same_seed_same_mask() {
        let x = Tensor::ones(64, DType::F32, &Device::Cpu).unwrap();
        let a = Dropout::new(0.5, 9)
            .unwrap()
            .forward_t(&x, true)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = Dropout::new(0.5, 9)
            .unwrap()
            .forward_t(&x, true)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        assert!(Dropout::new(1.0, 0).is_err());
    }
}
