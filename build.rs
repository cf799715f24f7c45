//! Release builds place the functions a monitor tick runs side by side in the binary, so the
//! code pages a running agent keeps resident are those functions' few hundred kilobytes rather
//! than the scattered 64 KiB blocks the kernel maps around each of them (fault-around): 4 MiB
//! of an 11 MiB text without the ordering. Their jump tables and the pooled constants go side
//! by side at the start of `.rodata` the same way.
//!
//! `build/hot-functions.txt` (written by `scripts/hot-functions.sh`) lists them as symbol
//! patterns, `*` standing for the hashes that change from build to build. Every function has
//! its own section (`.text.<symbol>`), so a linker script can gather them: one output section
//! inserted before `.text`, which GNU ld and lld both understand. A missing list makes an
//! ordinary build.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::disallowed_macros)]

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build/hot-functions.txt");
    println!("cargo:rerun-if-changed=build.rs");
    revision();
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
    let mut text = String::new();
    let mut data = String::from(
        // Small constants the compiler pools (floats, masks): a few KiB, read all over.
        "    *(.rodata.cst4) *(.rodata.cst8) *(.rodata.cst16) *(.rodata.cst32)\n",
    );
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
        // LLVM puts a function it guesses is cold in `.text.unlikely.<name>`; a tick may still
        // run it (an echo request is sent once a tick).
        let _ = writeln!(
            text,
            "    *(.text.{pattern}) *(.text.unlikely.{pattern}) *(.text.hot.{pattern})"
        );
        // A function's jump and lookup tables are named after it; a listed name may also be a
        // table of its own (serde_json's escapes).
        let _ = writeln!(
            data,
            "    *(.rodata.{pattern}) *(.rodata..Lswitch.table.{pattern}*)"
        );
    }
    let script = format!(
        "SECTIONS\n{{\n  .text.hot :\n  {{\n{text}  }}\n}}\nINSERT BEFORE .text;\n\
         SECTIONS\n{{\n  .rodata.hot :\n  {{\n{data}  }}\n}}\nINSERT BEFORE .rodata;\n"
    );
    let path = out_dir.join("hot-functions.ld");
    if std::fs::write(&path, script).is_ok() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
    }
    // Where each input section landed, for scripts/hot-functions-refine.sh to name what a
    // page fault touched.
    println!(
        "cargo:rustc-link-arg-bins=-Wl,-Map={}",
        out_dir.join("runner.map").display()
    );
}

/// `runner_build_info`'s `revision`: `RUNNER_REVISION` when a packager sets it (a tarball has
/// no `.git`), else the commit git says, else `unknown`. Asked again when the commit changes.
fn revision() {
    println!("cargo:rerun-if-env-changed=RUNNER_REVISION");
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let from_git = || {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(manifest_dir.as_ref()?)
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_string())
    };
    let revision = env::var("RUNNER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".into());
    if let Some(manifest_dir) = &manifest_dir {
        let git = manifest_dir.join(".git");
        // The branch HEAD names moves with each commit: watch both files (and packed refs).
        // A missing file would make cargo run this script on every build: only those there.
        let mut watched = vec![git.join("HEAD"), git.join("packed-refs")];
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(name) = head.trim().strip_prefix("ref: ")
        {
            watched.push(git.join(name));
        }
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rustc-env=RUNNER_REVISION={revision}");
}
