//! What a sandbox runs and how: the function (its runtime command, memory, timeout, environment),
//! the extensions directory, and the knobs of the emulation (freezing, shutdown split, billing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::mode::Mode;

/// Default shutdown window with at least one external extension (docs/reference.md §16.1.8).
pub const SHUTDOWN_WINDOW_EXTERNAL: Duration = Duration::from_millis(2000);
/// Default shutdown window with internal extensions only (docs/reference.md §16.1.8).
pub const SHUTDOWN_WINDOW_INTERNAL: Duration = Duration::from_millis(500);
/// Default share of the window reserved for the runtime's graceful exit after SIGTERM (docs/reference.md §16.1.8, docs figure).
pub const RUNTIME_SHUTDOWN_SHARE: Duration = Duration::from_millis(300);
/// Default Init limit of on-demand functions (docs/reference.md §16.1.6).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Account id reported in `accountId` and ARNs.
pub const ACCOUNT_ID: &str = "123456789012";

/// The command that starts the function's runtime (a runtime interface client and the handler).
#[derive(Debug, Clone)]
pub struct RuntimeCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: Option<PathBuf>,
}

impl RuntimeCommand {
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self { program: program.as_ref().to_path_buf(), args: Vec::new(), cwd: None }
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Working directory of the runtime (`LAMBDA_TASK_ROOT`); default: the sandbox's own.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }
}

/// Configuration of one sandbox (one execution environment of one function).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub(crate) function_name: String,
    pub(crate) function_version: String,
    pub(crate) handler: String,
    pub(crate) region: String,
    pub(crate) runtime: RuntimeCommand,
    pub(crate) memory_mb: u64,
    pub(crate) timeout: Duration,
    pub(crate) extensions_dir: Option<PathBuf>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) freeze_with_sigstop: bool,
    pub(crate) init_timeout: Duration,
    pub(crate) shutdown_window: Option<Duration>,
    pub(crate) runtime_shutdown: Duration,
    pub(crate) bill_init: bool,
    pub(crate) tracing: bool,
    pub(crate) delivery_give_up: Duration,
    pub(crate) mode: Mode,
    pub(crate) first_invoke_delay: Duration,
    pub(crate) streaming: bool,
    pub(crate) tenants: Vec<String>,
    pub(crate) resource_limits: bool,
    pub(crate) ephemeral_storage_mb: u64,
}

impl SandboxConfig {
    /// A function named `function_name` whose runtime is started by `runtime`. Defaults: 128 MB,
    /// 3 s timeout, no extensions, `us-east-1`, processes frozen with SIGSTOP between invokes.
    pub fn new(function_name: impl Into<String>, runtime: RuntimeCommand) -> Self {
        Self {
            function_name: function_name.into(),
            function_version: "$LATEST".to_owned(),
            handler: "bootstrap".to_owned(),
            region: "us-east-1".to_owned(),
            runtime,
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            extensions_dir: None,
            env: Vec::new(),
            freeze_with_sigstop: true,
            init_timeout: INIT_TIMEOUT,
            shutdown_window: None,
            runtime_shutdown: RUNTIME_SHUTDOWN_SHARE,
            bill_init: true,
            tracing: true,
            delivery_give_up: Duration::from_secs(5),
            mode: Mode::OnDemand,
            first_invoke_delay: Duration::ZERO,
            streaming: false,
            tenants: Vec::new(),
            resource_limits: false,
            ephemeral_storage_mb: crate::resources::EPHEMERAL_DEFAULT_MB,
        }
    }
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = mb;
        self
    }
    /// The function timeout: limits the whole invoke phase, runtime and extensions (docs/reference.md §16.1.6).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Every non-directory entry of `dir` is started as an external extension (like `/opt/extensions`).
    pub fn extensions_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.extensions_dir = Some(dir.as_ref().to_path_buf());
        self
    }
    /// A function environment variable; extensions get it too unless docs/reference.md §16.6 excludes it.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// `_HANDLER` and the `handler` of the register response.
    pub fn handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = handler.into();
        self
    }
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
    /// Freeze = SIGSTOP every process when all are parked in `/next` (default on). Telemetry delivery
    /// pauses while frozen either way.
    pub fn freeze_with_sigstop(mut self, on: bool) -> Self {
        self.freeze_with_sigstop = on;
        self
    }
    pub fn init_timeout(mut self, limit: Duration) -> Self {
        self.init_timeout = limit;
        self
    }
    /// Total shutdown window; default 2 000 ms with external extensions, 500 ms with internal ones only.
    pub fn shutdown_window(mut self, window: Duration) -> Self {
        self.shutdown_window = Some(window);
        self
    }
    /// How long the runtime gets after SIGTERM before SHUTDOWN goes to the extensions (default 300 ms).
    pub fn runtime_shutdown(mut self, grace: Duration) -> Self {
        self.runtime_shutdown = grace;
        self
    }
    /// Whether `billedDurationMs` includes the init duration on cold starts (default true, docs/reference.md §16.2.6).
    pub fn bill_init(mut self, on: bool) -> Self {
        self.bill_init = on;
        self
    }
    /// Whether invokes carry an X-Ray trace header (`Sampled=0`, as Lambda always sets one).
    pub fn tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }
    /// How long (unfrozen time) a telemetry batch is retried while its listener refuses connections
    /// before it is dropped and a `platform.logsDropped` is queued (default 5 s).
    pub fn delivery_give_up(mut self, after: Duration) -> Self {
        self.delivery_give_up = after;
        self
    }
    /// The Lambda mode (default [`Mode::OnDemand`]). See docs/lambda-modes.md for what each
    /// mode emits and which source each behaviour follows.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Time between the end of Init and the dispatch of the first invoke of an environment (default
    /// 0): emulates a proactive init (Lambda inits ahead, the first invoke comes later). The
    /// environment stays frozen meanwhile (not on Managed Instances, which never freeze).
    pub fn first_invoke_delay(mut self, delay: Duration) -> Self {
        self.first_invoke_delay = delay;
        self
    }
    /// Marks the function as a response-streaming one: the runtime may post its response with
    /// `Lambda-Runtime-Function-Response-Mode: streaming` and a chunked body of up to 20 MB.
    pub fn streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }
    /// Tenant isolation (on-demand only): invoke i gets tenant `tenants[i % len]` (unless
    /// [`crate::Sandbox::invoke_for_tenant`] names one). An environment serves one tenant: an
    /// invoke for another tenant shuts it down (reason `spindown`) and inits a new one.
    pub fn tenants<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tenants = tenants.into_iter().map(Into::into).collect();
        self
    }
    /// Lambda's resource model (see `resources`): a CPU quota of `memory / 1 769 MB` of one CPU,
    /// one memory limit of the memory size for the function and its extensions (past it:
    /// `Runtime.OutOfMemory`), and a private tmpfs `/tmp` of [`Self::ephemeral_storage_mb`].
    /// Off by default in the library, so that tests about the protocol keep the machine's full
    /// speed; the `perfmon-sandbox run` command turns it on unless `--no-resource-limits`.
    /// Parts the machine cannot apply are left out and named in [`crate::Sandbox::resources`].
    pub fn resource_limits(mut self, on: bool) -> Self {
        self.resource_limits = on;
        self
    }
    /// Size of the private `/tmp` (MB) with [`Self::resource_limits`]: Lambda's ephemeral storage,
    /// 512 (the default) to 10 240; values outside are clamped to that range.
    pub fn ephemeral_storage_mb(mut self, mb: u64) -> Self {
        self.ephemeral_storage_mb =
            mb.clamp(crate::resources::EPHEMERAL_DEFAULT_MB, crate::resources::EPHEMERAL_MAX_MB);
        self
    }
    pub fn get_mode(&self) -> &Mode {
        &self.mode
    }
    pub fn function_name(&self) -> &str {
        &self.function_name
    }
    pub(crate) fn function_arn(&self) -> String {
        format!("arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}", self.region, self.function_name)
    }
}
