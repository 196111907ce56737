//! The offline tool for the networks. Today: `summary`, the layer table of a model folder.
use std::process::ExitCode;

use anyhow::Context;
use candle_core::Device;
use clap::{Parser, Subcommand};
use perception::models::ModelFolder;

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
    /// Print every tensor of a model folder (name, shape, count) and the total parameter count.
    Summary {
        /// Model folder holding model.yaml (and model.safetensors), e.g. models/unet_seg_untrained
        #[arg(long)]
        model: std::path::PathBuf,
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
        Command::Summary { model } => {
            let loaded = ModelFolder::new(&model)
                .load(&Device::Cpu)
                .with_context(|| format!("loading {}", model.display()))?;
            let vars = loaded.varmap.data().lock().expect("VarMap lock poisoned");
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            let (mut trainable, mut buffers) = (0usize, 0usize);
            println!("{:<40} {:>18} {:>10}", "tensor", "shape", "count");
            for name in names {
                let n = vars[name].elem_count();
                if name.ends_with("running_mean") || name.ends_with("running_var") {
                    buffers += n;
                } else {
                    trainable += n;
                }
                println!(
                    "{:<40} {:>18} {:>10}",
                    name,
                    format!("{:?}", vars[name].dims()),
                    n
                );
            }
            println!("batch-norm buffers: {buffers}");
            println!("total params: {trainable}");
        }
    }
    Ok(())
}
