//! With feature `conformance`, embeds the OWASP Core Rule Set in the test Worker (a Worker has no files):
//! `crs-setup.conf` (or its `.example`), `rules/*.conf` in name order and `rules/*.data`, from
//! `EDGE_CRS_DIR` or `../shared/crs` beside the project. Without the feature, or without a CRS copy, the
//! lists are empty and the CRS route says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=EDGE_CRS_DIR");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = std::env::var_os("EDGE_CRS_DIR")
        .map_or_else(|| manifest.join("../../../shared/crs"), PathBuf::from);
    let wanted = std::env::var_os("CARGO_FEATURE_CONFORMANCE").is_some();
    let (mut rules, mut data) = (Vec::new(), Vec::new());
    if wanted && dir.join("rules").is_dir() {
        let setup = dir.join("crs-setup.conf");
        rules.push(if setup.exists() {
            setup
        } else {
            dir.join("crs-setup.conf.example")
        });
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            match file.extension().and_then(|e| e.to_str()) {
                Some("conf") => rules.push(file),
                Some("data") => data.push(file),
                _ => {}
            }
        }
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let list = |files: &[PathBuf]| {
        let mut out = String::from("&[\n");
        for file in files {
            let path = file.canonicalize().unwrap_or_else(|_| file.clone());
            let name = Path::new(&path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let _ = writeln!(
                out,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            );
        }
        out.push(']');
        out
    };
    let code = format!(
        "/// The CRS configuration files, in load order.\npub(crate) const CRS_RULES: &[(&str, &str)] = {};\n\
         /// The CRS data files (`@pmFromFile`).\npub(crate) const CRS_DATA: &[(&str, &str)] = {};\n",
        list(&rules),
        list(&data)
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("crs_embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}
