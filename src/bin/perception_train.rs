//! The offline tool for the networks: `summary` (the layer table of an architecture or a model
//! folder), `fit` (training from a config), `eval` (a model folder's metrics on a data set),
//! `visualize` (filter images), `bench` (a network's latency) and `generate` (synthetic
//! bin-picking data sets and bags).

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use perception::models::{preset, summarize, ModelFolder, PresetOptions, PRESET_NAMES};
use perception::pipeline::{select_device, DeviceChoice};
use perception::scene::bag::BagOptions;
use perception::scene::config::SceneConfig;
use perception::scene::dataset::{write_dataset, Generator};
use perception::train::{
    bench_model, evaluate_model, evaluate_node_pipeline, fit, visualize_filters, write_rgb_png,
    TrainConfig,
};

#[derive(Parser)]
#[command(
    name = "perception_train",
    about = "Train and inspect the perception networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one row per layer (name, output shape, weights, parameters) and the total
    /// parameter count, for a named architecture or a model folder.
    Summary {
        /// Architecture preset: mlp, lenet5, vgg11, vgg16, googlenet, resnet18, resnet34,
        /// resnet50, unet, unet-paper, depth, posenet, grasp
        arch: Option<String>,
        /// Model folder holding model.yaml, e.g. models/unet_seg_untrained (instead of ARCH)
        #[arg(long, conflicts_with = "arch")]
        model: Option<PathBuf>,
        /// Input channels, height and width, e.g. 3,224,224
        #[arg(long, value_delimiter = ',', num_args = 1)]
        input: Option<Vec<usize>>,
        /// Number of output classes
        #[arg(long)]
        classes: Option<usize>,
        /// Hidden layer widths of an MLP, e.g. 100 or 300,100
        #[arg(long, value_delimiter = ',', num_args = 1)]
        hidden: Option<Vec<usize>>,
    },
    /// Train a network as a training config says (config/train/*.yaml); checkpoints every
    /// epoch into the config's run folder, keeps the best model in <out>/model.
    Fit {
        #[arg(long)]
        config: PathBuf,
        /// Continue the run from its checkpoint
        #[arg(long)]
        resume: bool,
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Evaluate a model folder on a data set; prints the task's metrics as one JSON object.
    /// With --pipeline instead of --model: the node's whole pipeline (its parameters file,
    /// models and post-processing, no ROS) on a generated folder: segmentation, instance and
    /// published-grasp metrics.
    Eval {
        /// Model folder (model.yaml + model.safetensors)
        #[arg(
            long,
            required_unless_present = "pipeline",
            conflicts_with = "pipeline"
        )]
        model: Option<PathBuf>,
        /// The node's parameters file, e.g. config/perception.yaml (models_dir relative to the
        /// working directory, as for the node)
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Data set folder from `perception_train generate` (segmentation models)
        #[arg(long)]
        data: PathBuf,
        /// auto | cpu | cuda:N (default: auto; with --pipeline, the file's `device`)
        #[arg(long)]
        device: Option<DeviceChoice>,
    },
    /// The course's filter visualisation: from a blank image, gradient ascent on the input to
    /// maximise each filter's mean response; the K images as a grid PNG.
    Visualize {
        /// Model folder (model.yaml + model.safetensors)
        #[arg(long)]
        model: PathBuf,
        /// Layer name as `perception_train summary --model DIR` lists it, e.g. conv1
        #[arg(long)]
        layer: String,
        /// Number of filters (the first K of the layer)
        #[arg(long, default_value_t = 16)]
        filters: usize,
        /// Output PNG
        #[arg(long)]
        out: PathBuf,
        /// Gradient-ascent steps and step size (normalised gradient)
        #[arg(long, default_value_t = 100)]
        steps: usize,
        #[arg(long, default_value_t = 0.05)]
        step: f64,
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Time a model folder's network on deterministic inputs (bench/bench.py compares the
    /// same weights in PyTorch); prints one JSON object.
    Bench {
        /// Model folder (model.yaml + model.safetensors)
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// Time a training step (forward, loss, backward) instead of inference
        #[arg(long)]
        train_step: bool,
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
    },
    /// Render synthetic bin-picking frames (RGB, depth, masks, labels with grasps) into a data
    /// set folder and optionally an MCAP rosbag2.
    Generate {
        /// Number of frames
        #[arg(long)]
        scenes: usize,
        /// Data set folder to create (must be new or empty)
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 640)]
        width: u32,
        #[arg(long, default_value_t = 480)]
        height: u32,
        /// Scene config YAML (keys of perception::scene::config::SceneConfig); defaults otherwise
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also write the frames as an MCAP rosbag2 folder (must not exist)
        #[arg(long)]
        bag: Option<PathBuf>,
        /// Frame rate of the bag's stamps, Hz
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perception_train: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Summary {
            arch,
            model,
            input,
            classes,
            hidden,
        } => {
            let (architecture, input) = match (arch, model) {
                (Some(arch), None) => {
                    let input = input
                        .map(|dims| {
                            <[usize; 3]>::try_from(dims.as_slice()).map_err(|_| {
                                anyhow::anyhow!("--input takes three numbers C,H,W, got {dims:?}")
                            })
                        })
                        .transpose()?;
                    let options = PresetOptions {
                        input,
                        classes,
                        hidden,
                    };
                    preset(&arch, &options).map_err(anyhow::Error::msg)?
                }
                (None, Some(model)) => {
                    if input.is_some() || classes.is_some() || hidden.is_some() {
                        bail!("--input, --classes and --hidden apply to ARCH; a model folder's model.yaml fixes them");
                    }
                    let config = ModelFolder::new(&model)
                        .read_config()
                        .with_context(|| format!("loading {}", model.display()))?;
                    let size = [
                        config.architecture.input_channels(),
                        config.input.height as usize,
                        config.input.width as usize,
                    ];
                    (config.architecture, size)
                }
                _ => bail!(
                    "give an architecture ({}) or --model DIR",
                    PRESET_NAMES.join(", ")
                ),
            };
            println!("{}", summarize(&architecture, input)?);
        }
        Command::Fit {
            config,
            resume,
            device,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading training config {}", config.display()))?;
            let train_config: TrainConfig = serde_yaml::from_str(&text)
                .with_context(|| format!("training config {} is not valid", config.display()))?;
            let selected = select_device(device);
            if let Some(reason) = &selected.fallback_reason {
                eprintln!("warning: {reason}");
            }
            eprintln!("training {} on {}", train_config.name, selected.label);
            let report = fit(&train_config, resume, &selected.device)?;
            println!(
                "{}: {} epochs ({:.1} s/epoch), best validation {} {:.4} at epoch {}, test {} {:.4}; model in {}",
                train_config.name,
                report.epochs_run,
                report.seconds_per_epoch,
                report.test.score_name,
                report.best_validation_score,
                report.best_epoch,
                report.test.score_name,
                report.test.score,
                report.run.join("model").display()
            );
        }
        Command::Eval {
            pipeline: Some(params),
            data,
            device,
            ..
        } => {
            let metrics = evaluate_node_pipeline(&params, &data, device)
                .with_context(|| format!("evaluating the pipeline of {}", params.display()))?;
            println!("{}", serde_json::to_string(&metrics)?);
        }
        Command::Eval {
            model: Some(model),
            data,
            device,
            ..
        } => {
            let selected = select_device(device.unwrap_or(DeviceChoice::Auto));
            let loaded = ModelFolder::new(&model)
                .load(&selected.device)
                .with_context(|| format!("loading {}", model.display()))?;
            let metrics = evaluate_model(&loaded, &data, &selected.device)?;
            println!("{}", serde_json::to_string(&metrics.metrics)?);
        }
        Command::Eval { .. } => bail!("eval needs --model DIR or --pipeline PARAMS_FILE"),
        Command::Bench {
            model,
            batch,
            warmup,
            repeats,
            train_step,
            device,
        } => {
            if batch == 0 || repeats == 0 {
                bail!("--batch and --repeats must be at least 1");
            }
            let selected = select_device(device);
            let loaded = ModelFolder::new(&model)
                .load(&selected.device)
                .with_context(|| format!("loading {}", model.display()))?;
            let report = bench_model(
                &loaded,
                batch,
                warmup,
                repeats,
                train_step,
                &selected.device,
            )?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Visualize {
            model,
            layer,
            filters,
            out,
            steps,
            step,
            device,
        } => {
            if filters == 0 {
                bail!("--filters must be at least 1");
            }
            let selected = select_device(device);
            let loaded = ModelFolder::new(&model)
                .load(&selected.device)
                .with_context(|| format!("loading {}", model.display()))?;
            let images =
                visualize_filters(&loaded, &layer, filters, steps, step, &selected.device)?;
            write_rgb_png(&out, &images.rgb, images.width, images.height)
                .with_context(|| format!("writing {}", out.display()))?;
            let gain: Vec<String> = images
                .start
                .iter()
                .zip(&images.end)
                .map(|(a, b)| format!("{a:.3}->{b:.3}"))
                .collect();
            println!(
                "{filters} filters of {layer} -> {} ({}x{}); mean responses {}",
                out.display(),
                images.width,
                images.height,
                gain.join(" ")
            );
        }
        Command::Generate {
            scenes,
            out,
            seed,
            width,
            height,
            config,
            bag,
            rate,
        } => generate(scenes, &out, seed, width, height, config, bag, rate)?,
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn generate(
    scenes: usize,
    out: &std::path::Path,
    seed: u64,
    width: u32,
    height: u32,
    config: Option<PathBuf>,
    bag: Option<PathBuf>,
    rate: f64,
) -> anyhow::Result<()> {
    let (scene_config, config_path) = match &config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scene config {}", path.display()))?;
            let parsed: SceneConfig = serde_yaml::from_str(&text)
                .with_context(|| format!("scene config {} is not valid", path.display()))?;
            (parsed, path.clone())
        }
        None => (SceneConfig::default(), PathBuf::from("(defaults)")),
    };
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive frame rate in Hz, got {rate}");
    }
    let generator = Generator::new(scene_config, width, height, seed, &config_path)?;
    let bag_options = BagOptions {
        rate_hz: rate,
        ..BagOptions::default()
    };
    let progress = |done: usize| eprint!("\rgenerated {done}/{scenes} frames");
    let report = write_dataset(
        &generator,
        scenes,
        out,
        bag.as_deref().map(|p| (p, bag_options)),
        &progress,
    )?;
    eprintln!();
    println!(
        "generated {} frames of {width}x{height} in {:.2} s: {:.1} frames/s on {} threads -> {}{}",
        report.frames,
        report.seconds,
        report.frames_per_second(),
        report.threads,
        out.display(),
        bag.map(|b| format!(" and {}", b.display()))
            .unwrap_or_default()
    );
    Ok(())
}
