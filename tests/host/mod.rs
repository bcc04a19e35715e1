//! In-repo OpenFX 1.4/1.5 host for the integration tests: loads the built plugin (`libvdiff.so`)
//! with libloading and drives it the way Natron, MLT and Resolve do, so the scenarios in
//! `host_scenarios.rs` can check what real hosts would see (determinism, render windows, leaks).
//!
//! Layout: `plugin` finds and loads the binary; `driver` is the host (actions, render pipelines);
//! `effect`, `params`, `props` and `suites` implement the OFX suites behind the handles the plugin
//! receives (all checked through `ffi`'s registry); `varargs` bridges C-variadic suite functions;
//! `image` and `footage` are the pixels; `state` records everything for assertions.
#![allow(dead_code)]

pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod driver;
pub mod effect;
pub mod ffi;
pub mod footage;
pub mod image;
pub mod instance;
pub mod params;
pub mod plugin;
pub mod props;
pub mod state;
pub mod suites;
pub mod varargs;

pub use config::{Comps, Context, CudaRender, Depth, HostConfig, Rect};
pub use driver::{FrameOut, Host, Project, RenderOpts};
pub use ffi::status_name;
pub use footage::Footage;
pub use image::DepthSpec;
pub use instance::Instance;
pub use params::PVal;
pub use plugin::PLUGIN_ID;
pub use state::{HostState, MessageKind, ProgressEvent};
