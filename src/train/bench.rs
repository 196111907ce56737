//! `perception_train bench`: the latency of one model folder's network on deterministic
//! inputs, for the benchmark harness (bench/bench.py) to compare with the same weights in
//! PyTorch in the same run.
//!
//! Inputs are `x[i] = 0.5 sin(0.37 i)` over the flattened input tensor (and, for a GQ-CNN,
//! a grasp depth of 0.6 m), which the harness reproduces exactly. Inference runs in eval mode;
//! a training step is forward in train mode, the task's loss against fixed targets and the
//! backward pass (the gradients an optimiser step would use).

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};

use crate::models::{Architecture, LoadedModel};
use crate::nn::loss::{cross_entropy, mse};
use crate::nn::Trace;

/// What one bench run measured.
#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub input_shapes: Vec<Vec<usize>>,
    pub train_step: bool,
    pub warmup: usize,
    /// One wall time per timed repetition, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// The network's output on the bench input (inference), flattened.
    pub output: Vec<f32>,
    /// Peak resident memory of this process, megabytes (VmHWM).
    pub peak_rss_mb: f64,
    /// Each layer's median forward wall time over `repeats` more runs (in train mode for a
    /// training step), in execution order (the layer names of `perception_train summary`,
    /// PyTorch's module paths); on the CPU, where ops run synchronously.
    pub layers_ms: Vec<(String, f64)>,
    /// Training step only: median wall time of the loss and backward pass after the traced
    /// forward passes.
    pub backward_ms: Option<f64>,
}

/// The deterministic bench inputs of `loaded` at batch `batch`.
pub fn bench_inputs(loaded: &LoadedModel, batch: usize, device: &Device) -> Result<Vec<Tensor>> {
    let config = &loaded.config;
    let shape = (
        batch,
        config.architecture.input_channels(),
        config.input.height as usize,
        config.input.width as usize,
    );
    let count = shape.0 * shape.1 * shape.2 * shape.3;
    let values: Vec<f32> = (0..count)
        .map(|i| 0.5 * (0.37 * i as f64).sin() as f32)
        .collect();
    let mut inputs = vec![Tensor::from_vec(values, shape, device)?];
    if matches!(config.architecture, Architecture::GraspQuality(_)) {
        inputs.push(Tensor::full(0.6f32, (batch, 1), device)?);
    }
    Ok(inputs)
}

/// Times `repeats` runs (after `warmup` untimed ones) of inference or of a training step.
pub fn bench_model(
    loaded: &LoadedModel,
    batch: usize,
    warmup: usize,
    repeats: usize,
    train_step: bool,
    device: &Device,
) -> Result<BenchReport> {
    let inputs = bench_inputs(loaded, batch, device)?;
    let output = loaded.network.forward_t(&inputs, false)?;
    let run = || -> Result<()> {
        if train_step {
            let out = loaded.network.forward_t(&inputs, true)?;
            let loss = training_loss(&loaded.config.architecture, &out)?;
            let grads = loss.backward()?;
            // Reading one gradient back waits for the whole backward pass on any device.
            let first = loaded.varmap.all_vars().into_iter().next();
            if let Some(grad) = first.and_then(|v| grads.get(&v).cloned()) {
                grad.sum_all()?.to_scalar::<f32>()?;
            }
        } else {
            loaded
                .network
                .forward_t(&inputs, false)?
                .sum_all()?
                .to_scalar::<f32>()?;
        }
        Ok(())
    };
    for _ in 0..warmup {
        run()?;
    }
    let mut latencies_ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        run()?;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (layers_ms, backward_ms) = layer_medians(loaded, &inputs, repeats, train_step)?;
    Ok(BenchReport {
        model: loaded.config.name.clone(),
        input_shapes: inputs.iter().map(|t| t.dims().to_vec()).collect(),
        train_step,
        warmup,
        latencies_ms,
        output: output.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        peak_rss_mb: peak_rss_mb(),
        layers_ms,
        backward_ms,
    })
}

/// Median wall time of each traced layer over `repeats` forward passes (train mode and
/// followed by a timed loss + backward for a training step).
fn layer_medians(
    loaded: &LoadedModel,
    inputs: &[Tensor],
    repeats: usize,
    train_step: bool,
) -> Result<(Vec<(String, f64)>, Option<f64>)> {
    let mut runs: Vec<Vec<(String, f64)>> = Vec::with_capacity(repeats);
    let mut backward_ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let mut trace = Trace::timed();
        let out = loaded
            .network
            .forward_traced(inputs, train_step, &mut trace)?;
        runs.push(trace.layer_times_ms().to_vec());
        if train_step {
            let started = Instant::now();
            training_loss(&loaded.config.architecture, &out)?.backward()?;
            backward_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied()
    };
    let Some(first) = runs.first() else {
        return Ok((Vec::new(), None));
    };
    let layers = first
        .iter()
        .enumerate()
        .filter_map(|(i, (name, _))| {
            let times = runs
                .iter()
                .filter_map(|run| run.get(i).map(|r| r.1))
                .collect();
            median(times).map(|t| (name.clone(), t))
        })
        .collect();
    Ok((layers, median(backward_ms)))
}

/// The task's loss against fixed targets: class 1 everywhere for classifiers and segmenters,
/// zero for regressors.
fn training_loss(architecture: &Architecture, out: &Tensor) -> Result<Tensor> {
    match architecture.num_classes() {
        Some(_) => {
            let mut dims = out.dims().to_vec();
            dims.remove(1);
            let targets = Tensor::ones(dims, DType::U32, out.device())?;
            cross_entropy(out, &targets)
        }
        None => mse(out, &out.zeros_like()?),
    }
}

/// VmHWM of /proc/self/status in megabytes (0 where it cannot be read).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelFolder;

    #[test]
    fn bench_times_inference_and_a_training_step_of_a_shipped_model() {
        let folder = ModelFolder::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/gqcnn_parallel_jaw"
        ));
        let loaded = folder.load(&Device::Cpu).unwrap();
        let report = bench_model(&loaded, 2, 1, 3, false, &Device::Cpu).unwrap();
        assert_eq!(report.input_shapes, vec![vec![2, 1, 32, 32], vec![2, 1]]);
        assert_eq!(report.latencies_ms.len(), 3);
        assert!(report.latencies_ms.iter().all(|&ms| ms > 0.0));
        assert_eq!(report.output.len(), 2);
        // The same input gives the same output.
        let again = bench_model(&loaded, 2, 0, 1, true, &Device::Cpu).unwrap();
        assert_eq!(again.output, report.output);
        assert!(report.peak_rss_mb > 1.0);
    }
}
