//! Release builds place the functions a monitor tick runs side by side in the binary, so the
//! code pages a running agent keeps resident are those functions' few hundred kilobytes rather
//! than the scattered 64 KiB blocks the kernel maps around each of them (fault-around): 4 MiB
//! of an 11 MiB text without the ordering.
//!
//! `build/hot-functions.txt` (written by `scripts/hot-functions.sh`) lists them as symbol
//! patterns, `*` standing for the hashes that change from build to build. Every function has
//! its own section (`.text.<symbol>`), so a linker script can gather them: one output section
//! inserted before `.text`, which GNU ld and lld both understand. A missing list makes an
//! ordinary build.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build/hot-functions.txt");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("PROFILE").as_deref() != Ok("release")
        || !env::var("TARGET").is_ok_and(|t| t.ends_with("-linux-gnu"))
    {
        return;
    }
    let (Some(manifest_dir), Some(out_dir)) = (
        env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        env::var_os("OUT_DIR").map(PathBuf::from),
    ) else {
        return;
    };
    let Ok(list) = std::fs::read_to_string(manifest_dir.join("build/hot-functions.txt")) else {
        return;
    };
    let mut script = String::from("SECTIONS\n{\n  .text.hot :\n  {\n");
    for pattern in list.lines().map(str::trim) {
        // Mangled names are letters, digits, `_`, `$` and `.`; anything else is not a symbol
        // and must not reach the linker script's syntax.
        if pattern.is_empty()
            || !pattern
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c))
        {
            continue;
        }
        let _ = writeln!(script, "    *(.text.{pattern})");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let path = out_dir.join("hot-functions.ld");
    if std::fs::write(&path, script).is_ok() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
    }
}
