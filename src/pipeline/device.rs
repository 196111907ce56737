//! The `device` choice (`auto`, `cpu`, `cuda:N`) and opening the Candle device it names.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// The `device` parameter: `auto` (CUDA when present, else CPU), `cpu` or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!(
                        "device '{s}' is not one of auto, cpu, cuda:N (N = GPU index, e.g. cuda:0)"
                    )
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The device in use, how to call it in logs and diagnostics, and why it differs from the
/// request when it does.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    pub device: Device,
    pub label: String,
    pub fallback_reason: Option<String>,
}

/// Opens the requested device. An unavailable CUDA falls back to the CPU with the reason set.
pub fn select_device(choice: DeviceChoice) -> SelectedDevice {
    let cpu = |reason: Option<String>| SelectedDevice {
        device: Device::Cpu,
        label: format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        fallback_reason: reason,
    };
    let ordinal = match choice {
        DeviceChoice::Cpu => return cpu(None),
        DeviceChoice::Auto if !candle_core::utils::cuda_is_available() => return cpu(None),
        DeviceChoice::Auto => 0,
        DeviceChoice::Cuda(n) => n,
    };
    if !candle_core::utils::cuda_is_available() {
        return cpu(Some(format!(
            "{choice} requested but this build has no CUDA support (rebuild with --features cuda)"
        )));
    }
    match Device::new_cuda(ordinal) {
        Ok(device) => SelectedDevice {
            device,
            label: format!("cuda:{ordinal}"),
            fallback_reason: None,
        },
        Err(e) => cpu(Some(format!("cuda:{ordinal} could not be opened: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_accepted_forms() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("auto, cpu, cuda:N"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn unavailable_cuda_falls_back_to_the_cpu_with_a_reason() {
        // No machine has a 10 000th GPU: with or without CUDA in the build, this falls back,
        // and the reason names the request.
        let selected = select_device(DeviceChoice::Cuda(9999));
        assert!(selected.device.is_cpu());
        assert!(selected.fallback_reason.unwrap().contains("cuda:9999"));
        let selected = select_device(DeviceChoice::Cuda(0));
        if candle_core::utils::cuda_is_available() {
            // A CUDA build: cuda:0 opens, or the reason says why it could not.
            match selected.fallback_reason {
                None => assert_eq!(selected.label, "cuda:0"),
                Some(reason) => assert!(reason.contains("cuda:0 could not be opened"), "{reason}"),
            }
        } else {
            assert!(selected.device.is_cpu());
            let reason = selected.fallback_reason.unwrap();
            assert!(
                reason.contains("cuda:0") && reason.contains("no CUDA support"),
                "{reason}"
            );
        }
        assert!(select_device(DeviceChoice::Cpu).fallback_reason.is_none());
    }
}
