//! The course's filter visualisation: start from a blank image and climb the gradient of one
//! filter's mean response with respect to the input; the image that excites each filter most,
//! shown as a grid.
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::TrainError;
use crate::models::{LoadedModel, Task};
use crate::nn::Trace;

/// What [`visualize_filters`] produced: a grid image and each filter's mean response before
/// and after the ascent.
pub struct FilterImages {
    pub rgb: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub start: Vec<f32>,
    pub end: Vec<f32>,
}

/// The names `--layer` accepts, as `perception_train summary --model` lists them.
pub fn layer_names(model: &LoadedModel, device: &Device) -> Result<Vec<String>, TrainError> {
    let mut trace = Trace::on();
    model
        .network
        .forward_traced(&inputs(model, 1, device)?, false, &mut trace)?;
    Ok(trace.rows().iter().map(|r| r.name.clone()).collect())
}

fn inputs(model: &LoadedModel, batch: usize, device: &Device) -> candle_core::Result<Vec<Tensor>> {
    let (c, h, w) = (
        model.config.architecture.input_channels(),
        model.config.input.height as usize,
        model.config.input.width as usize,
    );
    let mut x = vec![Tensor::zeros((batch, c, h, w), DType::F32, device)?];
    if model.network.input_count() == 2 {
        // The grasp network's gripper depth: the training mean (0 after normalisation).
        x.push(Tensor::zeros((batch, 1), DType::F32, device)?);
    }
    Ok(x)
}

/// Gradient ascent, `steps` normalised steps of size `step`, from a blank (mean-grey) image
/// with seeded noise (std 0.2 in normalised units, so no ReLU filter starts dead), for
/// filters 0..`filters` of `layer` at once (one image each).
pub fn visualize_filters(
    model: &LoadedModel,
    layer: &str,
    filters: usize,
    steps: usize,
    step: f64,
    device: &Device,
) -> Result<FilterImages, TrainError> {
    if model.config.task == Task::Classification
        && matches!(
            model.config.architecture,
            crate::models::Architecture::Mlp(_)
        )
    {
        return Err(TrainError::Request(
            "an MLP has no filters; give a convolutional model".into(),
        ));
    }
    let names = layer_names(model, device)?;
    if !names.iter().any(|n| n == layer) {
        return Err(TrainError::Request(format!(
            "no layer '{layer}' in {}; layers: {}",
            model.config.name,
            names.join(", ")
        )));
    }
    let mut fixed = inputs(model, filters, device)?;
    let shape = fixed[0].dims().to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let noise = Normal::new(0.0f32, 0.2).expect("valid normal");
    let start: Vec<f32> = (0..fixed[0].elem_count())
        .map(|_| noise.sample(&mut rng))
        .collect();
    let x = Var::from_tensor(&Tensor::from_vec(start, shape.as_slice(), device)?)?;
    let mut response = |x: &Tensor| -> Result<Tensor, TrainError> {
        fixed[0] = x.clone();
        let mut trace = Trace::capture(layer);
        model.network.forward_traced(&fixed, false, &mut trace)?;
        let act = trace
            .captured()
            .ok_or_else(|| TrainError::Request(format!("layer '{layer}' did not run")))?
            .clone();
        let channels = act.dim(1)?;
        if filters > channels {
            return Err(TrainError::Request(format!(
                "layer '{layer}' has {channels} filters; ask for at most that many"
            )));
        }
        // Mean response of filter k in image k: (B, F, ...) -> (B, F) -> diagonal.
        let per_filter = if act.rank() > 2 {
            act.flatten_from(2)?.mean(2)?
        } else {
            act
        };
        let eye = Tensor::eye(filters, DType::F32, device)?;
        let eye = if channels > filters {
            Tensor::cat(
                &[
                    eye,
                    Tensor::zeros((filters, channels - filters), DType::F32, device)?,
                ],
                1,
            )?
        } else {
            eye
        };
        Ok((per_filter * eye)?.sum(1)?)
    };
    let first = response(x.as_tensor())?.to_vec1::<f32>()?;
    for _ in 0..steps {
        let r = response(x.as_tensor())?;
        let grads = r.sum_all()?.backward()?;
        let g = grads
            .get(x.as_tensor())
            .ok_or_else(|| TrainError::Request("the layer does not depend on the input".into()))?;
        // Each image's gradient scaled to unit mean magnitude: every filter climbs alike.
        let scale = (g.abs()?.flatten_from(1)?.mean_keepdim(1)? + 1e-8)?;
        let g = g.broadcast_div(&scale.reshape((filters, 1, 1, 1))?)?;
        let next = (x.as_tensor() + (g * step)?)?.clamp(-3f32, 3f32)?;
        x.set(&next.detach())?;
    }
    let last = response(x.as_tensor())?.to_vec1::<f32>()?;
    let (rgb, width, height) = grid(&x.as_tensor().to_device(&Device::Cpu)?, model)?;
    Ok(FilterImages {
        rgb,
        width,
        height,
        start: first,
        end: last,
    })
}

/// Tiles the (K, C, H, W) images into a near-square grid, each stretched to the full grey or
/// colour range (the course's display), small inputs enlarged to about 64 px.
fn grid(images: &Tensor, model: &LoadedModel) -> Result<(Vec<u8>, u32, u32), TrainError> {
    let (k, c, h, w) = images.dims4()?;
    let norm = &model.config.normalization;
    let zoom = (64 / h.min(w)).max(1);
    let (th, tw) = (h * zoom, w * zoom);
    let cols = (k as f64).sqrt().ceil() as usize;
    let rows = k.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (tw + gap) + gap, rows * (th + gap) + gap);
    let mut out = vec![255u8; gw * gh * 3];
    let data = images.flatten_all()?.to_vec1::<f32>()?;
    for i in 0..k {
        let img = &data[i * c * h * w..(i + 1) * c * h * w];
        // Back to [0, 1] pixel values with the model's normalisation, then stretched.
        let values: Vec<f32> = img
            .iter()
            .enumerate()
            .map(|(j, &v)| {
                let ch = (j / (h * w)).min(2);
                v * norm.std[ch] + norm.mean[ch]
            })
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = (hi - lo).max(1e-6);
        let (ox, oy) = (gap + (i % cols) * (tw + gap), gap + (i / cols) * (th + gap));
        for y in 0..th {
            for x in 0..tw {
                let p = (y / zoom) * w + x / zoom;
                for ch in 0..3 {
                    let src = if c >= 3 { ch } else { 0 };
                    let v = (values[src * h * w + p] - lo) / span;
                    out[((oy + y) * gw + ox + x) * 3 + ch] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    Ok((out, gw as u32, gh as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{
        Architecture, ClassInfo, InputSize, LeNet5Config, ModelConfig, Network, WeightsSource,
    };
    use crate::preprocess::Normalization;
    use candle_nn::{VarBuilder, VarMap};

    fn lenet() -> LoadedModel {
        let architecture = Architecture::Lenet5(LeNet5Config {
            input_size: 28,
            ..LeNet5Config::classic()
        });
        let varmap = VarMap::new();
        let network = Network::new(
            &architecture,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        crate::nn::initialize(&varmap, crate::nn::Init::He, 3).unwrap();
        LoadedModel {
            config: ModelConfig {
                name: "lenet".into(),
                task: Task::Classification,
                architecture,
                input: InputSize {
                    width: 28,
                    height: 28,
                },
                classes: (0..10)
                    .map(|i| ClassInfo {
                        name: i.to_string(),
                        color: [0, 0, 0],
                    })
                    .collect(),
                normalization: Normalization::default(),
                untrained_seed: Some(3),
                calibration: None,
                provenance: None,
            },
            network,
            varmap,
            weights: WeightsSource::UntrainedSeed(3),
        }
    }

    #[test]
    fn ascent_raises_every_filters_response_and_tiles_a_grid() {
        let model = lenet();
        let names = layer_names(&model, &Device::Cpu).unwrap();
        let conv = names
            .iter()
            .find(|n| n.starts_with("conv"))
            .unwrap()
            .clone();
        let out = visualize_filters(&model, &conv, 4, 20, 0.05, &Device::Cpu).unwrap();
        for (a, b) in out.start.iter().zip(&out.end) {
            assert!(b > a, "{:?} -> {:?}", out.start, out.end);
        }
        // 4 filters: a 2 x 2 grid of 28 px tiles enlarged twice, 2 px gaps.
        assert_eq!((out.width, out.height), (2 * 58 + 2, 2 * 58 + 2));
        assert_eq!(out.rgb.len(), (out.width * out.height * 3) as usize);

        let err = visualize_filters(&model, "nope", 2, 1, 0.1, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("layers:") && err.contains(&conv), "{err}");
        let err = visualize_filters(&model, &conv, 99, 1, 0.1, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("filters"), "{err}");
    }
}
