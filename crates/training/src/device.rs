//! The one place where `auto | cpu | cuda | cuda:N` becomes a libtorch device.

use model::{DeviceChoice, Error, Result};

/// Resolve a choice into a device. An explicit CUDA request without a usable GPU is an error,
/// never a silent fallback.
pub(crate) fn resolve(choice: DeviceChoice) -> Result<tch::Device> {
    let count = if tch::Cuda::is_available() {
        tch::Cuda::device_count() as usize
    } else {
        0
    };
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Auto => {
            let device = if count > 0 {
                tch::Device::Cuda(0)
            } else {
                tch::Device::Cpu
            };
            tracing::info!(device = ?device, cuda_devices = count, "device auto-selected");
            Ok(device)
        }
        DeviceChoice::Cuda(n) if n < count => Ok(tch::Device::Cuda(n)),
        DeviceChoice::Cuda(n) => Err(Error::DeviceUnavailable {
            requested: format!("cuda:{n}"),
            reason: if count == 0 {
                "libtorch sees no CUDA device on this machine".into()
            } else {
                format!("only {count} CUDA device(s) exist")
            },
        }),
    }
}

/// Whether libtorch can use CUDA here.
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_cuda_without_gpu_is_an_error() {
        if !cuda_available() {
            let err = resolve(DeviceChoice::Cuda(0)).unwrap_err().to_string();
            assert!(err.contains("no CUDA device"), "{err}");
        }
        assert_eq!(resolve(DeviceChoice::Cpu).unwrap(), tch::Device::Cpu);
    }
}
