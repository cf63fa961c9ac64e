//! One builder for "a sandbox with perfmon as its extension, sending to a CloudWatch": [`PerfmonSandbox`].
//!
//! Every end-to-end file used to lay this out by hand, and the copies drifted (one turned the OTLP
//! listener off, another left it on its fixed default port, where two tests running at once collide).
//! The builder's defaults are written once, in [`PerfmonSandbox::DEFAULT_ENV`] and
//! [`PerfmonSandbox::new`], and a test states only what it changes.
//!
//! ```text
//! let cw = CloudWatch::start().await?;                       // or common::Moto::start()
//! let mut run = PerfmonSandbox::new("fn", &rust_function())
//!     .cloudwatch(&cw.endpoint_url())
//!     .env("PERFMON_FLUSH", "end")
//!     .start()
//!     .await;
//! run.sb.invoke(json!({})).await?;
//! ```

use std::path::PathBuf;
use std::time::Duration;

use perfmon_sandbox::{Sandbox, SandboxConfig};

use crate::common::{bin_path, extensions_dir, free_port, RuntimeSpec, TempDir};

/// A sandbox whose extension is perfmon (and optionally others), being configured.
#[derive(Debug, Clone)]
pub struct PerfmonSandbox {
    name: String,
    runtime: RuntimeSpec,
    perfmon: PathBuf,
    others: Vec<(String, PathBuf)>,
    memory_mb: u64,
    timeout: Duration,
    http_port: u16,
    env: Vec<(String, String)>,
}

/// A started sandbox with perfmon: the sandbox, perfmon's custom-metric HTTP port, and the
/// extensions directory (removed when this is dropped).
pub struct PerfmonRun {
    pub sb: Sandbox,
    /// `PERFMON_HTTP_PORT` (POST /v1/metrics, GET /v1/health).
    pub http_port: u16,
    /// The extensions directory: keep it while the sandbox runs (the sandbox starts the extensions
    /// from it at Init, on the first invoke). Destructure with `extensions: _extensions`, not `..`,
    /// which drops (removes) it at once.
    pub extensions: TempDir,
}

impl PerfmonSandbox {
    /// perfmon's environment in every test unless the test sets the variable itself:
    /// - `PERFMON_TELEMETRY_PORT=0`: perfmon picks a free port and tells the Telemetry API;
    /// - `PERFMON_STATSD_PORT=0` and `PERFMON_OTLP_PORT=0`: those listeners are off (their defaults,
    ///   8125 and 4318, are fixed ports that tests running at once would share);
    /// - `PERFMON_LOG=info`: the start-up and shutdown lines some tests read;
    /// - `PERFMON_SPARSE_FLUSH=end`: PutMetricData at the end of sparse invokes as well (the default
    ///   without the wrapper writes them as EMF lines, which the embedded CloudWatch does not read),
    ///   so every invoke's data is stored;
    /// - `PERFMON_RUNTIME_PROXY_PORT=0`: the Runtime API proxy is off (its default, 9009, is a fixed
    ///   port too; only a function run through `/opt/perfmon-wrapper` uses it);
    /// - test credentials (moto and the embedded CloudWatch accept any; the region is the sandbox's,
    ///   us-east-1).
    ///
    /// `PERFMON_HTTP_PORT` is a port of [`free_port`] (see [`PerfmonSandbox::http_port`]).
    pub const DEFAULT_ENV: &'static [(&'static str, &'static str)] = &[
        ("PERFMON_TELEMETRY_PORT", "0"),
        ("PERFMON_STATSD_PORT", "0"),
        ("PERFMON_OTLP_PORT", "0"),
        ("PERFMON_LOG", "info"),
        ("PERFMON_SPARSE_FLUSH", "end"),
        ("PERFMON_RUNTIME_PROXY_PORT", "0"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];

    /// Function `name` run by `runtime`, 128 MB, 3 s timeout, perfmon (the workspace's debug build,
    /// or `$PERFMON_BIN`) as its only extension, with [`Self::DEFAULT_ENV`].
    pub fn new(name: &str, runtime: &RuntimeSpec) -> PerfmonSandbox {
        PerfmonSandbox {
            name: name.to_owned(),
            runtime: runtime.clone(),
            perfmon: perfmon_bin(),
            others: Vec::new(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            http_port: free_port(),
            env: Vec::new(),
        }
    }

    /// The function's memory size (the sandbox's `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`).
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = mb;
        self
    }

    /// The function's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Another extension beside perfmon, placed in the extensions directory under `name`.
    pub fn extension(mut self, name: &str, executable: PathBuf) -> Self {
        self.others.push((name.to_owned(), executable));
        self
    }

    /// A function environment variable (perfmon gets it too); replaces a default of the same name.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// [`Self::env`] for each pair.
    pub fn envs<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// perfmon sends to the CloudWatch at `endpoint_url` (`AWS_ENDPOINT_URL_CLOUDWATCH`): the embedded
    /// one's or moto's (through its CBOR proxy: [`crate::common::Moto::endpoint_url`]).
    pub fn cloudwatch(self, endpoint_url: &str) -> Self {
        self.env("AWS_ENDPOINT_URL_CLOUDWATCH", endpoint_url)
    }

    /// perfmon's custom-metric HTTP port (`PERFMON_HTTP_PORT`), unless the test set the variable.
    pub fn http_port(&self) -> u16 {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "PERFMON_HTTP_PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(self.http_port)
    }

    /// The sandbox configuration and its extensions directory (keep it alive while the sandbox runs),
    /// for a test that starts the sandbox itself or tunes what the builder does not offer. The
    /// environment, in order (a later value of a name wins): the defaults, the runtime's own, the test's.
    pub fn config(self) -> (SandboxConfig, TempDir) {
        let http_port = self.http_port();
        let mut list: Vec<(&str, &std::path::Path)> = vec![("perfmon", self.perfmon.as_path())];
        list.extend(self.others.iter().map(|(n, p)| (n.as_str(), p.as_path())));
        let dir = extensions_dir(&list);
        let mut cfg = SandboxConfig::new(&self.name, self.runtime.command())
            .memory_mb(self.memory_mb)
            .timeout(self.timeout)
            .extensions_dir(dir.path());
        let overridden = |key: &str| self.env.iter().any(|(k, _)| k == key);
        for (k, v) in Self::DEFAULT_ENV {
            if !overridden(k) {
                cfg = cfg.env(*k, *v);
            }
        }
        if !overridden("PERFMON_HTTP_PORT") {
            cfg = cfg.env("PERFMON_HTTP_PORT", http_port.to_string());
        }
        for (k, v) in self.runtime.env.iter().chain(&self.env) {
            cfg = cfg.env(k, v);
        }
        (cfg, dir)
    }

    /// Starts the sandbox (nothing runs until its first invoke or `init`, as in Lambda).
    pub async fn start(self) -> PerfmonRun {
        self.start_with(|c| c).await
    }

    /// [`Self::start`] with `tune` applied to the configuration first (mode, resource limits, ...).
    pub async fn start_with(self, tune: impl FnOnce(SandboxConfig) -> SandboxConfig) -> PerfmonRun {
        let http_port = self.http_port();
        let (cfg, dir) = self.config();
        let sb = Sandbox::start(tune(cfg)).await.unwrap_or_else(|e| panic!("sandbox did not start: {e}"));
        PerfmonRun { sb, http_port, extensions: dir }
    }
}

/// The perfmon executable under test: `$PERFMON_BIN` if set (e.g. a release or layer build, to
/// measure it), else the workspace's debug build.
pub fn perfmon_bin() -> PathBuf {
    std::env::var_os("PERFMON_BIN").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| bin_path("perfmon"))
}

/// `perfmon ARGS` run as a CLI tool, as a user runs it against a test CloudWatch: no Lambda
/// environment, no CloudWatch endpoint, region or price from the caller's environment, test
/// credentials, no instance-metadata lookups. Set more with [`Tool::env`].
#[derive(Debug, Clone)]
pub struct Tool {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Tool {
    /// `perfmon` with `args`.
    pub fn new<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Tool {
        Tool { args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(), env: Vec::new() }
    }

    /// An environment variable of the tool's process (on top of the clean environment above).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs it to the end (blocking) and returns its output, whatever its exit code.
    pub fn output(&self) -> std::process::Output {
        let mut cmd = std::process::Command::new(bin_path("perfmon"));
        cmd.args(&self.args)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL_CLOUDWATCH")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove("PERFMON_PRICE_GB_S")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap_or_else(|e| panic!("perfmon {}: {e}", self.args.join(" ")))
    }

    /// [`Self::output`] on a blocking thread, for async tests.
    pub async fn run(self) -> std::process::Output {
        tokio::task::spawn_blocking(move || self.output()).await.unwrap_or_else(|e| panic!("perfmon tool thread: {e}"))
    }
}
