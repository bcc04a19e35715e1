//! Helpers shared by the `vdiff` subcommands that render: the effect's parameters as flags (built
//! from the plugin's parameter table), Ctrl-C handling, and the progress display.
use std::ffi::CStr;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches, Command};
use indicatif::{ProgressBar, ProgressStyle};
use vdiff::engine::{Control, FrameParams, NoiseClipping, Settings};
use vdiff::keyframes::{Curve, IntCurve};
use vdiff::model::device::DeviceChoice;
use vdiff::model::registry::{self, ModelSource};
use vdiff::model::Model;
use vdiff::params::{self, ids, Kind, ParamDef, PARAMS};
use vdiff::sampling::SamplerKind;

/// Where `--device` may send the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl DeviceArg {
    /// The engine's device choice, or why this build cannot honour the request.
    pub fn choice(self) -> anyhow::Result<DeviceChoice> {
        match self {
            DeviceArg::Auto => Ok(DeviceChoice::Auto),
            DeviceArg::Cpu => Ok(DeviceChoice::Cpu),
            DeviceArg::Cuda if cfg!(feature = "cuda") => Ok(DeviceChoice::Gpu),
            DeviceArg::Metal if cfg!(feature = "metal") => Ok(DeviceChoice::Gpu),
            DeviceArg::Cuda => anyhow::bail!(
                "--device cuda: this vdiff was built without CUDA; rebuild with `cargo build --release --features cuda`, or use --device cpu"
            ),
            DeviceArg::Metal => anyhow::bail!(
                "--device metal: this vdiff was built without Metal; rebuild with `cargo build --release --features metal`, or use --device cpu"
            ),
        }
    }
}

fn parse_device(s: &str) -> Result<DeviceArg, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(DeviceArg::Auto),
        "cpu" => Ok(DeviceArg::Cpu),
        "cuda" => Ok(DeviceArg::Cuda),
        "metal" => Ok(DeviceArg::Metal),
        // The plugin's choice says "GPU": the one GPU backend this build has.
        "gpu" if cfg!(feature = "metal") => Ok(DeviceArg::Metal),
        "gpu" => Ok(DeviceArg::Cuda),
        _ => Err(format!("`{s}`: use auto, cpu, cuda or metal")),
    }
}

fn parse_sampler(s: &str) -> Result<SamplerKind, String> {
    s.parse::<SamplerKind>().map_err(|e| e.to_string())
}

/// A keyframeable real parameter limited to `lo..=hi` at every key.
fn curve(lo: f64, hi: f64) -> impl Fn(&str) -> Result<Curve, String> + Clone + Send + Sync {
    move |s: &str| {
        let c: Curve = s.parse().map_err(|e: vdiff::Error| e.to_string())?;
        let outside = c.values().find(|v| !(lo..=hi).contains(v));
        match outside {
            Some(v) => Err(format!("{v} is outside {lo}..{hi}")),
            None => Ok(c),
        }
    }
}

/// A keyframeable integer parameter limited to `lo..=hi` at every key.
fn int_curve(lo: i64, hi: i64) -> impl Fn(&str) -> Result<IntCurve, String> + Clone + Send + Sync {
    move |s: &str| {
        let c: IntCurve = s.parse().map_err(|e: vdiff::Error| e.to_string())?;
        let outside = c.values().find(|v| !(lo..=hi).contains(v));
        match outside {
            Some(v) => Err(format!("{v} is outside {lo}..{hi}")),
            None => Ok(c),
        }
    }
}

fn parse_clipping(s: &str) -> Result<NoiseClipping, String> {
    s.parse::<NoiseClipping>().map_err(|e| e.to_string())
}

/// The effect's parameters as command-line values. The flags are built from the plugin's
/// parameter table (`vdiff::params::PARAMS`): the id in kebab case (`temporalRadius` ->
/// `--temporal-radius`), the hint as help, and the table's default and range. Numbers accept
/// keyframes `FRAME:VALUE,...` (linear between keys, held outside them).
#[derive(Clone, Debug)]
pub struct EffectArgs {
    pub noise_level: Curve,
    pub strength: Curve,
    pub steps: IntCurve,
    pub sampler: SamplerKind,
    pub detail: Curve,
    pub seed: IntCurve,
    pub temporal_radius: IntCurve,
    pub temporal_smoothing: Curve,
    pub noise_clipping: NoiseClipping,
    pub mix: Curve,
    pub model: Option<PathBuf>,
    pub device: DeviceArg,
    pub tile_size: IntCurve,
}

/// `temporalRadius` -> `temporal-radius`.
pub fn flag_name(id: &CStr) -> String {
    let mut out = String::new();
    for ch in id.to_string_lossy().chars() {
        if ch.is_ascii_uppercase() {
            out.push('-');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// A flag's older spelling, kept working: `--model` for Model File.
fn alias(id: &CStr) -> Option<&'static str> {
    (id == ids::MODEL_FILE).then_some("model")
}

/// `1` for 1.0, `0.04` for 0.04: the shortest text that reads back as the value.
fn number(v: f64) -> String {
    format!("{v}")
}

/// The command-line flag of one parameter, or `None` for push buttons (they act in a host).
fn effect_arg(def: &ParamDef) -> Option<Arg> {
    let name = flag_name(def.id);
    let arg = Arg::new(name.clone())
        .long(name)
        .help(def.hint.split_whitespace().collect::<Vec<_>>().join(" "))
        .help_heading("Effect")
        .action(ArgAction::Set);
    let arg = match alias(def.id) {
        Some(a) => arg.visible_alias(a),
        None => arg,
    };
    Some(match def.kind {
        Kind::Double {
            default, min, max, ..
        } => arg
            .value_name(format!("{}..{}|KEYS", number(min), number(max)))
            .default_value(number(default))
            .allow_negative_numbers(true)
            .value_parser(ValueParser::new(curve(min, max))),
        Kind::Int {
            default, min, max, ..
        } => {
            let name = if max == i32::MAX {
                "N|KEYS".to_string()
            } else {
                format!("{min}..{max}|KEYS")
            };
            arg.value_name(name)
                .default_value(default.to_string())
                .allow_negative_numbers(true)
                .value_parser(ValueParser::new(int_curve(i64::from(min), i64::from(max))))
        }
        Kind::Choice { options, default } => {
            let arg = arg.default_value(options[default]);
            if def.id == ids::SAMPLER {
                // The plugin's labels ("DPM++ 2M") are accepted too.
                arg.value_parser(ValueParser::new(parse_sampler))
                    .value_name("euler|heun|dpmpp-2m")
            } else if def.id == ids::DEVICE {
                arg.value_parser(ValueParser::new(parse_device))
                    .value_name("auto|cpu|cuda|metal")
            } else if def.id == ids::NOISE_CLIPPING {
                arg.value_parser(ValueParser::new(parse_clipping))
                    .value_name("auto|clipped|unclipped")
            } else {
                return None;
            }
        }
        Kind::FilePath => arg
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf)),
        Kind::PushButton => return None,
    })
}

fn effect_args(cmd: Command) -> Command {
    cmd.args(PARAMS.iter().filter_map(effect_arg))
}

impl clap::Args for EffectArgs {
    fn augment_args(cmd: Command) -> Command {
        effect_args(cmd)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        effect_args(cmd)
    }
}

impl clap::FromArgMatches for EffectArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        fn get<T: Clone + Send + Sync + 'static>(
            m: &ArgMatches,
            id: &CStr,
        ) -> Result<T, clap::Error> {
            let name = flag_name(id);
            m.get_one::<T>(&name).cloned().ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!("--{name} has no value\n"),
                )
            })
        }
        Ok(EffectArgs {
            noise_level: get(m, ids::NOISE_LEVEL)?,
            strength: get(m, ids::STRENGTH)?,
            steps: get(m, ids::STEPS)?,
            sampler: get(m, ids::SAMPLER)?,
            detail: get(m, ids::DETAIL)?,
            seed: get(m, ids::SEED)?,
            temporal_radius: get(m, ids::TEMPORAL_RADIUS)?,
            temporal_smoothing: get(m, ids::TEMPORAL_SMOOTHING)?,
            noise_clipping: get(m, ids::NOISE_CLIPPING)?,
            mix: get(m, ids::MIX)?,
            model: m.get_one::<PathBuf>(&flag_name(ids::MODEL_FILE)).cloned(),
            device: get(m, ids::DEVICE)?,
            tile_size: get(m, ids::TILE_SIZE)?,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl EffectArgs {
    /// Loads (or reuses) the model named by `--model` on `--device`.
    pub fn load_model(&self) -> anyhow::Result<Arc<Model>> {
        let device = self.device.choice()?;
        let source = match &self.model {
            None => ModelSource::BuiltIn,
            Some(p) => {
                if !p.is_file() {
                    anyhow::bail!("--model {}: no such file", p.display());
                }
                ModelSource::File(p.clone())
            }
        };
        Ok(registry::get(&source, device)?)
    }

    /// The settings read at frame `t` (integer parameters take their value at that frame).
    pub fn settings_at(&self, t: i64, model: &Arc<Model>) -> Settings {
        // Ranges were checked at parse time and interpolation stays between keys, so the
        // conversions below cannot fail; `max`/`clamp` keep them total anyway.
        Settings {
            model: Arc::clone(model),
            sampler: self.sampler,
            steps: clamp_int(&self.steps, t, &params::STEPS) as u32,
            seed: clamp_int(&self.seed, t, &params::SEED) as u64,
            radius: clamp_int(&self.temporal_radius, t, &params::TEMPORAL_RADIUS) as u32,
            tile_size: clamp_int(&self.tile_size, t, &params::TILE_SIZE) as u32,
            render_scale: 1.0,
            clipping: self.noise_clipping,
        }
    }

    /// The per-frame parameters at frame `t`.
    pub fn params_at(&self, t: i64) -> FrameParams {
        FrameParams {
            noise_level: self.noise_level.at(t) as f32,
            strength: self.strength.at(t) as f32,
            detail: self.detail.at(t) as f32,
            smoothing: self.temporal_smoothing.at(t) as f32,
            mix: self.mix.at(t) as f32,
        }
    }
}

/// An integer curve's value at `t` inside the parameter's range (and at least 0).
fn clamp_int(c: &IntCurve, t: i64, def: &ParamDef) -> i64 {
    let (lo, hi) = params::int_range(def);
    c.at(t).clamp(i64::from(lo.max(0)), i64::from(hi))
}

/// The error a render returns when the user pressed Ctrl-C (`main` exits with 130 for it).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process) and returns the flag it raises. A first Ctrl-C
/// asks the render to stop between sampler steps; a second one exits at once.
pub fn interrupt_flag() -> &'static AtomicBool {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nvdiff: interrupted again, quitting now");
                std::process::exit(130);
            }
            eprintln!("\nvdiff: stopping (the current frame is abandoned, no partial file is written; Ctrl-C again quits at once)");
        });
        if let Err(e) = installed {
            log::warn!("cannot install the Ctrl-C handler: {e}");
        }
    });
    &INTERRUPTED
}

/// Frames done, rate and ETA: an indicatif bar on a terminal, plain lines otherwise (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    start: Instant,
    /// Last sub-frame percentage shown, so the bar message is not rewritten every sampler step.
    shown: Mutex<(i64, u32)>,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            total,
            done: AtomicU64::new(0),
            start: Instant::now(),
            shown: Mutex::new((i64::MIN, 0)),
        }
    }

    /// Progress inside frame `t` (0..1), from the engine.
    pub fn within_frame(&self, t: i64, fraction: f64) {
        let Some(bar) = &self.bar else { return };
        let pct = (fraction.clamp(0.0, 1.0) * 100.0) as u32;
        if let Ok(mut shown) = self.shown.lock() {
            if *shown != (t, pct) {
                *shown = (t, pct);
                bar.set_message(format!("frame {t}: {pct}%"));
            }
        }
    }

    /// Frame `t` was written to `path`.
    pub fn frame_done(&self, t: i64, path: &Path) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => {
                let secs = self.start.elapsed().as_secs_f64().max(1e-9);
                let rate = done as f64 / secs;
                let eta = (self.total - done.min(self.total)) as f64 / rate.max(1e-9);
                eprintln!(
                    "vdiff: frame {t} -> {} [{done}/{}, {rate:.2} frames/s, ETA {}]",
                    path.display(),
                    self.total,
                    fmt_secs(eta)
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `95` -> "1m35s".
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The engine's view of the command line: progress to the display, abort from Ctrl-C.
pub struct CliControl<'a> {
    pub progress: &'a Progress,
    pub frame: i64,
    pub abort: &'a AtomicBool,
}

impl Control for CliControl<'_> {
    fn progress(&self, fraction: f64) {
        self.progress.within_frame(self.frame, fraction);
    }
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        e: EffectArgs,
    }

    #[test]
    fn defaults_are_the_plugin_defaults() {
        use vdiff::params::{def, SAMPLER_OPTIONS};
        let double = |id| match def(id).unwrap().kind {
            Kind::Double { default, .. } => default,
            k => panic!("{id:?} is {k:?}"),
        };
        let int = |id| match def(id).unwrap().kind {
            Kind::Int { default, .. } => i64::from(default),
            k => panic!("{id:?} is {k:?}"),
        };
        let t = T::try_parse_from(["t"]).unwrap();
        let p = t.e.params_at(3);
        assert_eq!(
            p,
            FrameParams {
                noise_level: double(ids::NOISE_LEVEL) as f32,
                strength: double(ids::STRENGTH) as f32,
                detail: double(ids::DETAIL) as f32,
                smoothing: double(ids::TEMPORAL_SMOOTHING) as f32,
                mix: double(ids::MIX) as f32,
            }
        );
        assert_eq!(t.e.steps.at(0), int(ids::STEPS));
        assert_eq!(t.e.seed.at(0), int(ids::SEED));
        assert_eq!(t.e.temporal_radius.at(0), int(ids::TEMPORAL_RADIUS));
        assert_eq!(t.e.tile_size.at(0), int(ids::TILE_SIZE));
        let Kind::Choice { default, .. } = def(ids::SAMPLER).unwrap().kind else {
            panic!("sampler is not a choice")
        };
        assert_eq!(t.e.sampler, SAMPLER_OPTIONS[default].parse().unwrap());
        assert_eq!(t.e.device, DeviceArg::Auto);
        let Kind::Choice { default, .. } = def(ids::NOISE_CLIPPING).unwrap().kind else {
            panic!("noise clipping is not a choice")
        };
        assert_eq!(t.e.noise_clipping, NoiseClipping::ALL[default]);
        let t = T::try_parse_from(["t", "--noise-clipping", "unclipped"]).unwrap();
        assert_eq!(t.e.noise_clipping, NoiseClipping::Unclipped);
        assert!(T::try_parse_from(["t", "--noise-clipping", "maybe"]).is_err());
        assert!(T::try_parse_from(["t", "--temporal-smoothing", "2.5"]).is_err());
    }

    #[test]
    fn keyframes_and_ranges() {
        let t = T::try_parse_from([
            "t",
            "--strength",
            "0:0.1,4:0.5",
            "--steps",
            "0:2,4:6",
            "--sampler",
            "DPM++ 2M",
        ])
        .unwrap();
        assert!((t.e.params_at(2).strength - 0.3).abs() < 1e-6);
        assert_eq!(t.e.steps.at(1), 3);
        for (flag, value) in [
            ("--strength", "1.5"),
            ("--noise-level", "0:0.1,9:0.7"),
            ("--steps", "0"),
            ("--temporal-radius", "9"),
            ("--tile-size", "32"),
            ("--seed", "-1"),
            ("--sampler", "ddim"),
            ("--device", "tpu"),
            ("--mix", "x"),
        ] {
            let e = T::try_parse_from(["t", flag, value])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(flag) && e.contains(value), "{flag} {value}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_secs(5.4), "5s");
        assert_eq!(fmt_secs(95.0), "1m35s");
        assert_eq!(fmt_secs(7260.0), "2h01m");
    }
}
