//! The part of the command line that needs libtorch: training (`train`, `sweep`) and prediction
//! on a GPU. The `pipeline` binary does not link libtorch: loading it registers thousands of
//! operators at start-up, ~0.2 s, a third of the whole run on a 2 GiB cube, and prediction on
//! the CPU is the model crate's own code. `pipeline-torch`, installed beside `pipeline`, is the
//! same command line with libtorch registered here; a command that needs libtorch and finds none
//! runs it in place of this process (exec: the same arguments, streams, process id and exit
//! status). Commands reach for libtorch before they write anything, so the handover never
//! leaves output behind.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use domain::SpectralSamples;
use model::{
    CandidateRecord, DeviceChoice, EpochRecord, Fixed, Selection, TrainConfig, TuneSettings,
    VibModel,
};

/// Training and GPU prediction, as the `training` crate provides them.
pub trait Torch: Sync {
    /// Train exactly `config` (see `training::Train::train`).
    fn train(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> model::Result<(VibModel, Vec<EpochRecord>)>;

    /// Select the options by cross-validation, then refit (see `training::Train::tune`).
    #[allow(clippy::too_many_arguments)]
    fn tune(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        sources: Vec<String>,
        unit: &str,
        on_candidate: &mut dyn FnMut(&CandidateRecord),
        on_epoch: &mut dyn FnMut(&EpochRecord),
    ) -> model::Result<(VibModel, Vec<EpochRecord>)>;

    /// Only the selection (see `training::Train::select`).
    fn select(
        &self,
        samples: &SpectralSamples,
        config: &TrainConfig,
        fixed: Fixed,
        settings: &TuneSettings,
        device: DeviceChoice,
        on_candidate: &mut dyn FnMut(&CandidateRecord),
    ) -> model::Result<(TrainConfig, Selection)>;

    /// A model file's bytes loaded to predict on `device` (`path` names it in errors).
    fn load(&self, bytes: &[u8], path: &Path, device: DeviceChoice) -> model::Result<VibModel>;

    /// Threads of libtorch's CPU work.
    fn set_threads(&self, threads: usize);
}

static TORCH: OnceLock<&'static dyn Torch> = OnceLock::new();

/// Make libtorch available to the commands of this process (`pipeline-torch` does, first thing).
pub fn register(torch: &'static dyn Torch) {
    let _ = TORCH.set(torch);
}

/// This process's libtorch, when it has one.
pub(crate) fn registered() -> Option<&'static dyn Torch> {
    TORCH.get().copied()
}

/// The name of the binary with libtorch, beside this one.
pub const TORCH_BINARY: &str = "pipeline-torch";

/// libtorch, for `why`: this process's, or else `pipeline-torch` replaces this process and runs
/// the same command line from the start; returns only with the error that it could not.
pub(crate) fn required(why: &str) -> Result<&'static dyn Torch> {
    if let Some(torch) = registered() {
        return Ok(torch);
    }
    let exe = std::env::current_exe()
        .map_err(|e| anyhow!("{why} needs libtorch: cannot locate this program ({e})"))?;
    let sibling = exe.with_file_name(TORCH_BINARY);
    if !sibling.is_file() {
        return Err(anyhow!(
            "{why} needs libtorch, which `{}` runs with; it is not installed beside {} (build the \
             workspace: `cargo build --release`, or install both binaries)",
            TORCH_BINARY,
            exe.display()
        ));
    }
    tracing::debug!(program = %sibling.display(), "{why}: handing over to the libtorch build");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(&sibling);
    if let Some(arg0) = args.next() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
    }
    let error = std::os::unix::process::CommandExt::exec(command.args(args));
    Err(anyhow!("{why}: cannot run {}: {error}", sibling.display()))
}
