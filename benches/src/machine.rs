//! The machine description and the artefact sizes (binary, and zipped as a layer would ship it).

use std::path::Path;
use std::process::Command;

use crate::results::Machine;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn command(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The load average of the last minute.
pub fn load_1min() -> f64 {
    read("/proc/loadavg").split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0)
}

pub fn describe(load_before: String, note: String) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease"),
        rustc: command("rustc", &["--version"]),
        load_before,
        load_after: load_average(),
        git_commit: command("git", &["rev-parse", "--short", "HEAD"]),
        note,
    }
}

/// Size in bytes of `binary`, and of a zip holding it as `extensions/<name>` (what a layer holds),
/// made with the `zip` tool at its default level. `None` for the zip if `zip` is missing.
pub fn sizes(binary: &Path, name: &str, work: &Path) -> std::io::Result<(u64, Option<u64>)> {
    let size = std::fs::metadata(binary)?.len();
    let dir = work.join(format!("zip-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("extensions"))?;
    std::fs::copy(binary, dir.join("extensions").join(name))?;
    let status = Command::new("zip").current_dir(&dir).args(["-q", "-r", "layer.zip", "extensions"]).status();
    let zip = match status {
        Ok(s) if s.success() => Some(std::fs::metadata(dir.join("layer.zip"))?.len()),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok((size, zip))
}
