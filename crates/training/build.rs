//! Embeds an rpath to libtorch so that test binaries run outside cargo, and links
//! `libtorch_cuda.so` when the CUDA libraries it needs are installed beside it.
include!("../../build-support/torch_link.rs");

fn main() {
    torch_link();
}
