//! The offline tool for the networks. Today: `summary`, the layer table of an architecture or
//! a model folder.
use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use perception::models::{preset, summarize, ModelFolder, PresetOptions, Task, PRESET_NAMES};

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
                    let channels = match config.task {
                        Task::GraspQuality => 1,
                        _ => 3,
                    };
                    let size = [
                        channels,
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
    }
    Ok(())
}
