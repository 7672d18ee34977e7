//! `pipeline batch`: a campaign of cubes from a pipeline file, into a Hive-partitioned dataset;
//! resumable, kill-safe, concurrent, shardable, and stopped gracefully by SIGTERM/SIGINT.
//!
//! One concern a file: the pipeline file's schema (`file`), sharding (`shard`), manifests
//! (`manifest`), staging (`staging`), one cube's processing (`campaign`), the memory budget
//! (`budget`), the stop on a signal (`stop`), this run loop (here) and `merge`.

mod budget;
mod campaign;
mod file;
mod manifest;
mod merge;
mod shard;
mod staging;
mod stop;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::BatchArgs;
use crate::commands::run::PlantSource;
use crate::model_source;
use budget::{default_memory_budget, memory_estimate, Budget};
use campaign::{Campaign, Outcome};
use file::{normalise, PipelineFile, Resolved};
pub use merge::merge;
use shard::shard;
use staging::{clean_stale_staging, staging_dir};
use stop::{Gate, StopSignal};
pub use stop::{Stopped, EXIT_STOPPED};

pub fn run(args: BatchArgs) -> Result<()> {
    let file = PipelineFile::read(&args.file)?;
    let mut items = file.resolve(&args.file)?;
    let shard = shard(args.shard.as_deref())?;
    if let Some((k, n)) = shard {
        items = items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k)
            .map(|(_, item)| item)
            .collect();
    }
    let base = args.file.parent().unwrap_or(Path::new("."));
    let out = normalise(
        &args
            .out
            .clone()
            .unwrap_or_else(|| base.join(&file.outputs.dir)),
    );
    let model_path = file.model.path.as_ref().map(|p| normalise(&base.join(p)));
    let device: model::DeviceChoice = file
        .model
        .device
        .parse()
        .with_context(|| format!("{}: [model] device", args.file.display()))?;
    let (model, model_name) = model_source::load(model_path.as_deref(), device)?;
    if args.check {
        return check(&args, &items, shard, &model, &model_name, &out);
    }
    if !(args.stop_grace >= 0.0 && args.stop_grace.is_finite()) {
        bail!(
            "--stop-grace must be a number of seconds >= 0, not {}",
            args.stop_grace
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    clean_stale_staging(&out);
    let stop = StopSignal::install()?;
    let gate = Gate::default();
    let model_id = model.model_id().to_string();
    let card = model.card().clone();
    let campaign = Campaign {
        out: &out,
        outputs: &file.outputs,
        model: &model,
        card,
        model_id,
        model_name,
        force: args.force,
        gate: &gate,
    };
    let budget_bytes = args
        .memory_mb
        .map_or_else(default_memory_budget, |m| m << 20);
    let budget = Budget {
        free: Mutex::new(budget_bytes),
        changed: Condvar::new(),
        total: budget_bytes,
    };
    let started = Instant::now();
    let jobs = args.jobs.max(1).min(items.len().max(1));
    // Cubes in parallel share the threads: each reads with its part of them.
    ingest::set_scan_threads((ingest::scan_threads() / jobs).max(1));
    tracing::info!(cubes = items.len(), jobs, out = %out.display(), "batch starts");
    let state = RunState::new(&items);
    let grace = Duration::from_secs_f64(args.stop_grace);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| scope.spawn(|| work(&items, &campaign, &budget, &stop, &state)))
            .collect();
        // Watch the workers and the stop; abandon what still runs when the grace period is over.
        while workers.iter().any(|w| !w.is_finished()) {
            if let Some((at, first)) = stop.noticed() {
                let running = state.running().len();
                if first {
                    announce(&stop, running, grace);
                }
                if at.elapsed() >= grace && running > 0 {
                    // No cube enters the dataset from here on; one that is moving finishes.
                    gate.close();
                    for index in state.running() {
                        let _ = std::fs::remove_dir_all(staging_dir(&out, &items[index].key));
                    }
                    let stopped = report(&items, &state, started, shard, &out, Some(&stop));
                    if let Err(e) = stopped {
                        eprintln!("error: {e:#}");
                    }
                    state.progress.clear().ok();
                    // Abandoned workers may still be inside GDAL or libtorch: exit without
                    // running C++ static destructors under them (std::process::exit does, and
                    // under load that killed the process by a signal instead of exiting 75).
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                    let _ = std::io::stderr().flush();
                    signal_hook::low_level::exit(EXIT_STOPPED.into());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // The workers may all have ended before the loop above saw the signal.
    if let Some((_, true)) = stop.noticed() {
        announce(&stop, 0, grace);
    }
    state.overall.finish_and_clear();
    let result = report(
        &items,
        &state,
        started,
        shard,
        &out,
        stop.requested().then_some(&stop),
    );
    if let Some(section) = &file.progress {
        if shard.is_some() {
            println!("progress     not written by a shard: run `pipeline progress` on the merged dataset");
        } else if !stop.requested() {
            write_progress(section, &out);
        }
    }
    result
}

/// `[progress]`: the same code as `pipeline progress`, over the whole dataset. A campaign that
/// cannot give a curve yet (one scan so far) is said, not an error of the batch.
fn write_progress(section: &file::ProgressSection, out: &std::path::Path) {
    let args = crate::cli::ProgressArgs {
        dataset: out.to_path_buf(),
        out: out.join("progress"),
        plot_column: section.plot_column.clone(),
        treatment_column: section.treatment_column.clone(),
        control: section.control.clone(),
        match_radius_m: section.match_radius_m,
        healthy_class: section.healthy_class.clone(),
        report: section.report.then(|| out.join("progress-report")),
        overwrite: true,
    };
    if let Err(e) = super::progress::run(args) {
        println!("progress     not written: {e:#}");
    }
}

/// The first line after a stop signal.
fn announce(stop: &StopSignal, running: usize, grace: Duration) {
    eprintln!(
        "batch        {}: starting no new cube; {running} running may finish within {:.0} s (a second signal ends at once)",
        stop.name(),
        grace.as_secs_f64()
    );
}

/// `--check`: validate inputs and model and list the cubes.
fn check(
    args: &BatchArgs,
    items: &[Resolved],
    shard: Option<(usize, usize)>,
    model: &model::VibModel,
    model_name: &str,
    out: &Path,
) -> Result<()> {
    for item in items {
        let files =
            ingest::locate(&item.job.cube).with_context(|| format!("input {}", item.key))?;
        for path in item
            .job
            .read
            .calibration
            .iter()
            .flat_map(|c| [&c.white, &c.dark])
        {
            ingest::locate(path).with_context(|| format!("input {}", item.key))?;
        }
        if let PlantSource::Polygons(_, path) | PlantSource::PlantIds(path) = &item.job.plants {
            if !path.exists() {
                bail!("input {}: {}: file not found", item.key, path.display());
            }
        }
        println!(
            "{:<24} {}{}",
            item.key,
            files.data.display(),
            item.job
                .date
                .as_ref()
                .map_or(String::new(), |d| format!(" ({d})"))
        );
    }
    println!(
        "{}: valid; {} cube(s){}, model {} ({}), outputs in {}",
        args.file.display(),
        items.len(),
        shard.map_or(String::new(), |(k, n)| format!(" in shard {k}/{n}")),
        model.model_id(),
        model_name,
        out.display()
    );
    Ok(())
}

/// What the workers share: the queue, the outcomes, the running cubes and the progress bars.
struct RunState {
    queue: Mutex<VecDeque<usize>>,
    outcomes: Mutex<BTreeMap<usize, Outcome>>,
    running: Mutex<BTreeSet<usize>>,
    /// Data file sizes, for the progress bar.
    sizes: Vec<u64>,
    progress: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
}

impl RunState {
    fn new(items: &[Resolved]) -> Self {
        let sizes: Vec<u64> = items
            .iter()
            .map(|i| {
                ingest::locate(&i.job.cube)
                    .ok()
                    .and_then(|f| std::fs::metadata(f.data).ok())
                    .map_or(0, |m| m.len())
            })
            .collect();
        let progress = indicatif::MultiProgress::new();
        let overall = progress.add(indicatif::ProgressBar::new(sizes.iter().sum()));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("batch");
        Self {
            queue: Mutex::new((0..items.len()).collect()),
            outcomes: Mutex::new(BTreeMap::new()),
            running: Mutex::new(BTreeSet::new()),
            sizes,
            progress,
            overall,
        }
    }

    fn running(&self) -> Vec<usize> {
        lock(&self.running).iter().copied().collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One worker: cubes from the queue until it is empty or a stop is asked for.
fn work<'a>(
    items: &[Resolved],
    campaign: &Campaign<'a>,
    budget: &Budget,
    stop: &StopSignal,
    state: &RunState,
) {
    loop {
        if stop.requested() {
            break;
        }
        let Some(index) = lock(&state.queue).pop_front() else {
            break;
        };
        let item = &items[index];
        let Some(claimed) = budget.take(memory_estimate(&item.job), || stop.requested()) else {
            break;
        };
        lock(&state.running).insert(index);
        let name = format!("{}: {}", item.key, item.job.cube.display());
        let bar = state.progress.add(indicatif::ProgressBar::new_spinner());
        bar.set_message(name.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        // Held from the moment the cube moves into the dataset until its outcome is recorded,
        // so that an abandoning stop sees it either done or not started moving.
        let mut passage = None;
        let outcome = campaign
            .process(
                item,
                &|stage| bar.set_message(format!("{name}: {stage}")),
                &mut passage,
            )
            .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
        budget.give(claimed);
        bar.finish_and_clear();
        state.overall.inc(state.sizes[index]);
        match &outcome {
            Outcome::Done { plants, seconds } => {
                tracing::info!(cube = %item.key, plants, seconds = format!("{seconds:.2}"), "done")
            }
            Outcome::UpToDate => tracing::info!(cube = %item.key, "up to date, skipped"),
            Outcome::Failed(e) => tracing::error!(cube = %item.key, "failed: {e}"),
            Outcome::Abandoned => tracing::warn!(cube = %item.key, "abandoned by the stop"),
        }
        record_failure(campaign.out, item, &outcome);
        let mut all = lock(&state.outcomes);
        all.insert(index, outcome);
        lock(&state.running).remove(&index);
        drop(passage);
        state
            .overall
            .set_message(format!("{}/{} cubes", all.len(), items.len()));
    }
}

/// `failures/<key>.json` (cube, field, date, error) for a cube that failed, so that readers of
/// the dataset (`pipeline progress --report`) can list it; removed once the cube is done. Best
/// effort: the batch's own outcome does not depend on it.
fn record_failure(out: &std::path::Path, item: &Resolved, outcome: &Outcome) {
    let path = out.join("failures").join(format!("{}.json", item.key));
    match outcome {
        Outcome::Failed(error) => {
            let record = serde_json::json!({
                "key": item.key,
                "cube": item.job.cube.display().to_string(),
                "field_id": item.job.field_id(),
                "date": item.job.date,
                "error": error,
            });
            let written = std::fs::create_dir_all(out.join("failures"))
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    crate::output::write_atomically(&path, record.to_string().as_bytes())
                });
            if let Err(e) = written {
                tracing::warn!(cube = %item.key, "cannot record the failure: {e:#}");
            }
        }
        Outcome::Done { .. } | Outcome::UpToDate => {
            let _ = std::fs::remove_file(&path);
        }
        Outcome::Abandoned => {}
    }
}

/// The closing lines: counts, failures, and after a stop what is not done. Errors when a cube
/// failed ("N of M cubes failed") or the batch was stopped ([`Stopped`]).
fn report(
    items: &[Resolved],
    state: &RunState,
    started: Instant,
    shard: Option<(usize, usize)>,
    out: &Path,
    stop: Option<&StopSignal>,
) -> Result<()> {
    let outcomes = lock(&state.outcomes);
    let (mut done, mut skipped, mut failed) = (0, 0, Vec::new());
    let mut not_done: Vec<String> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match outcomes.get(&index) {
            Some(Outcome::Done { .. }) => done += 1,
            Some(Outcome::UpToDate) => skipped += 1,
            Some(Outcome::Failed(e)) => failed.push((item.key.clone(), e.clone())),
            Some(Outcome::Abandoned) => not_done.push(format!("{} (abandoned)", item.key)),
            None if lock(&state.running).contains(&index) => {
                not_done.push(format!("{} (abandoned)", item.key))
            }
            None => not_done.push(item.key.clone()),
        }
    }
    drop(outcomes);
    println!(
        "batch        {} cube(s): {done} done, {skipped} up to date, {} failed{} in {:.1} s{}",
        items.len(),
        failed.len(),
        if not_done.is_empty() {
            String::new()
        } else {
            format!(", {} not done", not_done.len())
        },
        started.elapsed().as_secs_f64(),
        shard.map_or(String::new(), |(k, n)| format!(" (shard {k}/{n})"))
    );
    for (key, error) in &failed {
        println!("failed       {key}: {error}");
    }
    if !not_done.is_empty() {
        println!("not done     {}", not_done.join(", "));
    }
    println!("dataset      {}", out.display());
    if let Some(stop) = stop.filter(|_| !not_done.is_empty()) {
        return Err(Stopped {
            signal: stop.name(),
            not_done: not_done.len(),
            total: items.len(),
        }
        .into());
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} cubes failed (listed above)",
            failed.len(),
            items.len()
        );
    }
    Ok(())
}
