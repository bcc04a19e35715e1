//! The Device parameter (Auto / CPU / GPU) and its resolution to a candle device and the dtype
//! the model runs in there: f32 on CPU, f16 on CUDA or Metal (cargo features `cuda`, `metal`).
use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// A GPU when this build has one and the machine offers it, else the CPU.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl DeviceChoice {
    /// In the order of the effect's choice parameter.
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Gpu];

    /// Label shown to the user (and accepted by `FromStr`).
    pub fn label(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "Auto",
            DeviceChoice::Cpu => "CPU",
            DeviceChoice::Gpu => "GPU",
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" | "cuda" | "metal" => Ok(DeviceChoice::Gpu),
            _ => Err(Error::param(
                "device",
                format!("`{s}` (expected auto, cpu or gpu)"),
            )),
        }
    }
}

/// Whether this build was compiled with GPU support at all.
pub fn gpu_compiled() -> bool {
    cfg!(any(feature = "cuda", feature = "metal"))
}

/// The first line of a candle error: its text, without the backtrace candle may append.
#[cfg(any(feature = "cuda", feature = "metal"))]
fn first_line(e: &candle_core::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The first GPU this build supports and the machine has, with the dtype to run in there.
#[allow(unreachable_code)]
fn gpu() -> Result<(Device, DType)> {
    #[cfg(feature = "cuda")]
    {
        return match Device::new_cuda(0) {
            Ok(d) => Ok((d, DType::F16)),
            Err(e) => Err(Error::Device(format!(
                "no usable CUDA GPU ({})",
                first_line(&e)
            ))),
        };
    }
    #[cfg(feature = "metal")]
    {
        return match Device::new_metal(0) {
            Ok(d) => Ok((d, DType::F16)),
            Err(e) => Err(Error::Device(format!(
                "no usable Metal GPU ({})",
                first_line(&e)
            ))),
        };
    }
    Err(Error::Device(
        "this VDiff was built without cuda/metal support, so it cannot use a GPU".into(),
    ))
}

/// The candle device and model dtype for a choice. `Auto` falls back to the CPU when no GPU
/// is usable; `Gpu` without one is an error that says what to do.
pub fn resolve(choice: DeviceChoice) -> Result<(Device, DType)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, DType::F32)),
        DeviceChoice::Gpu => gpu(),
        DeviceChoice::Auto => {
            if !gpu_compiled() {
                return Ok((Device::Cpu, DType::F32));
            }
            match gpu() {
                Ok(r) => Ok(r),
                Err(e) => {
                    // Said once per process: the registry resolves the device per model load.
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| log::warn!("Device Auto: rendering on the CPU ({e})"));
                    Ok((Device::Cpu, DType::F32))
                }
            }
        }
    }
}

/// Total memory of a GPU, where this build can read it (CUDA); None for the CPU and elsewhere.
pub fn gpu_memory(device: &Device) -> Option<usize> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(cd) => cd.cuda_stream().context().total_mem().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_back() {
        for c in DeviceChoice::ALL {
            assert_eq!(c.label().parse::<DeviceChoice>().unwrap(), c);
            assert_eq!(c.to_string(), c.label());
        }
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
        assert_eq!(
            " Metal ".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Gpu
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_and_auto_resolve() {
        let (d, t) = resolve(DeviceChoice::Cpu).unwrap();
        assert!(d.is_cpu());
        assert_eq!(t, DType::F32);
        assert!(resolve(DeviceChoice::Auto).is_ok());
    }

    #[cfg(not(any(feature = "cuda", feature = "metal")))]
    #[test]
    fn gpu_without_gpu_build_says_so() {
        let err = resolve(DeviceChoice::Gpu).unwrap_err().to_string();
        assert!(err.contains("without cuda/metal"), "{err}");
        let (d, _) = resolve(DeviceChoice::Auto).unwrap();
        assert!(d.is_cpu());
    }
}
