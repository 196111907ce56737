//! `perception_train summary`: the named architecture presets and a per-layer table of output
//! shapes and parameter counts.

use std::fmt;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::{
    Architecture, DepthNetConfig, GraspNetConfig, InceptionNetConfig, LeNet5Config, MlpConfig,
    ModelError, Network, PoseNetConfig, ResNetConfig, UNetConfig, VggConfig,
};
use crate::nn::Trace;

/// Names accepted by [`preset`], for help texts and errors.
pub const PRESET_NAMES: &[&str] = &[
    "mlp",
    "lenet5",
    "vgg11",
    "vgg16",
    "googlenet",
    "resnet18",
    "resnet34",
    "resnet50",
    "unet",
    "unet-paper",
    "depth",
    "posenet",
    "grasp",
];

/// Options of `perception_train summary <arch>`; `None` takes the preset's own value.
#[derive(Clone, Debug, Default)]
pub struct PresetOptions {
    /// Input (channels, height, width).
    pub input: Option<[usize; 3]>,
    pub classes: Option<usize>,
    /// Hidden layer widths (MLP only).
    pub hidden: Option<Vec<usize>>,
}

/// A named architecture with its usual input (C, H, W), adapted to `options`.
pub fn preset(name: &str, options: &PresetOptions) -> Result<(Architecture, [usize; 3]), String> {
    let default_input = match name {
        "mlp" => [1, 16, 16],
        "lenet5" => [1, 32, 32],
        "unet" | "depth" => [3, 256, 256],
        "unet-paper" => [1, 572, 572],
        "grasp" => [1, 32, 32],
        _ => [3, 224, 224],
    };
    let [c, h, w] = options.input.unwrap_or(default_input);
    let classes = |default: usize| options.classes.unwrap_or(default);
    if options.hidden.is_some() && name != "mlp" {
        return Err("--hidden applies to mlp only".into());
    }
    let architecture = match name {
        "mlp" => Architecture::Mlp(MlpConfig {
            inputs: c * h * w,
            hidden: options.hidden.clone().unwrap_or_else(|| vec![100]),
            outputs: classes(10),
            ..MlpConfig::digits16()
        }),
        "lenet5" => {
            if h != w {
                return Err(format!("lenet5 takes square inputs, got {h}x{w}"));
            }
            Architecture::Lenet5(LeNet5Config {
                in_channels: c,
                num_classes: classes(10),
                input_size: h,
                ..LeNet5Config::classic()
            })
        }
        "vgg11" => Architecture::Vgg(VggConfig::vgg11(c, classes(1000), [h, w])),
        "vgg16" => Architecture::Vgg(VggConfig::vgg16(c, classes(1000), [h, w])),
        "googlenet" => Architecture::InceptionNet(InceptionNetConfig::googlenet(c, classes(1000))),
        "resnet18" => Architecture::Resnet(ResNetConfig::resnet18(c, classes(1000))),
        "resnet34" => Architecture::Resnet(ResNetConfig::resnet34(c, classes(1000))),
        "resnet50" => Architecture::Resnet(ResNetConfig::resnet50(c, classes(1000))),
        "unet" => Architecture::Unet(UNetConfig::small(c, classes(4))),
        "unet-paper" => Architecture::Unet(UNetConfig::paper(c, classes(2))),
        "depth" => Architecture::Depth(DepthNetConfig {
            in_channels: c,
            ..DepthNetConfig::small()
        }),
        "posenet" => {
            let mut cfg = PoseNetConfig::small();
            cfg.backbone.in_channels = c;
            Architecture::Posenet(cfg)
        }
        "grasp" => {
            if h != w || c != 1 {
                return Err(format!(
                    "grasp takes a square 1-channel depth patch, got {c}x{h}x{w}"
                ));
            }
            Architecture::GraspQuality(GraspNetConfig {
                patch_size: h,
                ..GraspNetConfig::small()
            })
        }
        other => {
            return Err(format!(
                "unknown architecture '{other}'; choose one of {}",
                PRESET_NAMES.join(", ")
            ))
        }
    };
    if options.classes.is_some() && architecture.num_classes().is_none() {
        return Err(format!("--classes does not apply to {name}"));
    }
    architecture.check()?;
    Ok((architecture, [c, h, w]))
}

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    /// Output shape without the batch dimension.
    pub output: Vec<usize>,
    /// Multiplicative weights (convolution kernels, linear matrices): the course's count.
    pub weights: usize,
    /// Every trainable number of the layer: weights, biases, batch-norm scale and shift.
    pub params: usize,
}

/// The layer table of a network for one input, and its totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub input: [usize; 3],
    pub rows: Vec<SummaryRow>,
    /// Trainable parameters of the whole network (PyTorch's `sum(p.numel() for p in
    /// model.parameters())`); batch-norm running statistics are buffers, not parameters.
    pub total_params: usize,
}

/// Builds `architecture` on the CPU and runs one sample of `input` (C, H, W) through it.
pub fn summarize(architecture: &Architecture, input: [usize; 3]) -> Result<Summary, ModelError> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let network = Network::new(
        architecture,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    let [c, h, w] = input;
    let mut inputs = vec![Tensor::zeros((1, c, h, w), DType::F32, &device)?];
    if network.input_count() == 2 {
        inputs.push(Tensor::zeros((1, 1), DType::F32, &device)?);
    }
    let mut trace = Trace::on();
    network.forward_traced(&inputs, false, &mut trace)?;
    let vars = varmap.data().lock().expect("VarMap lock poisoned");
    let trainable = |name: &str| !name.ends_with("running_mean") && !name.ends_with("running_var");
    let owned_by = |modules: &[String], name: &str| {
        modules.iter().any(|m| {
            name.strip_prefix(m.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        })
    };
    let rows = trace
        .rows()
        .iter()
        .map(|row| {
            let mut weights = 0;
            let mut params = 0;
            for (name, var) in vars.iter() {
                if trainable(name) && owned_by(&row.modules, name) {
                    params += var.elem_count();
                    if var.rank() >= 2 {
                        weights += var.elem_count();
                    }
                }
            }
            SummaryRow {
                name: row.name.clone(),
                output: row.shape[1..].to_vec(),
                weights,
                params,
            }
        })
        .collect();
    let total_params = vars
        .iter()
        .filter(|(name, _)| trainable(name))
        .map(|(_, v)| v.elem_count())
        .sum();
    Ok(Summary {
        input,
        rows,
        total_params,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |dims: &[usize]| {
            dims.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("x")
        };
        writeln!(
            f,
            "{:<28} {:>16} {:>14} {:>14}",
            "layer", "output", "weights", "params"
        )?;
        writeln!(
            f,
            "{:<28} {:>16} {:>14} {:>14}",
            "input",
            shape(&self.input),
            0,
            0
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "{:<28} {:>16} {:>14} {:>14}",
                row.name,
                shape(&row.output),
                row.weights,
                row.params
            )?;
        }
        write!(f, "total params: {}", self.total_params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, options: PresetOptions) -> Summary {
        let (architecture, input) = preset(name, &options).unwrap();
        summarize(&architecture, input).unwrap()
    }

    fn row<'a>(s: &'a Summary, name: &str) -> &'a SummaryRow {
        s.rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    }

    #[test]
    fn course_mlp_on_16x16_digits_with_100_hidden_units() {
        let s = summary("mlp", PresetOptions::default());
        // 256 * 100 + 100 and 100 * 10 + 10.
        assert_eq!(row(&s, "layers.0").params, 25_700);
        assert_eq!(row(&s, "layers.1").params, 1_010);
        assert_eq!(s.total_params, 26_710);
        let wider = summary(
            "mlp",
            PresetOptions {
                hidden: Some(vec![30, 20]),
                classes: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(
            wider.total_params,
            256 * 30 + 30 + 30 * 20 + 20 + 20 * 3 + 3
        );
    }

    #[test]
    fn course_lenet5_first_layer() {
        let s = summary("lenet5", PresetOptions::default());
        let conv1 = row(&s, "conv1");
        assert_eq!(conv1.output, [6, 28, 28]);
        assert_eq!((conv1.weights, conv1.params), (150, 156));
        assert_eq!(row(&s, "pool2").output, [400]);
        // LeCun 1998 without the sparse C3 table: 156 + 2416 + 48120 + 10164 + 850.
        assert_eq!(s.total_params, 61_706);
    }

    #[test]
    fn course_vgg16_layer_by_layer() {
        let s = summary("vgg16", PresetOptions::default());
        // (output, weights) per layer as in the course's table (CS231n's VGGNet walk-through).
        let expected: [([usize; 3], usize); 13] = [
            ([64, 224, 224], 1_728),
            ([64, 224, 224], 36_864),
            ([128, 112, 112], 73_728),
            ([128, 112, 112], 147_456),
            ([256, 56, 56], 294_912),
            ([256, 56, 56], 589_824),
            ([256, 56, 56], 589_824),
            ([512, 28, 28], 1_179_648),
            ([512, 28, 28], 2_359_296),
            ([512, 28, 28], 2_359_296),
            ([512, 14, 14], 2_359_296),
            ([512, 14, 14], 2_359_296),
            ([512, 14, 14], 2_359_296),
        ];
        let convs: Vec<&SummaryRow> = s.rows.iter().filter(|r| r.weights > 0).take(13).collect();
        for (got, (output, weights)) in convs.iter().zip(expected) {
            assert_eq!(
                (got.output.as_slice(), got.weights),
                (output.as_slice(), weights),
                "{}",
                got.name
            );
        }
        assert_eq!(row(&s, "features.30").output, [512, 7, 7]);
        let fc: Vec<usize> = ["classifier.0", "classifier.3", "classifier.6"]
            .iter()
            .map(|n| row(&s, n).weights)
            .collect();
        assert_eq!(fc, [102_760_448, 16_777_216, 4_096_000]);
        // torchvision's vgg16: 138 357 544 parameters with biases.
        assert_eq!(s.total_params, 138_357_544);
    }

    #[test]
    fn rows_account_for_every_parameter() {
        let small = PresetOptions {
            input: Some([3, 64, 64]),
            classes: Some(5),
            ..Default::default()
        };
        for name in ["googlenet", "resnet18", "resnet50", "unet"] {
            let s = summary(name, small.clone());
            let rows: usize = s.rows.iter().map(|r| r.params).sum();
            assert_eq!(rows, s.total_params, "{name}");
        }
        for name in ["depth", "posenet", "grasp"] {
            let options = PresetOptions {
                input: Some(if name == "grasp" {
                    [1, 32, 32]
                } else {
                    [3, 64, 64]
                }),
                ..Default::default()
            };
            let s = summary(name, options);
            let rows: usize = s.rows.iter().map(|r| r.params).sum();
            assert_eq!(rows, s.total_params, "{name}");
        }
        // torchvision's resnet18 and resnet50 parameter counts.
        let imagenet = PresetOptions {
            input: Some([3, 64, 64]),
            ..Default::default()
        };
        assert_eq!(
            summary("resnet18", imagenet.clone()).total_params,
            11_689_512
        );
        assert_eq!(summary("resnet50", imagenet).total_params, 25_557_032);
    }

    #[test]
    fn bad_options_are_named() {
        let err = preset("alexnet", &PresetOptions::default()).unwrap_err();
        assert!(err.contains("vgg16"), "{err}");
        let err = preset(
            "vgg16",
            &PresetOptions {
                input: Some([3, 100, 100]),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("multiple of 32"), "{err}");
        assert!(preset(
            "depth",
            &PresetOptions {
                classes: Some(3),
                ..Default::default()
            }
        )
        .is_err());
    }
}
