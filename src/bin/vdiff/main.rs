//! `vdiff`: the headless front end. Renders image sequences through the same engine as the
//! OFX plugin, assembles the plugin bundle, prepares data, trains, evaluates and benchmarks.
// NOTE: the binary root lives in src/bin/vdiff/ so that its subcommand modules sit beside it.
use clap::{Parser, Subcommand};

/// `println!` for results on stdout that returns a closed pipe (`vdiff eval ... | head -1`) as
/// an error, where `println!` would panic; `main` ends such a run quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Every tensor op allocates its output afresh; glibc hands each large buffer back to the kernel
/// on free, so the next op page-faults zeroed pages in again (a fifth of a 1080p render's CPU time
/// went to the kernel). mimalloc keeps freed memory for reuse. The plugin keeps the host's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analyze;
mod average;
mod bench;
mod bundle;
mod cli_common;
mod demo;
mod eval;
mod prepare;
mod render;
mod train;

#[derive(Parser)]
#[command(
    name = "vdiff",
    version,
    about = "Temporally consistent video diffusion denoising",
    long_about = "Temporally consistent video diffusion denoising: the command line of the VDiff \
                  OpenFX plugin. `vdiff demo` shows it working on a built-in clip; `vdiff render` \
                  denoises your own image sequences with the plugin's parameters.",
    after_help = "Run `vdiff <COMMAND> --help` for a command's options and examples.\n\
                  Progress and errors go to stderr; exit code 1 on errors, 2 on a bad flag, 130 \
                  after Ctrl-C."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Denoise an image sequence (PNG, TIFF, OpenEXR) with the plugin's engine.
    Render(render::Args),
    /// Denoise the built-in sample clip and write a before/after contact sheet.
    Demo(demo::Args),
    /// Assemble VDiff.ofx.bundle (and optionally install it into an OFX plugin folder).
    Bundle(bundle::Args),
    /// Build training data from the opencv-doc footage, or noisy copies of clean frames.
    Prepare(prepare::Args),
    /// Train (or fine-tune) a denoising model on folders of frames.
    Train(train::Args),
    /// Average model files of one architecture, weight by weight.
    Average(average::Args),
    /// Score a sequence against its clean reference (PSNR, SSIM, flicker).
    Eval(eval::Args),
    /// Estimate the noise level of an image sequence (the plugin's Analyze Noise).
    Analyze(analyze::Args),
    /// Time the engine on a synthetic shot.
    Bench(bench::Args),
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    vdiff::logging::init();
    match cli.command {
        Command::Render(a) => render::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bundle(a) => bundle::run(a),
        Command::Prepare(a) => prepare::run(a),
        Command::Train(a) => train::run(a),
        Command::Average(a) => average::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

/// What to do about a library error on the command line, by its kind.
fn advice(e: &vdiff::Error) -> Option<&'static str> {
    match e {
        vdiff::Error::Model { .. } => Some(
            "pass a .safetensors model saved by `vdiff train` to --model-file, or leave it out for the built-in model",
        ),
        vdiff::Error::Device(_) => Some("use --device cpu (or auto, which falls back to the CPU)"),
        vdiff::Error::OutOfMemory(_) => Some("lower --tile-size or --temporal-radius, or use --device cpu"),
        _ => None,
    }
}

/// Whether `e` comes from writing to a stdout whose reader has gone (`| head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() {
    if let Err(e) = try_main() {
        if is_broken_pipe(&e) {
            // The reader took what it wanted; nothing is wrong and there is no one to tell.
            std::process::exit(0);
        }
        if let Some(stop) = e.downcast_ref::<cli_common::Interrupted>() {
            eprintln!("vdiff: {stop}");
            std::process::exit(130);
        }
        eprintln!("vdiff: error: {e:#}");
        if let Some(advice) = e.downcast_ref::<vdiff::Error>().and_then(advice) {
            eprintln!("vdiff: {advice}");
        }
        std::process::exit(1);
    }
}
