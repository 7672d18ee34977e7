//! `pipeline`: hyperspectral field scans to per-plant crop-disease calls, without libtorch
//! (training and GPUs hand over to `pipeline-torch`; see `torch.rs`).

fn main() {
    keep_freed_memory();
    pipeline::main()
}

/// glibc's malloc by default maps every block over 128 KiB afresh (its threshold then creeps up
/// as such blocks are freed) and hands free heap tops back to the system, so a scan's per-unit
/// buffers and the scene-sized rasters (index, mask, labels: 19 MB each on a 2 GiB cube) were
/// faulted in page by page again and again: 54k page faults per run of the 2 GiB BIP cube.
/// Blocks below 32 MiB now come from the heap and up to 256 MiB of freed heap stays with the
/// process: 38k faults, and 3-9% less CPU on BIL and BIP cubes in 10 of 12 alternating
/// `perf stat` pairs (BSQ unchanged). Peak RSS +30-40 MiB.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
