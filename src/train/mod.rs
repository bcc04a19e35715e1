//! Training of the video denoiser (`vdiff prepare`, `vdiff train`): data preparation, random
//! K-frame crops, the training loop with EMA and exact checkpoints. Offline tooling that produces
//! the weights the render path loads; nothing on the render path calls into it.
pub mod animate;
pub mod checkpoint;
pub mod data;
pub mod holdout;
pub mod hyper;
pub mod optim;
pub mod prepare;
pub mod rng;
pub mod run;
pub mod sources;
pub mod trainer;

pub use hyper::Hyper;
pub use run::{checkpoint_path, loss_csv_path, RunOptions, RunSummary};
pub use trainer::{StepStats, Trainer};
