// Shared by the build scripts of the crates that link libtorch (`training`, `pipeline-torch`).
//
// torch-sys exports the libtorch library folder as `DEP_TCH_LIBTORCH_LIB`. Binaries get an
// rpath to it so they run without LD_LIBRARY_PATH. `libtorch_cuda.so` registers the CUDA
// backend only when it is loaded, and nothing references it by symbol, so it is linked with
// `--no-as-needed`; but only when its CUDA dependencies are installed (the full CUDA wheel set,
// `TORCH_FLAVOR=cuda scripts/setup`), or when PIPELINE_LINK_CUDA=1 asks for it. The CPU flavour
// ships `libtorch_cuda.so` without cuDNN or NCCL, and linking it there would break loading.
fn torch_link() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=PIPELINE_LINK_CUDA");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB unset: binaries get no rpath to libtorch");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let lib_dir = std::path::Path::new(&lib);
    let cuda_lib = lib_dir.join("libtorch_cuda.so");
    // torch/lib -> site-packages/nvidia/cudnn: present only with the full CUDA wheel set.
    let cudnn = lib_dir.join("../../nvidia/cudnn");
    let forced = std::env::var("PIPELINE_LINK_CUDA").is_ok_and(|v| v == "1");
    if cuda_lib.exists() && (forced || cudnn.exists()) {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
