//! Integration tests: one binary, shared helpers in `common`.
mod common;
// The OFX host needs the SysV x86-64 / Linux AAPCS64 variadic call sequence (see host/varargs.rs).
mod cli;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod host;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod host_scenarios;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod real_hosts;
mod train;
