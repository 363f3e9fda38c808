//! The backends `scripts/test.sh` installs once per machine, found without
//! its environment: a variable (`KAFKA_LIBS`, `JAEGER_BIN`) wins, else the
//! single installation in its cache (`TRACING_REFERENCE_CACHE`, else
//! `$XDG_CACHE_HOME/tracing-reference`, else `~/.cache/tracing-reference`, as
//! `scripts/lib.sh` has it), so a plain `cargo test` works after one run of
//! the script.

use std::path::PathBuf;

/// The variable's path, or the one `<cache>/<prefix>*/<inside>` that exists.
pub fn find(variable: &str, prefix: &str, inside: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    let cache =
        cache_dir().ok_or("neither TRACING_REFERENCE_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path().join(inside))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "{variable} is not set and {} holds no {prefix}* installation: run scripts/test.sh once (it installs one), or set {variable}",
            cache.display()
        )),
        _ => Err(format!(
            "{variable} is not set and {} holds several {prefix}* installations ({}): set {variable} to the one to use",
            cache.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn cache_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("TRACING_REFERENCE_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("tracing-reference")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/tracing-reference")))
}
