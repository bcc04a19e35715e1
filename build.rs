//! Builds the C half of the in-repo OFX test host (`tests/host/varargs.c`: the C-variadic suite
//! functions that stable Rust cannot define) and links it into the test binaries only; the
//! plugin and the command line do not contain it.
fn main() {
    println!("cargo:rerun-if-changed=tests/host/varargs.c");
    let objects = cc::Build::new()
        .file("tests/host/varargs.c")
        .warnings(true)
        .cargo_metadata(false)
        .compile_intermediates();
    for o in objects {
        println!("cargo:rustc-link-arg-tests={}", o.display());
    }
}
