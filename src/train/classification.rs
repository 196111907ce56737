use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use super::checkpoint::{load_checkpoint, publish_model, save_checkpoint, Progress};
use super::{initialize, weight_penalty, DataConfig, Optimizer, Param, TrainConfig, TrainError};
use crate::data::read_idx;
use crate::models::{assign_weights_strict, ClassInfo, InputSize, ModelConfig, Network, Task};
use crate::nn::loss::cross_entropy;
use crate::preprocess::Normalization;

/// Images as f32 in [0, 1], (N, C, H, W) row-major, and their class ids.
pub struct ClassificationSet {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub shape: [usize; 3],
}

impl ClassificationSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads an IDX image file (N, H, W) and its label file (N).
    pub fn from_idx(images: &Path, labels: &Path) -> Result<Self, TrainError> {
        let x = read_idx(images)?;
        let y = read_idx(labels)?;
        if x.dims.len() != 3 || y.dims.len() != 1 || x.dims[0] != y.dims[0] {
            return Err(TrainError::Data(format!(
                "{} {:?} and {} {:?} are not N images of H x W and N labels",
                images.display(),
                x.dims,
                labels.display(),
                y.dims
            )));
        }
        Ok(Self {
            images: x.data.iter().map(|&v| v as f32 / 255.0).collect(),
            labels: y.data.iter().map(|&v| v as u32).collect(),
            shape: [1, x.dims[1], x.dims[2]],
        })
    }

    fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// A batch of the examples `indices`, normalised, on `device`.
    fn batch(
        &self,
        indices: &[usize],
        norm: &Normalization,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = self.sample_len();
        let plane = self.shape[1] * self.shape[2];
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            for (j, v) in self.images[i * n..(i + 1) * n].iter().enumerate() {
                let c = (j / plane).min(2);
                x.push((v - norm.mean[c]) / norm.std[c]);
            }
        }
        let [c, h, w] = self.shape;
        let x = Tensor::from_vec(x, (indices.len(), c, h, w), device)?;
        let y = Tensor::from_vec(
            indices.iter().map(|&i| self.labels[i]).collect::<Vec<_>>(),
            indices.len(),
            device,
        )?;
        Ok((x, y))
    }

    /// Per-channel mean and standard deviation over `indices` (the training split only).
    fn normalization(&self, indices: &[usize]) -> Normalization {
        let n = self.sample_len();
        let plane = self.shape[1] * self.shape[2];
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        let mut count = [0f64; 3];
        for &i in indices {
            for (j, &v) in self.images[i * n..(i + 1) * n].iter().enumerate() {
                let c = (j / plane).min(2);
                sum[c] += v as f64;
                sq[c] += (v as f64).powi(2);
                count[c] += 1.0;
            }
        }
        let mut norm = Normalization::default();
        for c in 0..3 {
            // Grey images: the one channel's statistics stand for all three.
            let k = if count[c] > 0.0 { c } else { 0 };
            let mean = sum[k] / count[k];
            norm.mean[c] = mean as f32;
            norm.std[c] = ((sq[k] / count[k] - mean * mean).max(1e-12)).sqrt() as f32;
        }
        norm
    }
}

/// Accuracy, mean loss and the confusion matrix (rows: true class, columns: predicted).
#[derive(Clone, Debug, Serialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    pub loss: f64,
    pub confusion_matrix: Vec<Vec<u64>>,
}

pub fn evaluate(
    network: &Network,
    data: &ClassificationSet,
    indices: &[usize],
    norm: &Normalization,
    classes: usize,
    device: &Device,
) -> candle_core::Result<ClassificationMetrics> {
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut loss_sum = 0.0;
    for chunk in indices.chunks(512) {
        let (x, y) = data.batch(chunk, norm, device)?;
        let logits = network.forward_t(&[x], false)?;
        loss_sum += cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (p, t) in predicted.iter().zip(y.to_vec1::<u32>()?) {
            confusion[t as usize][*p as usize] += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    Ok(ClassificationMetrics {
        accuracy: correct as f64 / indices.len().max(1) as f64,
        loss: loss_sum / indices.len().max(1) as f64,
        confusion_matrix: confusion,
    })
}

/// What `fit` hands back.
pub struct FitReport {
    pub run: PathBuf,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    pub test: ClassificationMetrics,
    pub seconds_per_epoch: f64,
}

/// Trains a classifier as `config` says, checkpointing every epoch, keeping the best model
/// by validation accuracy, stopping early when asked; `resume` continues from the run's
/// checkpoint and gives the same next losses as an uninterrupted run.
pub fn fit_classification(
    config: &TrainConfig,
    resume: bool,
    device: &Device,
) -> Result<FitReport, TrainError> {
    config.check().map_err(TrainError::Config)?;
    let DataConfig::Idx {
        train_images,
        train_labels,
        test_images,
        test_labels,
        class_names,
    } = &config.data;
    let train = ClassificationSet::from_idx(train_images, train_labels)?;
    let test = ClassificationSet::from_idx(test_images, test_labels)?;
    let classes = config
        .architecture
        .num_classes()
        .ok_or_else(|| TrainError::Config("the architecture is not a classifier".into()))?;
    if class_names.len() != classes {
        return Err(TrainError::Config(format!(
            "{} class names for a {classes}-class network",
            class_names.len()
        )));
    }
    if let Some(bad) = train
        .labels
        .iter()
        .chain(&test.labels)
        .find(|&&l| l as usize >= classes)
    {
        return Err(TrainError::Data(format!(
            "label {bad} outside the {classes} classes"
        )));
    }

    // The split and everything random derive from the seed, so a resumed run sees the same.
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    let held_out = (train.len() as f64 * config.validation_fraction).round() as usize;
    let (validation, training) = order.split_at(held_out);
    let norm = if config.normalize {
        train.normalization(training)
    } else {
        Normalization::default()
    };

    let varmap = VarMap::new();
    let network = Network::new(
        &config.architecture,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
    )?;
    initialize(&varmap, config.init, config.seed)?;
    let params: Vec<Param> = {
        let vars = varmap.data().lock().expect("VarMap lock poisoned");
        let mut names: Vec<&String> = vars
            .keys()
            .filter(|n| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| Param {
                name: n.clone(),
                var: vars[n].clone(),
                lr_scale: 1.0,
            })
            .collect()
    };
    let mut optimizer = Optimizer::new(config.optimizer.clone(), params.clone())?;
    let run = config.out.clone();
    std::fs::create_dir_all(&run).map_err(|source| TrainError::Io {
        path: run.clone(),
        source,
    })?;
    let mut progress = Progress {
        epoch: 0,
        iteration: 0,
        best_metric: f64::NEG_INFINITY,
        best_epoch: 0,
        epochs_without_improvement: 0,
    };
    if resume {
        let (weights, optim, saved) = load_checkpoint(&run, device)?;
        assign_weights_strict(&varmap, &weights).map_err(TrainError::Checkpoint)?;
        optimizer.load_state(&optim)?;
        progress = saved;
    }
    let log_path = run.join("log.csv");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(resume)
        .write(true)
        .truncate(!resume)
        .open(&log_path)
        .map_err(|source| TrainError::Io {
            path: log_path.clone(),
            source,
        })?;
    if !resume {
        writeln!(log, "epoch,train_loss,train_accuracy,validation_loss,validation_accuracy,learning_rate,seconds,samples_per_second")
            .map_err(|source| TrainError::Io { path: log_path.clone(), source })?;
    }
    let model_config = |metrics: serde_yaml::Value| ModelConfig {
        name: config.name.clone(),
        task: Task::Classification,
        architecture: config.architecture.clone(),
        input: InputSize {
            width: train.shape[2] as u32,
            height: train.shape[1] as u32,
        },
        classes: class_names
            .iter()
            .map(|n| ClassInfo {
                name: n.clone(),
                color: [200, 200, 200],
            })
            .collect(),
        normalization: norm.clone(),
        untrained_seed: None,
        provenance: Some(metrics),
    };

    let mut epoch_seconds = Vec::new();
    while progress.epoch < config.epochs {
        let epoch = progress.epoch + 1;
        let started = Instant::now();
        let mut batch_order = training.to_vec();
        batch_order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
        ));
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let batches = batch_order.len().div_ceil(config.batch_size);
        for (b, chunk) in batch_order.chunks(config.batch_size).enumerate() {
            let lr = config
                .schedule
                .learning_rate(config.learning_rate, progress.iteration);
            let (x, y) = train.batch(chunk, &norm, device)?;
            let logits = network.forward_t(&[x], true)?;
            let data_loss = cross_entropy(&logits, &y)?;
            let loss = match weight_penalty(&params, config.l1, config.l2)? {
                Some(penalty) => (&data_loss + penalty)?,
                None => data_loss.clone(),
            };
            let value = data_loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    iteration: progress.iteration,
                    lr,
                });
            }
            optimizer.step(&loss.backward()?, lr)?;
            progress.iteration += 1;
            loss_sum += value * chunk.len() as f64;
            correct += logits
                .argmax(D::Minus1)?
                .eq(&y)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as usize;
            seen += chunk.len();
            if b % 20 == 0 || b + 1 == batches {
                eprint!(
                    "\repoch {epoch}/{} iter {}/{batches} loss {:.4} lr {lr:.2e} {:.0} samples/s   ",
                    config.epochs,
                    b + 1,
                    loss_sum / seen as f64,
                    seen as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        epoch_seconds.push(seconds);
        let val = if validation.is_empty() {
            evaluate(&network, &train, training, &norm, classes, device)?
        } else {
            evaluate(&network, &train, validation, &norm, classes, device)?
        };
        let lr = config
            .schedule
            .learning_rate(config.learning_rate, progress.iteration);
        writeln!(
            log,
            "{epoch},{:.6},{:.6},{:.6},{:.6},{lr:.6e},{seconds:.2},{:.1}",
            loss_sum / seen as f64,
            correct as f64 / seen as f64,
            val.loss,
            val.accuracy,
            seen as f64 / seconds
        )
        .and_then(|_| log.flush())
        .map_err(|source| TrainError::Io {
            path: log_path.clone(),
            source,
        })?;
        eprintln!("\repoch {epoch}/{}: train loss {:.4}, validation accuracy {:.4} ({seconds:.1} s)          ", config.epochs, loss_sum / seen as f64, val.accuracy);
        progress.epoch = epoch;
        if val.accuracy > progress.best_metric {
            progress.best_metric = val.accuracy;
            progress.best_epoch = epoch;
            progress.epochs_without_improvement = 0;
            let provenance = serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                (
                    "data".into(),
                    serde_yaml::Value::String(train_images.display().to_string()),
                ),
                ("seed".into(), config.seed.into()),
                ("epoch".into(), (epoch as u64).into()),
                ("validation_accuracy".into(), val.accuracy.into()),
            ]))
            .expect("provenance serialises");
            publish_model(&run, epoch, &model_config(provenance), &varmap)?;
        } else {
            progress.epochs_without_improvement += 1;
        }
        save_checkpoint(&run, &varmap, optimizer.state_tensors()?, &progress)?;
        if config
            .early_stopping
            .is_some_and(|e| progress.epochs_without_improvement >= e.patience)
        {
            eprintln!(
                "early stopping: no better validation accuracy for {} epochs",
                progress.epochs_without_improvement
            );
            break;
        }
    }

    // Test metrics of the best model, written beside it.
    let best = crate::models::ModelFolder::new(run.join("model")).load(device)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let metrics = evaluate(
        &best.network,
        &test,
        &all,
        &best.config.normalization,
        classes,
        device,
    )?;
    let metrics_path = run.join("metrics.json");
    std::fs::write(
        &metrics_path,
        serde_json::to_vec_pretty(&metrics).expect("metrics serialise"),
    )
    .map_err(|source| TrainError::Io {
        path: metrics_path,
        source,
    })?;
    Ok(FitReport {
        run,
        epochs_run: progress.epoch,
        best_epoch: progress.best_epoch,
        best_validation_accuracy: progress.best_metric,
        test: metrics,
        seconds_per_epoch: epoch_seconds.iter().sum::<f64>() / epoch_seconds.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Architecture, MlpConfig};
    use crate::nn::Activation;
    use crate::train::OptimizerConfig;
    use rand::Rng;

    /// Two classes of 8x8 images: bright top half or bright bottom half, with noise.
    fn write_idx(dir: &Path, name: &str, n: usize, seed: u64) -> (PathBuf, PathBuf) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut images = vec![0, 0, 8, 3];
        for d in [n as u32, 8, 8] {
            images.extend(d.to_be_bytes());
        }
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((n as u32).to_be_bytes());
        for _ in 0..n {
            let class = rng.gen_range(0..2u8);
            labels.push(class);
            for y in 0..8 {
                for _ in 0..8 {
                    let bright = (y < 4) == (class == 0);
                    let base: f64 = if bright { 180.0 } else { 60.0 };
                    images.push((base + rng.gen_range(-50.0..50.0)) as u8);
                }
            }
        }
        let (xi, yi) = (
            dir.join(format!("{name}-images")),
            dir.join(format!("{name}-labels")),
        );
        std::fs::write(&xi, images).unwrap();
        std::fs::write(&yi, labels).unwrap();
        (xi, yi)
    }

    fn config(dir: &Path, epochs: usize) -> TrainConfig {
        let (train_images, train_labels) = write_idx(dir, "train", 300, 1);
        let (test_images, test_labels) = write_idx(dir, "test", 100, 2);
        TrainConfig {
            name: "halves".into(),
            data: DataConfig::Idx {
                train_images,
                train_labels,
                test_images,
                test_labels,
                class_names: vec!["top".into(), "bottom".into()],
            },
            architecture: Architecture::Mlp(MlpConfig {
                inputs: 64,
                hidden: vec![16],
                outputs: 2,
                activation: Activation::Relu,
                dropout: 0.0,
            }),
            out: dir.join("run"),
            epochs,
            batch_size: 16,
            learning_rate: 0.05,
            schedule: crate::train::Schedule::Constant,
            optimizer: OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            init: crate::train::Init::He,
            l1: 0.0,
            l2: 1e-4,
            normalize: true,
            validation_fraction: 0.2,
            early_stopping: None,
            seed: 3,
        }
    }

    fn log_rows(run: &Path) -> Vec<String> {
        std::fs::read_to_string(run.join("log.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect()
    }

    #[test]
    fn learns_keeps_the_best_model_and_resumes_exactly() {
        let base = std::env::temp_dir().join(format!("perception-fit-{}", std::process::id()));
        let (straight, split) = (base.join("straight"), base.join("split"));
        for d in [&straight, &split] {
            std::fs::create_dir_all(d).unwrap();
        }
        let report = fit_classification(&config(&straight, 3), false, &Device::Cpu).unwrap();
        assert!(
            report.test.accuracy > 0.9,
            "test accuracy {}",
            report.test.accuracy
        );
        let loaded = crate::models::ModelFolder::new(straight.join("run/model"))
            .load(&Device::Cpu)
            .unwrap();
        assert_eq!(loaded.config.classes.len(), 2);
        assert!(loaded.config.normalization.std[0] > 0.0);

        // Two epochs, then a resumed third: the same rows as three epochs straight (times aside).
        fit_classification(&config(&split, 2), false, &Device::Cpu).unwrap();
        fit_classification(&config(&split, 3), true, &Device::Cpu).unwrap();
        assert_eq!(
            log_rows(&split.join("run")),
            log_rows(&straight.join("run"))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn resume_without_a_checkpoint_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("perception-fit-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = fit_classification(&config(&dir, 1), true, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("drop --resume"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
