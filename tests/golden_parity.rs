//! Golden parity with PyTorch: every block, loss and network against the outputs and
//! gradients that `tests/fixtures/make_golden.py` recorded from the same module trees in
//! PyTorch (see that script for the fixture layout). Tolerance: 1e-4 relative to the largest
//! magnitude of each reference tensor, plus 1e-6 absolute for the few tensors that are
//! themselves at float32 noise level (a batch-norm bias gradient of 3e-4 summed from a hundred
//! terms of either sign), as `torch.testing.assert_close` has `atol` beside `rtol`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{conv_transpose2d, ConvTranspose2dConfig, VarBuilder, VarMap};
use perception::models::{assign_weights_strict, Architecture, Network};
use perception::nn::{
    avg_pool2d, loss, max_pool2d, Activation, BlockKind, ConvBnAct, ConvSpec, DoubleConv,
    Inception, InceptionSpec, PoolSpec, ResidualBlock,
};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

const TOLERANCE: f32 = 1e-4;
const ABSOLUTE_FLOOR: f32 = 1e-6;

struct Fixture {
    name: String,
    kind: String,
    config: Value,
    tensors: HashMap<String, Tensor>,
}

impl Fixture {
    fn read(path: &Path, device: &Device) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = metadata.metadata().clone().expect("fixture metadata");
        Self {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            kind: meta["kind"].clone(),
            config: serde_yaml::from_str(&meta["config"]).unwrap(),
            tensors: candle_core::safetensors::load(path, device).unwrap(),
        }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", self.name))
    }

    fn cfg<T: DeserializeOwned>(&self, key: &str) -> T {
        serde_yaml::with::singleton_map_recursive::deserialize(self.config[key].clone())
            .unwrap_or_else(|e| panic!("{}: config {key}: {e}", self.name))
    }

    /// The tensors under `prefix.`, prefix removed.
    fn group(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix('.'))
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect()
    }
}

fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name().unwrap().to_string_lossy().starts_with(prefix)
        })
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no fixtures {prefix}* in {}",
        dir.display()
    );
    paths
}

/// CPU always; CUDA as well when this build has it and a GPU is present.
fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(cuda) => devices.push(cuda),
            Err(e) => eprintln!("CUDA build but no usable GPU, CPU only: {e}"),
        }
    }
    devices
}

/// Largest difference relative to the reference's largest magnitude; `Err` names the tensor.
fn compare(what: &str, got: &Tensor, expected: &Tensor) -> Result<f32, String> {
    if got.dims() != expected.dims() {
        return Err(format!(
            "{what}: shape {:?}, expected {:?}",
            got.dims(),
            expected.dims()
        ));
    }
    // Both on the CPU: on a CUDA run the reference was loaded onto the GPU with the inputs.
    let on_cpu = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    let (got, expected) = (on_cpu(got), on_cpu(expected));
    let expected = &expected;
    let diff = (&got - expected)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = expected
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let (diff, scale) = (
        diff.to_scalar::<f32>().unwrap(),
        scale.to_scalar::<f32>().unwrap(),
    );
    let relative = diff / scale.max(f32::MIN_POSITIVE);
    if diff.is_nan() || diff > TOLERANCE * scale + ABSOLUTE_FLOOR {
        Err(format!("{what}: relative difference {relative:.2e}"))
    } else {
        Ok(relative)
    }
}

type Forward = Box<dyn Fn(&[Tensor], bool) -> candle_core::Result<Tensor>>;

/// Builds the module a fixture describes, its variables in `vb`.
fn build(f: &Fixture, vb: VarBuilder) -> Forward {
    let us = |key: &str| f.cfg::<usize>(key);
    match f.kind.as_str() {
        "activation" => {
            let activation: Activation = f.cfg("activation");
            Box::new(move |x, _| activation.forward(&x[0]))
        }
        "conv_bn_act" => {
            let spec = ConvSpec::same(us("in_channels"), us("out_channels"), us("kernel"))
                .stride(us("stride"))
                .padding(us("padding"));
            let activation: Option<Activation> = f.cfg("activation");
            let block = ConvBnAct::basic(spec, f.cfg("batch_norm"), activation, vb).unwrap();
            Box::new(move |x, train| block.forward_t(&x[0], train))
        }
        "max_pool" | "avg_pool" => {
            let spec = PoolSpec::new(us("kernel"), us("stride"), us("padding"));
            if f.kind == "max_pool" {
                Box::new(move |x, _| max_pool2d(&x[0], spec))
            } else {
                Box::new(move |x, _| avg_pool2d(&x[0], spec))
            }
        }
        "conv_transpose" => {
            let cfg = ConvTranspose2dConfig {
                padding: us("padding"),
                stride: us("stride"),
                ..Default::default()
            };
            let layer =
                conv_transpose2d(us("in_channels"), us("out_channels"), us("kernel"), cfg, vb)
                    .unwrap();
            Box::new(move |x, _| x[0].apply(&layer))
        }
        "double_conv" => {
            let block = DoubleConv::new(
                us("in_channels"),
                us("out_channels"),
                us("padding"),
                f.cfg("batch_norm"),
                vb,
            )
            .unwrap();
            Box::new(move |x, train| block.forward_t(&x[0], train))
        }
        "residual" => {
            let kind: BlockKind = f.cfg("block");
            let block =
                ResidualBlock::new(kind, us("in_channels"), us("width"), us("stride"), vb).unwrap();
            Box::new(move |x, train| block.forward_t(&x[0], train))
        }
        "inception" => {
            let spec: InceptionSpec = f.cfg("spec");
            let block = Inception::new(us("in_channels"), &spec, f.cfg("batch_norm"), vb).unwrap();
            Box::new(move |x, train| block.forward_t(&x[0], train))
        }
        "network" => {
            let architecture: Architecture =
                serde_yaml::with::singleton_map_recursive::deserialize(f.config.clone()).unwrap();
            let network = Network::new(&architecture, vb).unwrap();
            Box::new(move |x, train| network.forward_t(x, train))
        }
        other => panic!("{}: unknown kind {other}", f.name),
    }
}

/// Runs one module fixture on `device`; returns the worst relative difference.
fn check_module(f: &Fixture, device: &Device) -> Result<f32, String> {
    let varmap = VarMap::new();
    let forward = build(f, VarBuilder::from_varmap(&varmap, DType::F32, device));
    // The names must match PyTorch's exactly: nothing missing, nothing unused.
    assign_weights_strict(&varmap, &f.group("param"))?;
    let input = Var::from_tensor(f.tensor("input")).unwrap();
    let mut inputs = vec![input.as_tensor().clone()];
    if let Some(second) = f.tensors.get("input2") {
        inputs.push(second.clone());
    }
    let mut worst = 0f32;
    let mut note = |r: Result<f32, String>| r.map(|r| worst = worst.max(r));

    let eval = forward(&inputs, false).map_err(|e| e.to_string())?;
    note(compare("output_eval", &eval, f.tensor("output_eval")))?;
    let train = forward(&inputs, true).map_err(|e| e.to_string())?;
    note(compare("output_train", &train, f.tensor("output_train")))?;
    let loss = (train * f.tensor("grad_output"))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let grad_input = grads.get(&input).ok_or("no gradient reached the input")?;
    note(compare("grad.input", grad_input, f.tensor("grad.input")))?;
    let vars = varmap.data().lock().unwrap();
    for (name, expected) in f.group("grad") {
        if name == "input" {
            continue;
        }
        let var = vars.get(&name).ok_or(format!("no variable {name}"))?;
        let got = grads.get(var).ok_or(format!("no gradient for {name}"))?;
        note(compare(&format!("grad.{name}"), got, &expected))?;
    }
    for (name, expected) in f.group("running") {
        note(compare(
            &format!("running.{name}"),
            vars[&name].as_tensor(),
            &expected,
        ))?;
    }
    Ok(worst)
}

fn check_loss(f: &Fixture) -> Result<f32, String> {
    let pred = Var::from_tensor(f.tensor("input")).unwrap();
    let target = f.tensor("input2");
    let x = pred.as_tensor();
    let value = match f.kind.as_str() {
        "loss_cross_entropy" => loss::cross_entropy(x, &target.to_dtype(DType::U32).unwrap()),
        "loss_mse" => loss::mse(x, target),
        "loss_bce" => loss::binary_cross_entropy_with_logits(x, target),
        "loss_posenet" => loss::posenet_loss(
            &x.narrow(1, 0, 3).unwrap(),
            &x.narrow(1, 3, 4).unwrap(),
            &target.narrow(1, 0, 3).unwrap(),
            &target.narrow(1, 3, 4).unwrap(),
            f.cfg("beta"),
        ),
        other => panic!("unknown loss {other}"),
    }
    .map_err(|e| e.to_string())?;
    let mut worst = compare("loss", &value, f.tensor("output_train"))?;
    let grads = value.backward().unwrap();
    worst = worst.max(compare(
        "grad.input",
        grads.get(&pred).unwrap(),
        f.tensor("grad.input"),
    )?);
    Ok(worst)
}

fn run_all(prefixes: &[&str]) {
    let mut failures = Vec::new();
    for device in devices() {
        for prefix in prefixes {
            for path in fixtures(prefix) {
                let f = Fixture::read(&path, &device);
                let result = if f.kind.starts_with("loss_") {
                    check_loss(&f)
                } else {
                    check_module(&f, &device)
                };
                match result {
                    Ok(worst) => println!(
                        "{:?} {}: worst relative difference {worst:.1e}",
                        device, f.name
                    ),
                    Err(e) => failures.push(format!("{:?} {}: {e}", device, f.name)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn blocks_match_pytorch() {
    run_all(&[
        "activation_",
        "conv_bn_act_",
        "max_pool_",
        "avg_pool_",
        "conv_transpose_",
        "double_conv",
        "residual_",
        "inception",
    ]);
}

#[test]
fn losses_match_pytorch() {
    run_all(&["loss_"]);
}

#[test]
fn networks_match_pytorch() {
    run_all(&["net_"]);
}

/// Each product network at its deployment size, seeded weights, the same input: CUDA output
/// equals CPU output within the golden tolerance. Skips (and says so) without CUDA.
#[test]
fn cuda_output_equals_cpu_output() {
    use perception::models::{DepthNetConfig, GraspNetConfig, PoseNetConfig, UNetConfig};
    let Some(cuda) = devices().into_iter().find(|d| d.is_cuda()) else {
        println!("skipped: this build has no CUDA or this machine no GPU");
        return;
    };
    let cases = [
        (
            "unet",
            Architecture::Unet(UNetConfig::small(3, 4)),
            vec![vec![1, 3, 256, 320]],
        ),
        (
            "depth",
            Architecture::Depth(DepthNetConfig::small()),
            vec![vec![1, 3, 256, 320]],
        ),
        (
            "posenet",
            Architecture::Posenet(PoseNetConfig::small()),
            vec![vec![1, 3, 224, 224]],
        ),
        (
            "grasp",
            Architecture::GraspQuality(GraspNetConfig::small()),
            vec![vec![64, 1, 32, 32], vec![64, 1]],
        ),
    ];
    let mut failures = Vec::new();
    for (name, architecture, shapes) in cases {
        let run = |device: &Device| {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
            let network = Network::new(&architecture, vb).unwrap();
            perception::nn::initialize(&varmap, perception::nn::Init::He, 11).unwrap();
            let inputs: Vec<Tensor> = shapes
                .iter()
                .enumerate()
                .map(|(i, shape)| {
                    let n: usize = shape.iter().product();
                    let values: Vec<f32> = (0..n)
                        .map(|j| (((j * 7919 + i * 104_729) % 1000) as f32) / 500.0 - 1.0)
                        .collect();
                    Tensor::from_vec(values, shape.as_slice(), device).unwrap()
                })
                .collect();
            network.forward_t(&inputs, false).unwrap()
        };
        let cpu = run(&Device::Cpu);
        match compare(name, &run(&cuda), &cpu) {
            Ok(r) => println!("{name}: CUDA vs CPU worst relative difference {r:.1e}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
