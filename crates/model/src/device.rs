//! What the user asks for: `auto | cpu | cuda | cuda:N` (the training crate resolves it into a
//! libtorch device).

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

impl DeviceChoice {
    /// Whether this choice can put the model on a GPU, and so needs libtorch: an explicit CUDA
    /// request always; `auto` only where a GPU driver is reachable (NVIDIA's control device, or
    /// WSL2's `/dev/dxg`, through which CUDA runs under Windows), since CUDA cannot be usable
    /// without one. The CPU needs no libtorch: prediction there is this crate's own code
    /// (`inference.rs`).
    pub fn needs_libtorch(self) -> bool {
        match self {
            Self::Cpu => false,
            Self::Cuda(_) => true,
            Self::Auto => ["/dev/nvidiactl", "/dev/dxg"]
                .iter()
                .any(|device| std::path::Path::new(device).exists()),
        }
    }
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
    fn only_a_gpu_choice_needs_libtorch() {
        assert!(!DeviceChoice::Cpu.needs_libtorch());
        assert!(DeviceChoice::Cuda(1).needs_libtorch());
    }
}
