//! One file per subcommand.

mod evaluate;
mod labelled;
mod run;
mod sweep;
mod synth;
pub(crate) mod train;

use anyhow::{Context, Result};

use crate::cli::{Command, DeviceArgs};

pub fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Synth(args) => synth::run(args),
    }
}

fn device(args: &DeviceArgs) -> Result<model::DeviceChoice> {
    args.device.parse().context("--device")
}
