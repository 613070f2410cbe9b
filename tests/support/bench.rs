//! Benchmark figures, merged into `target/bench/results.json`.

use std::path::PathBuf;

use crate::repo_root;

/// One benchmark figure, as written to `target/bench/results.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub name: String,
    pub unit: String,
    pub value: f64,
    /// Figures measured beside this one, in the same unit (name → value).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub baselines: std::collections::BTreeMap<String, f64>,
}

impl BenchResult {
    /// A figure and the figures measured beside it (name → value, same unit).
    pub fn new(name: &str, unit: &str, value: f64, baselines: &[(&str, f64)]) -> Self {
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            value,
            baselines: baselines
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }
}

/// Which benchmarks to run: those whose name contains a word given on the command line
/// (`cargo bench ... -- budget`), or all of them.
pub fn bench_filter() -> impl Fn(&str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    move |name| only.is_empty() || only.iter().any(|word| name.contains(word))
}

/// Merges results into `target/bench/results.json`, replacing entries of the same name, so
/// every benchmark of the project adds to one file that can be tracked from run to run.
pub fn record_bench(results: &[BenchResult]) -> anyhow::Result<PathBuf> {
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("results.json");
    let mut all: Vec<BenchResult> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|raw| serde_json::from_str(&raw).ok())
        .unwrap_or_default();
    all.retain(|old| results.iter().all(|new| new.name != old.name));
    all.extend(results.iter().cloned());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n")?;
    Ok(path)
}

/// Resets the process's peak resident set (Linux: `clear_refs` 5), so the next reading of
/// `VmHWM` is the peak of what runs in between.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set in MiB since the last reset.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
