//! The classification task: image sets (IDX, image folders) in memory, batches, loss and
//! accuracy.

use std::path::Path;

use candle_core::{Device, Tensor, D};
use serde::Serialize;

use super::augment::AugmentConfig;
use super::channel_moments::ChannelMoments;
use super::fit::{Evaluation, Examples};
use super::TrainError;
use crate::data::{read_idx, ImageFolder};
use crate::models::Network;
use crate::nn::loss::weighted_cross_entropy;
use crate::preprocess::Normalization;

/// Images as f32 in [0, 1], (N, C, H, W) row-major, and their class ids.
pub struct ClassificationSet {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub shape: [usize; 3],
    pub classes: usize,
    /// Applied to every batch; set from the training split.
    pub normalization: Normalization,
    /// Per-class loss weights (`class_weights` in the config).
    pub class_weights: Option<Vec<f32>>,
    pub augmentation: Option<AugmentConfig>,
}

impl ClassificationSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads an IDX image file (N, H, W) and its label file (N).
    pub fn from_idx(images: &Path, labels: &Path, classes: usize) -> Result<Self, TrainError> {
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
        if let Some(bad) = y.data.iter().find(|&&l| l as usize >= classes) {
            return Err(TrainError::Data(format!(
                "{}: label {bad} outside the {classes} classes",
                labels.display()
            )));
        }
        Ok(Self {
            images: x.data.iter().map(|&v| v as f32 / 255.0).collect(),
            labels: y.data.iter().map(|&v| v as u32).collect(),
            shape: [1, x.dims[1], x.dims[2]],
            classes,
            normalization: Normalization::default(),
            class_weights: None,
            augmentation: None,
        })
    }

    /// A `root/<class>/*.png` folder; its class folders in sorted order are the classes.
    pub fn from_image_folder(
        root: &Path,
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<(Self, Vec<String>), TrainError> {
        let folder = ImageFolder::open(root, width, height, channels).map_err(TrainError::Data)?;
        let set = Self {
            images: folder.images,
            labels: folder.labels,
            shape: folder.shape,
            classes: folder.class_names.len(),
            normalization: Normalization::default(),
            class_weights: None,
            augmentation: None,
        };
        Ok((set, folder.class_names))
    }

    pub fn with_class_weights(mut self, weights: Option<&[f64]>) -> Self {
        self.class_weights = weights.map(|w| w.iter().map(|&x| x as f32).collect());
        self
    }

    fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// A batch of the examples `indices`, normalised, on `device`; with `augment`, each
    /// example jittered and warped (bilinear, black outside) from that seed first.
    pub fn batch_with(
        &self,
        indices: &[usize],
        norm: &Normalization,
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = self.sample_len();
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            let mut image = self.images[i * n..(i + 1) * n].to_vec();
            if let (Some(a), Some(seed)) = (&self.augmentation, augment) {
                let draw = a.draw(seed, i, w, h);
                draw.jitter(&mut image, c);
                image = image
                    .chunks_exact(plane)
                    .flat_map(|p| draw.warp.apply(p, w, h, false, 0.0))
                    .collect();
            }
            for (j, v) in image.iter().enumerate() {
                let ch = (j / plane).min(2);
                x.push((v - norm.mean[ch]) / norm.std[ch]);
            }
        }
        let x = Tensor::from_vec(x, (indices.len(), c, h, w), device)?;
        let y = Tensor::from_vec(
            indices.iter().map(|&i| self.labels[i]).collect::<Vec<_>>(),
            indices.len(),
            device,
        )?;
        Ok((x, y))
    }

    /// Per-channel mean and standard deviation over `indices` (the training split only).
    pub fn statistics(&self, indices: &[usize]) -> Normalization {
        let n = self.sample_len();
        let plane = self.shape[1] * self.shape[2];
        let mut moments = ChannelMoments::default();
        for &i in indices {
            for (j, &v) in self.images[i * n..(i + 1) * n].iter().enumerate() {
                moments.add((j / plane).min(2), v as f64);
            }
        }
        moments.normalization()
    }
}

/// Accuracy, mean loss and the confusion matrix (rows: true class, columns: predicted).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    pub loss: f64,
    pub confusion_matrix: Vec<Vec<u64>>,
}

impl Examples for ClassificationSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn set_normalization(&mut self, training: &[usize]) {
        self.normalization = self.statistics(training);
    }

    fn set_normalization_to(&mut self, norm: &Normalization) {
        self.normalization = norm.clone();
    }

    fn normalization_used(&self) -> Normalization {
        self.normalization.clone()
    }

    fn batch(
        &self,
        indices: &[usize],
        augment: Option<u64>,
        device: &Device,
    ) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let (x, y) = self.batch_with(indices, &self.normalization, augment, device)?;
        Ok((vec![x], y))
    }

    fn set_augmentation(&mut self, augmentation: AugmentConfig) {
        self.augmentation = Some(augmentation);
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
        let weights = match &self.class_weights {
            Some(w) => Some(Tensor::new(w.as_slice(), output.device())?),
            None => None,
        };
        weighted_cross_entropy(output, target, weights.as_ref())
    }

    fn evaluate(
        &self,
        network: &Network,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<Evaluation> {
        let classes = self.classes;
        let mut confusion = vec![vec![0u64; classes]; classes];
        let mut loss_sum = 0.0;
        for chunk in indices.chunks(512) {
            let (x, y) = self.batch_with(chunk, &self.normalization, None, device)?;
            let logits = network.forward_t(&[x], false)?;
            loss_sum += self.loss(&logits, &y)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (p, t) in predicted.iter().zip(y.to_vec1::<u32>()?) {
                confusion[t as usize][*p as usize] += 1;
            }
        }
        let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
        let metrics = ClassificationMetrics {
            accuracy: correct as f64 / indices.len().max(1) as f64,
            loss: loss_sum / indices.len().max(1) as f64,
            confusion_matrix: confusion,
        };
        Ok(Evaluation {
            score: metrics.accuracy,
            score_name: "accuracy",
            loss: metrics.loss,
            metrics: serde_json::to_value(&metrics).expect("metrics serialise"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::models::{Architecture, MlpConfig};
    use crate::nn::Activation;
    use crate::train::OptimizerConfig;
    use crate::train::{fit, DataConfig, TrainConfig};
    use rand::Rng;
    use rand::SeedableRng;

    /// The shipped LeNet-5 (models/lenet5_fashion_mnist) on the real Fashion-MNIST test set,
    /// which scripts/setup.sh installs from Debian (skipped, saying so, where it is absent).
    #[test]
    fn shipped_lenet5_reaches_90_percent_on_the_fashion_mnist_test_set() {
        let root = Path::new("/usr/share/datasets/fashion-mnist");
        let (images, labels) = (
            root.join("t10k-images-idx3-ubyte.gz"),
            root.join("t10k-labels-idx1-ubyte.gz"),
        );
        if !images.exists() {
            eprintln!(
                "skipped: {} missing (apt install dataset-fashion-mnist)",
                images.display()
            );
            return;
        }
        let folder = crate::models::ModelFolder::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/lenet5_fashion_mnist"
        ));
        let model = folder.load(&Device::Cpu).unwrap();
        let mut set = ClassificationSet::from_idx(&images, &labels, 10).unwrap();
        set.set_normalization_to(&model.config.normalization);
        let all: Vec<usize> = (0..set.len()).collect();
        let evaluation = set.evaluate(&model.network, &all, &Device::Cpu).unwrap();
        assert_eq!(all.len(), 10_000);
        // 0.906 when trained (config/train/lenet5_fashion_mnist.yaml); model.yaml records it.
        assert!(
            evaluation.score >= 0.90,
            "test accuracy {}",
            evaluation.score
        );
    }

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
                // Dropout on: resuming must restart its masks exactly too.
                dropout: 0.2,
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
            init: crate::nn::Init::He,
            l1: 0.0,
            l2: 1e-4,
            normalize: true,
            validation_fraction: 0.2,
            early_stopping: None,
            class_weights: None,
            // Augmentation on: resuming must redraw it exactly too.
            augmentation: Some(AugmentConfig {
                translate: 0.1,
                flip_horizontal: true,
                brightness: 0.1,
                ..Default::default()
            }),
            init_from: None,
            freeze: Vec::new(),
            lr_groups: Vec::new(),
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
        let report = fit(&config(&straight, 3), false, &Device::Cpu).unwrap();
        assert!(
            report.test.score > 0.9,
            "test accuracy {}",
            report.test.score
        );
        let loaded = crate::models::ModelFolder::new(straight.join("run/model"))
            .load(&Device::Cpu)
            .unwrap();
        assert_eq!(loaded.config.classes.len(), 2);
        assert!(loaded.config.normalization.std[0] > 0.0);

        // Two epochs, then a resumed third: the same rows as three epochs straight (times aside).
        fit(&config(&split, 2), false, &Device::Cpu).unwrap();
        fit(&config(&split, 3), true, &Device::Cpu).unwrap();
        assert_eq!(
            log_rows(&split.join("run")),
            log_rows(&straight.join("run"))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn transfer_starts_from_a_model_freezes_and_scales_learning_rates() {
        let dir = std::env::temp_dir().join(format!("perception-transfer-{}", std::process::id()));
        for sub in ["source", "target", "typo", "unmatched"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let source = config(&dir.join("source"), 2);
        fit(&source, false, &Device::Cpu).unwrap();
        let source_model = dir.join("source/run/model");
        let load = |path: &Path| {
            candle_core::safetensors::load(path.join("model.safetensors"), &Device::Cpu).unwrap()
        };
        let before = load(&source_model);

        let mut target = config(&dir.join("target"), 1);
        target.init_from = Some(crate::train::InitFrom {
            model: source_model.clone(),
            prefix_map: Default::default(),
            skip_mismatched: false,
        });
        target.freeze = vec!["layers.0.".into()];
        target.lr_groups = vec![crate::train::LrGroup {
            prefix: "layers.1.bias".into(),
            scale: 0.0,
        }];
        let report = fit(&target, false, &Device::Cpu).unwrap();
        // Started from the source: already accurate after one more epoch.
        assert!(report.test.score > 0.9, "{}", report.test.score);
        let after = load(&dir.join("target/run/model"));
        let same = |name: &str| {
            let d = (&before[name] - &after[name]).unwrap().abs().unwrap();
            d.max_keepdim(0)
                .unwrap()
                .max_keepdim(d.rank() - 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
                == 0.0
        };
        assert!(
            same("layers.0.weight") && same("layers.0.bias"),
            "frozen layer moved"
        );
        assert!(same("layers.1.bias"), "a zero learning-rate group moved");
        assert!(
            !same("layers.1.weight"),
            "the trainable layer did not train"
        );

        let mut typo = config(&dir.join("typo"), 1);
        typo.freeze = vec!["layer.0.".into()];
        let err = fit(&typo, false, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("freeze") && err.contains("layer.0."), "{err}");
        let mut unmatched = config(&dir.join("unmatched"), 1);
        unmatched.init_from = Some(crate::train::InitFrom {
            model: source_model,
            prefix_map: [("encoder.".to_string(), "".to_string())].into(),
            skip_mismatched: false,
        });
        let err = fit(&unmatched, false, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no tensor matched"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trains_and_evaluates_on_image_folders() {
        let dir = std::env::temp_dir().join(format!("perception-folders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Class "top": the upper half bright; "bottom": the lower half; noise everywhere.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (split, count) in [("train", 60), ("test", 20)] {
            for class in ["bottom", "top"] {
                let folder = dir.join(split).join(class);
                std::fs::create_dir_all(&folder).unwrap();
                for i in 0..count {
                    let rgb: Vec<u8> = (0..12 * 12)
                        .flat_map(|p| {
                            let upper = p / 12 < 6;
                            let lit = (class == "top") == upper;
                            let v = if lit { 180 } else { 40 } + rng.gen_range(0..60u8);
                            [v, v, v]
                        })
                        .collect();
                    let file = std::io::BufWriter::new(
                        std::fs::File::create(folder.join(format!("{i}.png"))).unwrap(),
                    );
                    let mut e = png::Encoder::new(file, 12, 12);
                    e.set_color(png::ColorType::Rgb);
                    e.set_depth(png::BitDepth::Eight);
                    e.write_header().unwrap().write_image_data(&rgb).unwrap();
                }
            }
        }
        let mut cfg = config(&dir, 3);
        cfg.data = DataConfig::ImageFolder {
            train: dir.join("train"),
            test: dir.join("test"),
            width: 8,
            height: 8,
            channels: 1,
        };
        let report = fit(&cfg, false, &Device::Cpu).unwrap();
        assert!(report.test.score > 0.9, "{}", report.test.score);
        let model = crate::models::ModelFolder::new(dir.join("run/model"))
            .load(&Device::Cpu)
            .unwrap();
        assert_eq!(model.config.classes[1].name, "top");
        let again = crate::train::evaluate_model(&model, &dir.join("test"), &Device::Cpu).unwrap();
        assert_eq!(again.metrics, report.test.metrics);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn early_stopping_ends_the_run_after_patience_epochs_without_progress() {
        let dir = std::env::temp_dir().join(format!("perception-early-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = config(&dir, 10);
        // A learning rate too small to change any prediction: the validation accuracy of
        // epoch 1 is never beaten.
        cfg.learning_rate = 1e-12;
        cfg.augmentation = None;
        cfg.early_stopping = Some(crate::train::EarlyStopping { patience: 2 });
        let report = fit(&cfg, false, &Device::Cpu).unwrap();
        assert_eq!((report.epochs_run, report.best_epoch), (3, 1));
        assert_eq!(log_rows(&dir.join("run")).len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_without_a_checkpoint_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("perception-fit-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = fit(&config(&dir, 1), true, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("drop --resume"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
