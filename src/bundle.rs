//! Packaging: assembles `VDiff.ofx.bundle` (OFX "Installation Directory Hierarchy") around the
//! built plugin library, with the icon, the built-in model and Info.plist, and installs it into
//! an OFX plugin folder. Used by `vdiff bundle`; not on the render path.
use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub const BUNDLE_NAME: &str = "VDiff.ofx.bundle";
pub const BINARY_NAME: &str = "VDiff.ofx";
/// Icon named after the plugin identifier, as OFX hosts look it up.
pub const ICON_NAME: &str = "net.vdiff.VideoDiffusion.png";
pub const MODEL_NAME: &str = "vdiff-default.safetensors";
pub const MODEL_CARD_NAME: &str = "MODEL_CARD.md";

const INFO_PLIST: &str = include_str!("../bundle/Info.plist");
const ICON: &[u8] = include_bytes!("../resources/net.vdiff.VideoDiffusion.png");
/// Optional model card, read when the bundle is assembled from a source checkout.
const MODEL_CARD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/resources/MODEL_CARD.md");

/// The `Contents/<ARCH>` folder for a target (`std::env::consts` names), as the OFX packaging
/// reference spells them; Linux on other CPUs follows its `Linux-$(uname -m)` rule.
pub fn arch_dir(os: &str, arch: &str) -> Result<&'static str> {
    Ok(match (os, arch) {
        ("linux", "x86") => "Linux-x86",
        ("linux", "x86_64") => "Linux-x86-64",
        ("linux", "aarch64") => "Linux-aarch64",
        ("freebsd", "x86") => "FreeBSD-x86",
        ("freebsd", "x86_64") => "FreeBSD-x86-64",
        // Universal or single-architecture: one folder since OFX 1.5.
        ("macos", _) => "MacOS",
        ("windows", "x86") => "Win32",
        ("windows", "x86_64") => "Win64",
        ("windows", "arm64ec") => "Win-arm64ec",
        _ => {
            return Err(Error::Other(format!(
                "no OFX bundle architecture folder is defined for {os}/{arch}"
            )))
        }
    })
}

/// The architecture folder of the platform this crate was built for.
pub fn target_arch_dir() -> Result<&'static str> {
    arch_dir(std::env::consts::OS, std::env::consts::ARCH)
}

/// File name cargo gives the plugin library (`libvdiff.so`, `libvdiff.dylib`, `vdiff.dll`).
pub fn plugin_lib_name() -> String {
    format!(
        "{}vdiff{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The standard OFX plugin folder of this platform.
pub fn default_install_dir() -> PathBuf {
    if cfg!(target_os = "windows") {
        PathBuf::from(r"C:\Program Files\Common Files\OFX\Plugins")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/OFX/Plugins")
    } else {
        PathBuf::from("/usr/OFX/Plugins")
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(io(format!("writing {}", path.display())))
}

/// Creates `out_dir/VDiff.ofx.bundle` (replacing an earlier one) with the plugin library as
/// `Contents/<ARCH>/VDiff.ofx`, `Contents/Info.plist` and `Contents/Resources/` (icon, default
/// model, model card where there is one). Returns the bundle's path.
pub fn assemble(out_dir: &Path, plugin_lib: &Path) -> Result<PathBuf> {
    let meta =
        fs::metadata(plugin_lib).map_err(io(format!("plugin library {}", plugin_lib.display())))?;
    if !meta.is_file() {
        return Err(Error::Other(format!(
            "plugin library {} is not a file",
            plugin_lib.display()
        )));
    }
    let bundle = out_dir.join(BUNDLE_NAME);
    if bundle.exists() {
        fs::remove_dir_all(&bundle)
            .map_err(io(format!("removing the old {}", bundle.display())))?;
    }
    let contents = bundle.join("Contents");
    let bin_dir = contents.join(target_arch_dir()?);
    let resources = contents.join("Resources");
    for d in [&bin_dir, &resources] {
        fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let binary = bin_dir.join(BINARY_NAME);
    fs::copy(plugin_lib, &binary).map_err(io(format!(
        "copying {} to {}",
        plugin_lib.display(),
        binary.display()
    )))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("making {} executable", binary.display())))?;
    }
    write(&contents.join("Info.plist"), INFO_PLIST.as_bytes())?;
    write(&resources.join(ICON_NAME), ICON)?;
    write(
        &resources.join(MODEL_NAME),
        crate::model::registry::builtin_bytes(),
    )?;
    if let Ok(card) = fs::read(MODEL_CARD_PATH) {
        write(&resources.join(MODEL_CARD_NAME), &card)?;
    }
    Ok(bundle)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for entry in fs::read_dir(from).map_err(io(format!("reading {}", from.display())))? {
        let entry = entry.map_err(io(format!("reading {}", from.display())))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(io(format!("reading {}", src.display())))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(io(format!(
                "copying {} to {}",
                src.display(),
                dst.display()
            )))?;
        }
    }
    Ok(())
}

/// Copies a bundle into the plugin folder `dest` (created if needed), replacing an installed
/// copy. The copy is made under an `@`-prefixed name (hosts skip those) and renamed into place,
/// so a host scanning meanwhile never loads half a bundle. Returns the installed bundle's path.
pub fn install(bundle: &Path, dest: &Path) -> Result<PathBuf> {
    let name = bundle
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".ofx.bundle"))
        .ok_or_else(|| {
            Error::Other(format!(
                "{} is not an OFX bundle (NAME.ofx.bundle)",
                bundle.display()
            ))
        })?;
    if !bundle.join("Contents").is_dir() {
        return Err(Error::Other(format!(
            "{} has no Contents folder; assemble it first",
            bundle.display()
        )));
    }
    fs::create_dir_all(dest)
        .map_err(io(format!("creating the plugin folder {}", dest.display())))?;
    let target = dest.join(name);
    let staging = dest.join(format!("@{name}.installing"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(format!("removing {}", staging.display())))?;
    }
    copy_tree(bundle, &staging)?;
    if target.exists() {
        fs::remove_dir_all(&target)
            .map_err(io(format!("removing the installed {}", target.display())))?;
    }
    fs::rename(&staging, &target).map_err(io(format!(
        "moving {} to {}",
        staging.display(),
        target.display()
    )))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty scratch folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vdiff-bundle-test-{}-{name}", std::process::id()));
        drop(fs::remove_dir_all(&d));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn dummy_lib(dir: &Path) -> PathBuf {
        let lib = dir.join(plugin_lib_name());
        fs::write(&lib, b"\x7fELF not really a library").unwrap();
        lib
    }

    #[test]
    fn architecture_folders_follow_the_ofx_reference() {
        assert_eq!(arch_dir("linux", "x86_64").unwrap(), "Linux-x86-64");
        assert_eq!(arch_dir("linux", "x86").unwrap(), "Linux-x86");
        assert_eq!(arch_dir("linux", "aarch64").unwrap(), "Linux-aarch64");
        assert_eq!(arch_dir("macos", "aarch64").unwrap(), "MacOS");
        assert_eq!(arch_dir("macos", "x86_64").unwrap(), "MacOS");
        assert_eq!(arch_dir("windows", "x86_64").unwrap(), "Win64");
        assert_eq!(arch_dir("windows", "x86").unwrap(), "Win32");
        assert!(arch_dir("plan9", "mips").is_err());
        assert!(target_arch_dir().is_ok());
    }

    #[test]
    fn assemble_lays_out_the_bundle() {
        let d = scratch("assemble");
        let lib = dummy_lib(&d);
        let out = d.join("out");
        let b = assemble(&out, &lib).unwrap();
        assert_eq!(b, out.join("VDiff.ofx.bundle"));
        let bin = b
            .join("Contents")
            .join(target_arch_dir().unwrap())
            .join("VDiff.ofx");
        assert_eq!(fs::read(&bin).unwrap(), fs::read(&lib).unwrap());
        let plist = fs::read_to_string(b.join("Contents/Info.plist")).unwrap();
        assert!(
            plist.contains("<string>VDiff.ofx</string>") && plist.contains("<string>BNDL</string>")
        );
        let version = format!(
            "<string>{}.{}</string>",
            crate::effect::VERSION_MAJOR,
            crate::effect::VERSION_MINOR
        );
        assert!(
            plist.contains(&version),
            "Info.plist version must match the plugin's"
        );
        let icon = fs::read(b.join("Contents/Resources").join(ICON_NAME)).unwrap();
        assert_eq!(&icon[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            u32::from_be_bytes(icon[16..20].try_into().unwrap()),
            128,
            "icon width"
        );
        assert_eq!(icon[25], 6, "icon colour type must be RGBA");
        let model = fs::read(b.join("Contents/Resources").join(MODEL_NAME)).unwrap();
        assert_eq!(model, crate::model::registry::builtin_bytes());
        assert_eq!(
            b.join("Contents/Resources").join(MODEL_CARD_NAME).exists(),
            Path::new(MODEL_CARD_PATH).exists()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&bin).unwrap().permissions().mode() & 0o111,
                0o111
            );
        }
        // Re-assembling replaces the bundle (a stale file disappears).
        fs::write(b.join("Contents/stale"), b"x").unwrap();
        assemble(&out, &lib).unwrap();
        assert!(!b.join("Contents/stale").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn install_copies_and_replaces() {
        let d = scratch("install");
        let lib = dummy_lib(&d);
        let b = assemble(&d.join("out"), &lib).unwrap();
        let plugins = d.join("OFX").join("Plugins");
        let installed = install(&b, &plugins).unwrap();
        assert_eq!(installed, plugins.join("VDiff.ofx.bundle"));
        let bin = installed
            .join("Contents")
            .join(target_arch_dir().unwrap())
            .join("VDiff.ofx");
        assert_eq!(fs::read(&bin).unwrap(), fs::read(&lib).unwrap());
        // A second install over an older copy leaves exactly the new bundle, no staging folder.
        fs::write(installed.join("Contents/old"), b"x").unwrap();
        install(&b, &plugins).unwrap();
        assert!(!installed.join("Contents/old").exists());
        let names: Vec<_> = fs::read_dir(&plugins)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("VDiff.ofx.bundle")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let d = scratch("bad");
        let e = assemble(&d.join("out"), &d.join("missing.so"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.so"), "{e}");
        let e = install(&d, &d.join("dest")).unwrap_err().to_string();
        assert!(e.contains("not an OFX bundle"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
