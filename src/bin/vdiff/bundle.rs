//! `vdiff bundle`: assembles VDiff.ofx.bundle from the plugin library built beside this
//! executable (or `--lib`), and optionally installs it into an OFX plugin folder.
use std::path::PathBuf;

use anyhow::{bail, Context};
use vdiff::bundle;

#[derive(clap::Args)]
pub struct Args {
    /// Folder in which to create VDiff.ofx.bundle (an existing bundle there is replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The plugin library to package [default: libvdiff.so / libvdiff.dylib / vdiff.dll next to
    /// this executable, as `cargo build` leaves it].
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// Also install the bundle into DIR [default DIR: /usr/OFX/Plugins on Linux,
    /// /Library/OFX/Plugins on macOS, Common Files\OFX\Plugins on Windows].
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    install: Option<Option<PathBuf>>,
}

/// The plugin library cargo built next to the running `vdiff`.
fn sibling_lib() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running vdiff executable")?;
    let dir = exe
        .parent()
        .context("the vdiff executable has no parent folder")?;
    let lib = dir.join(bundle::plugin_lib_name());
    if !lib.is_file() {
        bail!(
            "no plugin library at {} (build it with `cargo build --release`, or pass --lib PATH)",
            lib.display()
        );
    }
    Ok(lib)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let lib = match a.lib {
        Some(l) => l,
        None => sibling_lib()?,
    };
    let b = bundle::assemble(&a.out, &lib)
        .with_context(|| format!("assembling the bundle in {}", a.out.display()))?;
    outln!("assembled {}", b.display());
    if let Some(dest) = a.install {
        let dest = dest.unwrap_or_else(bundle::default_install_dir);
        let installed = bundle::install(&b, &dest).with_context(|| {
            format!(
                "installing into {} (a system folder may need administrator rights)",
                dest.display()
            )
        })?;
        outln!("installed {}", installed.display());
    }
    Ok(())
}
