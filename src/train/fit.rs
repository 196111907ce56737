use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::checkpoint::{load_checkpoint, publish_model, save_checkpoint, Progress};
use super::classification::ClassificationSet;
use super::segmentation::SegmentationSet;
use super::{weight_penalty, DataConfig, Optimizer, Param, TrainConfig, TrainError};
use crate::models::{
    assign_weights_strict, ClassInfo, InputSize, LoadedModel, ModelConfig, ModelFolder, Network,
};
use crate::nn::initialize;
use crate::preprocess::Normalization;

/// A task's examples as the training loop sees them.
pub trait Examples: Sync {
    fn len(&self) -> usize;
    /// Estimates the input normalisation on the training examples `training` and uses it from
    /// then on.
    fn set_normalization(&mut self, training: &[usize]);
    /// Uses `norm` (the training set's) from then on: test data is never measured.
    fn set_normalization_to(&mut self, norm: &Normalization);
    fn normalization_used(&self) -> Normalization;
    /// Network inputs and targets of the examples `indices`, on `device`.
    fn batch(
        &self,
        indices: &[usize],
        train: bool,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)>;
    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor>;
    /// The task's metrics on `indices`, in eval mode.
    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation>;
}

/// Metrics of one evaluation; `score` is what "best model" and early stopping maximise.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub score: f64,
    pub score_name: &'static str,
    pub loss: f64,
    pub metrics: serde_json::Value,
}

/// What `fit` hands back.
pub struct FitReport {
    pub run: PathBuf,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_validation_score: f64,
    pub test: Evaluation,
    pub seconds_per_epoch: f64,
}

/// A data set, its held-out test set, the model input size and the class table.
struct Prepared {
    train: Box<dyn Examples>,
    test: Box<dyn Examples>,
    input: InputSize,
    classes: Vec<ClassInfo>,
    description: String,
}

fn prepare(config: &TrainConfig) -> Result<Prepared, TrainError> {
    let classes = config.architecture.num_classes();
    match &config.data {
        DataConfig::Idx {
            train_images,
            train_labels,
            test_images,
            test_labels,
            class_names,
        } => {
            let k =
                classes.ok_or_else(|| TrainError::Config("IDX data needs a classifier".into()))?;
            if class_names.len() != k {
                return Err(TrainError::Config(format!(
                    "{} class names for a {k}-class network",
                    class_names.len()
                )));
            }
            let weights = config.class_weights.as_deref();
            let train = ClassificationSet::from_idx(train_images, train_labels, k)?
                .with_class_weights(weights);
            let test =
                ClassificationSet::from_idx(test_images, test_labels, k)?.with_class_weights(weights);
            let input = InputSize {
                width: train.shape[2] as u32,
                height: train.shape[1] as u32,
            };
            Ok(Prepared {
                input,
                classes: class_names
                    .iter()
                    .map(|n| ClassInfo {
                        name: n.clone(),
                        color: [200, 200, 200],
                    })
                    .collect(),
                train: Box::new(train),
                test: Box::new(test),
                description: train_images.display().to_string(),
            })
        }
        DataConfig::Generated { train, test } => {
            let k = classes.ok_or_else(|| {
                TrainError::Config("generated segmentation data needs a U-Net".into())
            })?;
            let weights = config.class_weights.as_deref();
            let train_set = SegmentationSet::open(train, k)?.with_class_weights(weights);
            let test_set = SegmentationSet::open(test, k)?.with_class_weights(weights);
            if (test_set.width, test_set.height) != (train_set.width, train_set.height) {
                return Err(TrainError::Data(format!(
                    "{} and {} differ in image size",
                    train.display(),
                    test.display()
                )));
            }
            Ok(Prepared {
                input: InputSize {
                    width: train_set.width as u32,
                    height: train_set.height as u32,
                },
                classes: train_set.classes.clone(),
                train: Box::new(train_set),
                test: Box::new(test_set),
                description: train.display().to_string(),
            })
        }
    }
}

/// Trains as `config` says, checkpointing every epoch, keeping the best model by the
/// validation score, stopping early when asked; `resume` continues from the run's checkpoint
/// and gives the same next losses as an uninterrupted run.
pub fn fit(config: &TrainConfig, resume: bool, device: &Device) -> Result<FitReport, TrainError> {
    config.check().map_err(TrainError::Config)?;
    let Prepared {
        mut train,
        mut test,
        input,
        classes,
        description,
    } = prepare(config)?;

    // The split and everything random derive from the seed, so a resumed run sees the same.
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    let held_out = (train.len() as f64 * config.validation_fraction).round() as usize;
    let (validation, training) = order.split_at(held_out);
    if training.is_empty() {
        return Err(TrainError::Data(
            "no training examples left after the validation split".into(),
        ));
    }
    if config.normalize {
        train.set_normalization(training);
    }
    let norm = train.normalization_used();
    test.set_normalization_to(&norm);

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
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(&run).map_err(io(&run))?;
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
        .map_err(io(&log_path))?;
    if !resume {
        writeln!(log, "epoch,train_loss,validation_loss,validation_score,learning_rate,seconds,samples_per_second").map_err(io(&log_path))?;
    }

    let mut epoch_seconds = Vec::new();
    while progress.epoch < config.epochs {
        let epoch = progress.epoch + 1;
        let started = Instant::now();
        // Batch order and dropout masks restart from the seed and the epoch: what makes
        // --resume give the same losses as an uninterrupted run.
        let epoch_seed = config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9);
        let mut batch_order = training.to_vec();
        batch_order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(epoch_seed));
        network.reseed_dropout(epoch_seed);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let batches = batch_order.len().div_ceil(config.batch_size);
        for (b, chunk) in batch_order.chunks(config.batch_size).enumerate() {
            let lr = config
                .schedule
                .learning_rate(config.learning_rate, progress.iteration);
            let (x, y) = train.batch(chunk, true, device)?;
            let output = network.forward_t(&[x], true)?;
            let data_loss = train.loss(&output, &y)?;
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
            seen += chunk.len();
            if b % 10 == 0 || b + 1 == batches {
                eprint!(
                    "\repoch {epoch}/{} iter {}/{batches} loss {:.4} lr {lr:.2e} {:.1} samples/s   ",
                    config.epochs,
                    b + 1,
                    loss_sum / seen as f64,
                    seen as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        epoch_seconds.push(seconds);
        let checked = if validation.is_empty() {
            training
        } else {
            validation
        };
        let val = train.evaluate(&network, checked, device)?;
        let lr = config
            .schedule
            .learning_rate(config.learning_rate, progress.iteration);
        writeln!(
            log,
            "{epoch},{:.6},{:.6},{:.6},{lr:.6e},{seconds:.2},{:.1}",
            loss_sum / seen as f64,
            val.loss,
            val.score,
            seen as f64 / seconds
        )
        .and_then(|_| log.flush())
        .map_err(io(&log_path))?;
        eprintln!(
            "\repoch {epoch}/{}: train loss {:.4}, validation {} {:.4} ({seconds:.1} s)          ",
            config.epochs,
            loss_sum / seen as f64,
            val.score_name,
            val.score
        );
        progress.epoch = epoch;
        if val.score > progress.best_metric {
            progress.best_metric = val.score;
            progress.best_epoch = epoch;
            progress.epochs_without_improvement = 0;
            let provenance = serde_yaml::to_value(serde_json::json!({
                "data": description,
                "seed": config.seed,
                "epoch": epoch,
                "validation": val.metrics,
            }))
            .expect("provenance serialises");
            let model = ModelConfig {
                name: config.name.clone(),
                task: config.architecture.task(),
                architecture: config.architecture.clone(),
                input,
                classes: classes.clone(),
                normalization: norm.clone(),
                untrained_seed: None,
                provenance: Some(provenance),
            };
            publish_model(&run, epoch, &model, &varmap)?;
        } else {
            progress.epochs_without_improvement += 1;
        }
        save_checkpoint(&run, &varmap, optimizer.state_tensors()?, &progress)?;
        if config
            .early_stopping
            .is_some_and(|e| progress.epochs_without_improvement >= e.patience)
        {
            eprintln!(
                "early stopping: no better validation {} for {} epochs",
                val.score_name, progress.epochs_without_improvement
            );
            break;
        }
    }

    // Held-out test metrics of the best model, written beside the run.
    let best = ModelFolder::new(run.join("model")).load(device)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let metrics = test.evaluate(&best.network, &all, device)?;
    let metrics_path = run.join("metrics.json");
    std::fs::write(
        &metrics_path,
        serde_json::to_vec_pretty(&metrics.metrics).expect("metrics serialise"),
    )
    .map_err(io(&metrics_path))?;
    Ok(FitReport {
        run,
        epochs_run: progress.epoch,
        best_epoch: progress.best_epoch,
        best_validation_score: progress.best_metric,
        test: metrics,
        seconds_per_epoch: epoch_seconds.iter().sum::<f64>() / epoch_seconds.len().max(1) as f64,
    })
}

/// The task's metrics of a trained model folder on a data set folder, with the model's own
/// normalisation. Today: segmentation on `perception_train generate` folders.
pub fn evaluate_model(
    model: &LoadedModel,
    data: &std::path::Path,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let classes = model.config.classes.len();
    match model.config.task {
        crate::models::Task::Segmentation => {
            let mut set = SegmentationSet::open(data, classes)?;
            if (set.width as u32, set.height as u32)
                != (model.config.input.width, model.config.input.height)
            {
                return Err(TrainError::Data(format!(
                    "{} is {}x{} but the model takes {}x{}: generate the data set at the model's input size",
                    data.display(),
                    set.width,
                    set.height,
                    model.config.input.width,
                    model.config.input.height
                )));
            }
            set.set_normalization_to(&model.config.normalization);
            let all: Vec<usize> = (0..set.len()).collect();
            Ok(set.evaluate(&model.network, &all, device)?)
        }
        other => Err(TrainError::Config(format!(
            "eval of {other:?} models comes with their training"
        ))),
    }
}
