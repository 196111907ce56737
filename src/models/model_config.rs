//! `model.yaml`: a model's task, architecture, class table, input size and normalisation, the
//! config that travels with its weights.

use serde::{Deserialize, Serialize};

use super::{
    DepthNetConfig, GraspNetConfig, InceptionNetConfig, LeNet5Config, MlpConfig, PoseNetConfig,
    ResNetConfig, UNetConfig, VggConfig,
};
use crate::preprocess::Normalization;

/// What a model is for; decides how the node interprets its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Segmentation,
    Depth,
    Pose,
    GraspQuality,
}

/// The network and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Mlp(MlpConfig),
    Lenet5(LeNet5Config),
    Vgg(VggConfig),
    InceptionNet(InceptionNetConfig),
    Resnet(ResNetConfig),
    Unet(UNetConfig),
    Depth(DepthNetConfig),
    Posenet(PoseNetConfig),
    GraspQuality(GraspNetConfig),
}

impl Architecture {
    /// The task this network's output answers.
    pub fn task(&self) -> Task {
        match self {
            Self::Mlp(_)
            | Self::Lenet5(_)
            | Self::Vgg(_)
            | Self::InceptionNet(_)
            | Self::Resnet(_) => Task::Classification,
            Self::Unet(_) => Task::Segmentation,
            Self::Depth(_) => Task::Depth,
            Self::Posenet(_) => Task::Pose,
            Self::GraspQuality(_) => Task::GraspQuality,
        }
    }

    /// Channels of the image input (an MLP reads one flattened grey image: 1).
    pub fn input_channels(&self) -> usize {
        match self {
            Self::Mlp(_) | Self::GraspQuality(_) => 1,
            Self::Lenet5(c) => c.in_channels,
            Self::Vgg(c) => c.in_channels,
            Self::InceptionNet(c) => c.in_channels,
            Self::Resnet(c) => c.in_channels,
            Self::Unet(c) => c.in_channels,
            Self::Depth(c) => c.in_channels,
            Self::Posenet(c) => c.backbone.in_channels,
        }
    }

    /// Number of classes the output scores, for classifiers and segmenters.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Self::Mlp(c) => Some(c.outputs),
            Self::Lenet5(c) => Some(c.num_classes),
            Self::Vgg(c) => Some(c.num_classes),
            Self::InceptionNet(c) => Some(c.num_classes),
            Self::Resnet(c) => Some(c.num_classes),
            Self::Unet(c) => Some(c.num_classes),
            Self::Depth(_) | Self::Posenet(_) | Self::GraspQuality(_) => None,
        }
    }

    /// Consistency checks serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Mlp(c) if c.inputs == 0 || c.outputs == 0 => {
                Err("mlp needs inputs and outputs of at least 1".into())
            }
            Self::Mlp(_) => Ok(()),
            Self::Lenet5(c) => c.feature_side().map(|_| ()),
            Self::Vgg(c) => c.check(),
            Self::InceptionNet(c) => c.check(),
            Self::Resnet(c) => c.check(),
            Self::Unet(c) => c.check(),
            Self::Depth(c) => c.check(),
            Self::Posenet(c) => c.backbone.check(),
            Self::GraspQuality(c) => c.check(),
        }
    }
}

/// Network input resolution, pixels. Frames are resized to it and outputs resized back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSize {
    pub width: u32,
    pub height: u32,
}

/// One output class: its name and its overlay colour (RGB).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub name: String,
    pub color: [u8; 3],
}

impl ClassInfo {
    /// The classes of the table that are not objects: the scene's background, the bin, and
    /// the boundary band a U-Net with `boundary_class` predicts between touching objects.
    pub const NOT_OBJECTS: [&'static str; 3] = ["background", "bin", "boundary"];

    /// Whether this class's pixels belong to objects (instances, detections and grasps come
    /// from them; `miou_objects` averages over them).
    pub fn is_object(&self) -> bool {
        !Self::NOT_OBJECTS.contains(&self.name.as_str())
    }
}

/// `model.yaml`: everything besides the weights that is needed to run a model. It travels
/// with the weights; nothing about the model lives in node parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub task: Task,
    /// `unet: {...}` in YAML (one-key maps for every enum inside too, not YAML tags).
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub architecture: Architecture,
    pub input: InputSize,
    pub classes: Vec<ClassInfo>,
    #[serde(default)]
    pub normalization: Normalization,
    /// Without `model.safetensors`, initialise from this seed instead (an untrained network,
    /// logged as such). Absent: the weights file is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrained_seed: Option<u64>,
    /// Data set, seed, epochs, final metrics: free-form, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_yaml::Value>,
    /// How a grasp-quality network's logit becomes a probability of success, fitted on the
    /// validation split by `perception_train fit`. Absent: the plain sigmoid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// How a calibration maps a logit to a probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// `sigmoid(logit / temperature)` (Guo et al. 2017, "On Calibration of Modern Neural
    /// Networks"): one parameter, so the ranking and the 0.5 decision stay the network's.
    Temperature,
}

/// A binary classifier's calibration: `calibration: {method: temperature, temperature: 2.5,
/// validation_ece_before: 0.08, validation_ece_after: 0.01}` in `model.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub method: CalibrationMethod,
    /// Divides the logit; > 1 softens over-confident outputs.
    pub temperature: f64,
    /// Expected calibration error (10 equal-width bins) on the validation split before and
    /// after, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_ece_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_ece_after: Option<f64>,
}

impl Calibration {
    pub fn temperature(temperature: f64) -> Self {
        Self {
            method: CalibrationMethod::Temperature,
            temperature,
            validation_ece_before: None,
            validation_ece_after: None,
        }
    }

    /// The logit as the network would have to output it for the plain sigmoid to give the
    /// calibrated probability.
    pub fn scale_logit(&self, logit: f32) -> f32 {
        match self.method {
            CalibrationMethod::Temperature => (logit as f64 / self.temperature) as f32,
        }
    }

    /// The calibrated probability of a logit.
    pub fn probability(&self, logit: f32) -> f32 {
        1.0 / (1.0 + (-self.scale_logit(logit)).exp())
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!(
                "calibration.temperature is {}; it must be a positive number (drop `calibration` for none)",
                self.temperature
            ));
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Consistency checks serde cannot express. Returns what is wrong, for the error message.
    pub fn check(&self) -> Result<(), String> {
        self.architecture.check()?;
        if self.architecture.task() != self.task {
            return Err(format!(
                "task is {:?} but the architecture is a {:?} network",
                self.task,
                self.architecture.task()
            ));
        }
        if let Some(k) = self.architecture.num_classes() {
            if k != self.classes.len() {
                return Err(format!(
                    "the architecture outputs {k} classes but {} classes are listed",
                    self.classes.len()
                ));
            }
        }
        if let Architecture::Unet(unet) = &self.architecture {
            if unet.in_channels != 3 {
                return Err(format!(
                    "architecture.unet.in_channels is {}; the node feeds RGB (3)",
                    unet.in_channels
                ));
            }
            unet.check_input_size(self.input.height as usize, self.input.width as usize)?;
        }
        if self.normalization.std.iter().any(|s| !(*s > 0.0)) {
            return Err("normalization.std must be positive".into());
        }
        if let Some(calibration) = &self.calibration {
            if self.task != Task::GraspQuality {
                return Err(format!(
                    "calibration applies to grasp_quality models, not {:?}; drop it",
                    self.task
                ));
            }
            calibration.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_yaml(name: &str) -> String {
        let path = format!("{}/models/{name}/model.yaml", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn shipped_model_yaml_without_calibration_loads_as_identity() {
        for name in [
            "gqcnn_parallel_jaw",
            "unet_bin_seg",
            "depth_bin",
            "posenet_cell",
        ] {
            let config: ModelConfig = serde_yaml::from_str(&shipped_yaml(name)).unwrap();
            assert_eq!(config.calibration, None, "{name}");
            config.check().unwrap();
        }
    }

    #[test]
    fn model_yaml_round_trips_with_and_without_calibration() {
        let mut config: ModelConfig =
            serde_yaml::from_str(&shipped_yaml("gqcnn_parallel_jaw")).unwrap();
        let plain = serde_yaml::to_string(&config).unwrap();
        assert!(
            !plain.contains("calibration"),
            "absent field written: {plain}"
        );
        assert_eq!(serde_yaml::from_str::<ModelConfig>(&plain).unwrap(), config);

        config.calibration = Some(Calibration {
            validation_ece_before: Some(0.08),
            validation_ece_after: Some(0.01),
            ..Calibration::temperature(2.5)
        });
        let yaml = serde_yaml::to_string(&config).unwrap();
        assert!(yaml.contains("method: temperature"), "{yaml}");
        let back: ModelConfig = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, config);
        back.check().unwrap();

        let by_hand = format!("{plain}calibration: {{method: temperature, temperature: 2.5}}\n");
        let read: ModelConfig = serde_yaml::from_str(&by_hand).unwrap();
        assert_eq!(read.calibration, Some(Calibration::temperature(2.5)));
    }

    #[test]
    fn calibration_rejects_bad_temperatures_and_other_tasks() {
        let mut config: ModelConfig =
            serde_yaml::from_str(&shipped_yaml("gqcnn_parallel_jaw")).unwrap();
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            config.calibration = Some(Calibration::temperature(t));
            let e = config.check().unwrap_err();
            assert!(e.contains("calibration.temperature"), "{e}");
        }
        let mut unet: ModelConfig = serde_yaml::from_str(&shipped_yaml("unet_bin_seg")).unwrap();
        unet.calibration = Some(Calibration::temperature(2.0));
        assert!(unet.check().unwrap_err().contains("grasp_quality"));
        let unknown = format!(
            "{}calibration: {{method: temperature, temperature: 2.0, bias: 1.0}}\n",
            shipped_yaml("gqcnn_parallel_jaw")
        );
        assert!(serde_yaml::from_str::<ModelConfig>(&unknown).is_err());
    }

    #[test]
    fn temperature_divides_the_logit() {
        let c = Calibration::temperature(2.0);
        // sigmoid(2 / 2) = sigmoid(1) = 0.731059
        assert!((c.probability(2.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(c.probability(0.0), 0.5);
        assert!((Calibration::temperature(1.0).probability(-3.0) - 0.047_425_87).abs() < 1e-6);
    }
}
