//! `pipeline`: hyperspectral field scans to per-plant crop-disease calls, without libtorch
//! (training and GPUs hand over to `pipeline-torch`; see `torch.rs`).

fn main() {
    pipeline::main()
}
