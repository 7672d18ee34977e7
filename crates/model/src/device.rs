//! The one place where `auto | cpu | cuda | cuda:N` becomes a libtorch device.

use std::str::FromStr;

use crate::error::{Error, Result};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// The first CUDA device when one is usable, else the CPU; the choice is logged.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::DeviceSyntax(s.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

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
    fn parses_choices() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!(
            "CUDA:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn explicit_cuda_without_gpu_is_an_error() {
        if !cuda_available() {
            let err = resolve(DeviceChoice::Cuda(0)).unwrap_err().to_string();
            assert!(err.contains("no CUDA device"), "{err}");
        }
        assert_eq!(resolve(DeviceChoice::Cpu).unwrap(), tch::Device::Cpu);
    }
}
