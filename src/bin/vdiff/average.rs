//! `vdiff average`: the tensor-by-tensor mean of model files of one architecture
//! (`vdiff::model::average_files`), written as a model file.
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Average model files of one architecture, weight by weight ("model soup"): two fine-tunes of
/// one model, averaged, often keep much of what each gained. The result loads like any model.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
    vdiff average --out soup.safetensors stage8.safetensors stage9-run.safetensors")]
pub struct Args {
    /// Model files to average (equal weights), at least two, all of one config.
    #[arg(required = true, num_args = 2..)]
    pub models: Vec<PathBuf>,
    /// The model file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = a.models.iter().map(PathBuf::as_path).collect();
    let bytes = vdiff::model::average_files(&inputs)?;
    vdiff::model::write_file(&bytes, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}: the average of {} models",
        a.out.display(),
        inputs.len()
    );
    Ok(())
}
