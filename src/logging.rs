//! The product's log (plugin and command line): warnings and errors to stderr by default, or
//! appended to the file named by `VDIFF_LOG`; `VDIFF_LOG_LEVEL` (error, warn, info, debug, trace) sets the detail. Installed
//! by the plugin at Load and by `vdiff` at start, once per process, unless the process already
//! has a `log` logger.
use std::fs::{File, OpenOptions};
use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};
use once_cell::sync::{Lazy, OnceCell};
use parking_lot::Mutex;

struct PluginLog {
    level: LevelFilter,
    file: Option<Mutex<File>>,
}

impl Log for PluginLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("[vdiff {}] {}\n", r.level(), r.args());
        // A log that cannot be written is dropped: logging must never fail a render.
        match &self.file {
            Some(f) => drop(f.lock().write_all(line.as_bytes())),
            None => drop(std::io::stderr().write_all(line.as_bytes())),
        }
    }

    fn flush(&self) {
        if let Some(f) = &self.file {
            drop(f.lock().flush());
        }
    }
}

fn parse_level(s: Option<&str>) -> LevelFilter {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("info") => LevelFilter::Info,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Warn,
    }
}

static LOGGER: Lazy<PluginLog> = Lazy::new(|| {
    let level = parse_level(std::env::var("VDIFF_LOG_LEVEL").ok().as_deref());
    let file = std::env::var_os("VDIFF_LOG")
        .filter(|p| !p.is_empty())
        .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok())
        .map(Mutex::new);
    PluginLog { level, file }
});

static INSTALLED: OnceCell<()> = OnceCell::new();

/// Installs the logger (idempotent; a logger set by someone else is left alone).
pub fn init() {
    INSTALLED.get_or_init(|| {
        if log::set_logger(&*LOGGER).is_ok() {
            log::set_max_level(LOGGER.level);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_with_warn_as_default() {
        assert_eq!(parse_level(None), LevelFilter::Warn);
        assert_eq!(parse_level(Some(" Debug ")), LevelFilter::Debug);
        assert_eq!(parse_level(Some("nonsense")), LevelFilter::Warn);
        assert_eq!(parse_level(Some("off")), LevelFilter::Off);
    }
}
