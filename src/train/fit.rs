//! `perception_train fit`: the training loop from a config to a model folder (split,
//! normalisation, epochs, logging, curves, checkpoints, early stopping, test evaluation), and the
//! `Examples` / `Evaluation` traits the tasks implement.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::augment::AugmentConfig;
use super::checkpoint::{load_checkpoint, publish_model, save_checkpoint, Progress};
use super::classification::ClassificationSet;
use super::curves::{write_curves, EpochRow};
use super::depth::DepthSet;
use super::grasp::GraspSet;
use super::pose::PoseSet;
use super::segmentation::SegmentationSet;
use super::transfer::{apply_freeze_and_groups, init_from};
use super::{weight_penalty, DataConfig, Optimizer, Param, TrainConfig, TrainError};
use crate::data::BinDataset;
use crate::models::{
    assign_weights_strict, replace_file, Architecture, Calibration, ClassInfo, InputSize,
    LoadedModel, ModelConfig, ModelFolder, Network, Task,
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
    /// Network inputs (one tensor per network input) and targets of the examples `indices`,
    /// on `device`; with `augment`, a training batch augmented from that seed.
    fn batch(
        &self,
        indices: &[usize],
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)>;
    /// Augments training batches from now on (checked against the task first).
    fn set_augmentation(&mut self, augmentation: AugmentConfig);
    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor>;
    /// Uses `calibration` (the model's) for the probabilities `evaluate` measures; tasks
    /// without one ignore it.
    fn set_calibration(&mut self, _calibration: Option<&Calibration>) {}
    /// A calibration of the network's output fitted on `indices` (the validation split), for
    /// tasks whose output is a probability; `None` for the others.
    fn fit_calibration(
        &self,
        _network: &Network,
        _indices: &[usize],
        _device: &Device,
    ) -> candle_core::Result<Option<Calibration>> {
        Ok(None)
    }
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
            let test = ClassificationSet::from_idx(test_images, test_labels, k)?
                .with_class_weights(weights);
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
        DataConfig::ImageFolder {
            train,
            test,
            width,
            height,
            channels,
        } => {
            let k = classes
                .ok_or_else(|| TrainError::Config("image folders train a classifier".into()))?;
            let weights = config.class_weights.as_deref();
            let (train_set, names) =
                ClassificationSet::from_image_folder(train, *width, *height, *channels)?;
            let (test_set, test_names) =
                ClassificationSet::from_image_folder(test, *width, *height, *channels)?;
            if names != test_names {
                return Err(TrainError::Data(format!(
                    "{} has classes {names:?} but {} has {test_names:?}: both need the same class folders",
                    train.display(),
                    test.display()
                )));
            }
            if names.len() != k {
                return Err(TrainError::Config(format!(
                    "{} has {} class folders but the network outputs {k} classes",
                    train.display(),
                    names.len()
                )));
            }
            let channels_in = config.architecture.input_channels();
            if channels_in != *channels && !matches!(config.architecture, Architecture::Mlp(_)) {
                return Err(TrainError::Config(format!(
                    "data reads {channels} channel(s) but the network takes {channels_in}"
                )));
            }
            Ok(Prepared {
                input: InputSize {
                    width: *width as u32,
                    height: *height as u32,
                },
                classes: names
                    .into_iter()
                    .map(|name| ClassInfo {
                        name,
                        color: [200, 200, 200],
                    })
                    .collect(),
                train: Box::new(train_set.with_class_weights(weights)),
                test: Box::new(test_set.with_class_weights(weights)),
                description: train.display().to_string(),
            })
        }
        DataConfig::Generated { train, test } => {
            let (train_set, test_set) = open_generated(config, train, test)?;
            let info = BinDataset::open(train).map_err(TrainError::Data)?;
            let input = match &config.architecture {
                Architecture::GraspQuality(g) => InputSize {
                    width: g.patch_size as u32,
                    height: g.patch_size as u32,
                },
                _ => InputSize {
                    width: info.width,
                    height: info.height,
                },
            };
            let test_info = BinDataset::open(test).map_err(TrainError::Data)?;
            if (test_info.width, test_info.height) != (info.width, info.height) {
                return Err(TrainError::Data(format!(
                    "{} and {} differ in image size",
                    train.display(),
                    test.display()
                )));
            }
            let classes = match config.architecture.task() {
                Task::Segmentation => info
                    .class_names
                    .iter()
                    .zip(&info.class_colors)
                    .map(|(name, color)| ClassInfo {
                        name: name.clone(),
                        color: *color,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Prepared {
                input,
                classes,
                train: train_set,
                test: test_set,
                description: train.display().to_string(),
            })
        }
    }
}

/// The examples of a generated data set folder for the architecture's task.
fn open_task_set(
    architecture: &Architecture,
    class_weights: Option<&[f64]>,
    root: &Path,
) -> Result<Box<dyn Examples>, TrainError> {
    Ok(match architecture {
        Architecture::Unet(u) => {
            Box::new(SegmentationSet::open(root, u.num_classes)?.with_class_weights(class_weights))
        }
        Architecture::Depth(_) => Box::new(DepthSet::open(root)?),
        Architecture::Posenet(p) => Box::new(PoseSet::open(root, p.beta)?),
        Architecture::GraspQuality(g) => Box::new(GraspSet::open(root, g)?),
        other => {
            return Err(TrainError::Config(format!(
                "generated data trains segmentation (unet), depth, posenet or grasp_quality, not the {:?} task of this architecture",
                other.task()
            )))
        }
    })
}

fn open_generated(
    config: &TrainConfig,
    train: &Path,
    test: &Path,
) -> Result<(Box<dyn Examples>, Box<dyn Examples>), TrainError> {
    let weights = config.class_weights.as_deref();
    Ok((
        open_task_set(&config.architecture, weights, train)?,
        open_task_set(&config.architecture, weights, test)?,
    ))
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
    if let Some(augmentation) = &config.augmentation {
        train.set_augmentation(augmentation.clone());
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
    let params = apply_freeze_and_groups(params, &config.freeze, &config.lr_groups)?;
    let transferred = match (&config.init_from, resume) {
        (Some(init), false) => {
            let report = init_from(&varmap, init, device)?;
            eprintln!(
                "initialised {} of {} tensors from {}{}",
                report.initialised,
                report.of,
                report.model,
                if report.skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (skipped: {})", report.skipped.join("; "))
                }
            );
            Some(report)
        }
        _ => None,
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

    // The curves so far (a resumed run continues its log's).
    let mut curve_rows: Vec<EpochRow> = if resume {
        std::fs::read_to_string(&log_path)
            .map_err(io(&log_path))?
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                Some(EpochRow {
                    epoch: f.first()?.parse().ok()?,
                    train_loss: f.get(1)?.parse().ok()?,
                    validation_loss: f.get(2)?.parse().ok()?,
                    validation_score: f.get(3)?.parse().ok()?,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
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
            let batch_seed = epoch_seed ^ (b as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let (x, y) = train.batch(chunk, Some(batch_seed), device)?;
            let output = network.forward_t(&x, true)?;
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
        curve_rows.push(EpochRow {
            epoch,
            train_loss: loss_sum / seen as f64,
            validation_loss: val.loss,
            validation_score: val.score,
        });
        write_curves(&run, &curve_rows, val.score_name).map_err(io(&run.join("curves.png")))?;
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
                "init_from": transferred,
                "freeze": config.freeze,
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
                calibration: None,
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

    // The best model's calibration, fitted on the validation split and written with it.
    let mut best = ModelFolder::new(run.join("model")).load(device)?;
    let calibration_split = if validation.is_empty() {
        training
    } else {
        validation
    };
    if let Some(calibration) = train.fit_calibration(&best.network, calibration_split, device)? {
        eprintln!(
            "calibration: temperature {:.3}, validation ECE {:.4} -> {:.4}",
            calibration.temperature,
            calibration.validation_ece_before.unwrap_or(f64::NAN),
            calibration.validation_ece_after.unwrap_or(f64::NAN)
        );
        best.config.calibration = Some(calibration);
        let yaml_path = run.join("model").join("model.yaml");
        let yaml_tmp = run.join("model").join(".model.yaml.tmp");
        let yaml = serde_yaml::to_string(&best.config)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        std::fs::write(&yaml_tmp, yaml).map_err(io(&yaml_tmp))?;
        replace_file(&yaml_tmp, &yaml_path)?;
    }
    test.set_calibration(best.config.calibration.as_ref());

    // Held-out test metrics of the best model, written beside the run.
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
/// normalisation: classifiers on `<class>/*.png` folders, the other tasks on
/// `perception_train generate` folders.
pub fn evaluate_model(
    model: &LoadedModel,
    data: &std::path::Path,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    if model.config.task == Task::Classification {
        let (w, h) = (model.config.input.width, model.config.input.height);
        let (mut set, names) = ClassificationSet::from_image_folder(
            data,
            w as usize,
            h as usize,
            model.config.architecture.input_channels(),
        )?;
        let model_names: Vec<&str> = model
            .config
            .classes
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        if names != model_names {
            return Err(TrainError::Data(format!(
                "{} has class folders {names:?} but the model's classes are {model_names:?}",
                data.display()
            )));
        }
        set.set_normalization_to(&model.config.normalization);
        let all: Vec<usize> = (0..set.len()).collect();
        return Ok(set.evaluate(&model.network, &all, device)?);
    }
    let info = BinDataset::open(data).map_err(TrainError::Data)?;
    let expected = (model.config.input.width, model.config.input.height);
    if !matches!(model.config.task, Task::GraspQuality) && (info.width, info.height) != expected {
        return Err(TrainError::Data(format!(
            "{} is {}x{} but the model takes {}x{}: generate the data set at the model's input size",
            data.display(),
            info.width,
            info.height,
            expected.0,
            expected.1
        )));
    }
    let mut set = open_task_set(&model.config.architecture, None, data)?;
    set.set_normalization_to(&model.config.normalization);
    set.set_calibration(model.config.calibration.as_ref());
    let all: Vec<usize> = (0..set.len()).collect();
    Ok(set.evaluate(&model.network, &all, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{DepthNetConfig, GraspNetConfig, PoseNetConfig, UNetConfig};
    use crate::scene::config::{ObjectClasses, SceneConfig, Viewpoint};
    use crate::scene::dataset::{write_dataset, Generator};
    use crate::train::OptimizerConfig;

    fn generate(dir: &Path, name: &str, seed: u64, scene: &SceneConfig) -> PathBuf {
        let out = dir.join(name);
        let g = Generator::new(scene.clone(), 64, 48, seed, Path::new("(test)")).unwrap();
        write_dataset(&g, 10, &out, None, &|_| {}).unwrap();
        out
    }

    fn config(
        dir: &Path,
        architecture: Architecture,
        train: PathBuf,
        test: PathBuf,
    ) -> TrainConfig {
        TrainConfig {
            name: "t".into(),
            data: DataConfig::Generated { train, test },
            architecture,
            out: dir.join("run"),
            epochs: 1,
            batch_size: 4,
            learning_rate: 1e-3,
            schedule: crate::train::Schedule::Constant,
            optimizer: OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                decoupled: false,
            },
            init: crate::nn::Init::He,
            l1: 0.0,
            l2: 0.0,
            normalize: true,
            validation_fraction: 0.2,
            early_stopping: None,
            class_weights: None,
            augmentation: None,
            init_from: None,
            freeze: Vec::new(),
            lr_groups: Vec::new(),
            seed: 1,
        }
    }

    /// Every task of generated data trains an epoch, publishes a loadable model and reports
    /// its metrics under the keys `perception_train eval` promises.
    #[test]
    fn each_generated_task_trains_and_reports_its_metrics() {
        let dir = tempfile_dir("generated_tasks");
        let mut scene = SceneConfig::default();
        scene.objects.classes = ObjectClasses::Single;
        let (train, test) = (
            generate(&dir, "train", 1, &scene),
            generate(&dir, "test", 2, &scene),
        );
        scene.camera.viewpoint = Viewpoint::Hemisphere;
        scene.fixed_scene_seed = Some(3);
        let (pose_train, pose_test) = (
            generate(&dir, "pose_train", 1, &scene),
            generate(&dir, "pose_test", 2, &scene),
        );
        let cases = [
            (
                Architecture::Unet(UNetConfig::tiny(3, 4)),
                &train,
                &test,
                &["miou", "per_class_iou"][..],
            ),
            (
                Architecture::Depth(DepthNetConfig::tiny()),
                &train,
                &test,
                &["abs_rel", "rmse", "delta1"][..],
            ),
            (
                Architecture::Posenet(PoseNetConfig::tiny()),
                &pose_train,
                &pose_test,
                &["median_translation_m", "median_rotation_deg"][..],
            ),
            (
                Architecture::GraspQuality(GraspNetConfig::tiny()),
                &train,
                &test,
                &[
                    "precision",
                    "recall",
                    "average_precision",
                    "accuracy",
                    "grasp_quality_ece",
                ][..],
            ),
        ];
        for (architecture, train, test, keys) in cases {
            let task = architecture.task();
            let run = dir.join(format!("{task:?}"));
            let mut cfg = config(&run, architecture, train.clone(), test.clone());
            cfg.out = run.join("run");
            // Each task with the augmentations its labels allow.
            cfg.augmentation = Some(match task {
                Task::Pose => AugmentConfig {
                    rotate_deg: 15.0,
                    brightness: 0.2,
                    ..Default::default()
                },
                Task::GraspQuality => AugmentConfig {
                    flip_horizontal: true,
                    depth_noise_m: 0.002,
                    ..Default::default()
                },
                _ => AugmentConfig {
                    translate: 0.1,
                    rotate_deg: 10.0,
                    scale: Some([0.9, 1.1]),
                    crop: Some(0.8),
                    flip_horizontal: true,
                    brightness: 0.2,
                    contrast: 0.2,
                    saturation: 0.2,
                    depth_noise_m: 0.0,
                },
            });
            cfg.check().unwrap();
            let report = fit(&cfg, false, &Device::Cpu).unwrap();
            assert!(report.test.loss.is_finite(), "{task:?}: {:?}", report.test);
            let model = ModelFolder::new(cfg.out.join("model"))
                .load(&Device::Cpu)
                .unwrap();
            assert_eq!(model.config.task, task);
            // Only the grasp model is calibrated, on the validation split, and says how well.
            match (&model.config.calibration, task) {
                (Some(c), Task::GraspQuality) => {
                    assert!(
                        c.temperature > 0.0 && c.validation_ece_after.is_some(),
                        "{c:?}"
                    )
                }
                (None, Task::GraspQuality) => panic!("the grasp model has no calibration"),
                (c, _) => assert_eq!(*c, None, "{task:?}"),
            }
            let again = evaluate_model(&model, test, &Device::Cpu).unwrap();
            for key in keys {
                let v = &again.metrics[*key];
                assert!(!v.is_null(), "{task:?} lacks {key}: {}", again.metrics);
            }
            // The same model on the same data: eval reproduces fit's test metrics.
            assert_eq!(again.metrics, report.test.metrics, "{task:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_committed_training_config_parses_and_checks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/train");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let config: TrainConfig =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            config
                .check()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
        assert!(seen >= 5, "{seen} configs");
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("perception-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
