//! Helpers shared by every end-to-end test module.
//!
//! - where things are: [`workspace_root`], [`target_dir`], [`bin_path`], [`python`];
//! - what to run as a function: [`rust_function`], [`python_function`], [`node_function`] ([`RuntimeSpec`]);
//! - what to run as extensions: [`extensions_dir`] (a temp dir laid out like `/opt/extensions`);
//! - a second CloudWatch: [`Moto`] (`moto_server` on a free loopback port, killed by PID on drop, behind
//!   the CBOR-to-JSON proxy [`perfmon_sandbox::cloudwatch::CborProxy`] so that the current SDK can talk to it);
//! - small tools: [`free_port`], [`percentile_exact`], [`TempDir`], [`wait_until`].
//!
//! Binaries are not built here: `make test` builds them first (`cargo build --workspace --bins` and
//! `scripts/build-crate-examples.sh`); a missing one fails the test with the command to run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| tests_dir.to_path_buf())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (at run time, else at build time) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    let configured = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").filter(|v| !v.is_empty()).map(PathBuf::from));
    match configured {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The profile directory the running test binary was built into (`<target>/debug` normally), found from
/// the test executable's own path (`<target>/<profile>/deps/<test>-<hash>`).
fn own_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    deps.parent().map(Path::to_path_buf)
}

/// Directories searched for binaries, in order.
fn bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = own_profile_dir() {
        dirs.push(dir);
    }
    let debug = target_dir().join("debug");
    if !dirs.contains(&debug) {
        dirs.push(debug);
    }
    dirs
}

/// The path of a built executable: a workspace binary (`perfmon`, `perfmon-sandbox`, `sample-function`,
/// `noop-extension`) or one of the `lambda-extension` crate's README examples (`simple`, `logs`,
/// `telemetry`, built by `scripts/build-crate-examples.sh`). Panics with the command to run if missing.
pub fn bin_path(name: &str) -> PathBuf {
    let dirs = bin_dirs();
    for dir in &dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let how = match name {
        "simple" | "logs" | "telemetry" => "run `make build` (or `scripts/build-crate-examples.sh`)",
        _ => "run `cargo build --workspace --bins` (or `make build`)",
    };
    panic!("binary `{name}` not found in {dirs:?}: {how} before the tests");
}

/// The test virtualenv's Python (`<root>/.venv/bin/python`). Panics with the command to run if missing.
pub fn python() -> PathBuf {
    let path = workspace_root().join(".venv/bin/python");
    assert!(path.exists(), "{} not found: run `make venv` (creates .venv from requirements-test.txt)", path.display());
    path
}

/// A binary of the test virtualenv (`moto_server`, `cfn-lint`, ...).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(path.exists(), "{} not found: run `make venv` (creates .venv from requirements-test.txt)", path.display());
    path
}

/// How to start a function's runtime process; convert it to the sandbox's `RuntimeCommand`.
#[derive(Debug, Clone)]
pub struct RuntimeSpec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory (`None`: inherit).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables the runtime needs (on top of the Lambda ones the sandbox sets).
    pub env: Vec<(String, String)>,
}

impl RuntimeSpec {
    /// The sandbox's command for this runtime: program, arguments and working directory (the
    /// environment is the config's: see [`sandbox_config`]).
    pub fn command(&self) -> perfmon_sandbox::RuntimeCommand {
        let cmd = perfmon_sandbox::RuntimeCommand::new(&self.program).args(self.args.clone());
        match &self.cwd {
            Some(cwd) => cmd.cwd(cwd),
            None => cmd,
        }
    }
}

/// A sandbox config running `runtime` (128 MB, 3 s timeout) with the runtime's own environment.
pub fn sandbox_config(name: &str, runtime: &RuntimeSpec) -> perfmon_sandbox::SandboxConfig {
    let mut cfg =
        perfmon_sandbox::SandboxConfig::new(name, runtime.command()).memory_mb(128).timeout(Duration::from_secs(3));
    for (k, v) in &runtime.env {
        cfg = cfg.env(k, v);
    }
    cfg
}

/// The configuration of a CloudWatch client for a local endpoint (moto through its proxy, or the
/// embedded one): test credentials in us-east-1; callers add what their test needs (retries, an
/// interceptor) before `build`.
pub fn cloudwatch_config(url: &str) -> aws_sdk_cloudwatch::config::Builder {
    use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(url)
}

/// A CloudWatch client for a local endpoint, with the SDK's default retries ([`cloudwatch_config`]).
pub fn cloudwatch_client(url: &str) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::from_conf(cloudwatch_config(url).build())
}

/// (Sum, SampleCount) of metric `m` of function `name` in perfmon's default namespace over the last
/// and next hour, read with GetMetricStatistics.
pub async fn cloudwatch_sum_count(client: &aws_sdk_cloudwatch::Client, name: &str, m: &str) -> (f64, f64) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension as CwDim, Statistic};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let out = client
        .get_metric_statistics()
        .namespace(perfmon_protocol::contract::defaults::NAMESPACE)
        .metric_name(m)
        .dimensions(CwDim::builder().name("FunctionName").value(name).build())
        .start_time(DateTime::from_millis(now - 3_600_000))
        .end_time(DateTime::from_millis(now + 3_600_000))
        .period(60)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetMetricStatistics {m}: {}", aws_sdk_cloudwatch::error::DisplayErrorContext(&e)));
    out.datapoints()
        .iter()
        .fold((0.0, 0.0), |(s, c), p| (s + p.sum().unwrap_or(0.0), c + p.sample_count().unwrap_or(0.0)))
}

/// The Rust sample function (`fixtures/rust-function`, binary `sample-function`).
pub fn rust_function() -> RuntimeSpec {
    RuntimeSpec { program: bin_path("sample-function"), args: Vec::new(), cwd: None, env: Vec::new() }
}

/// The Python sample function: `.venv/bin/python -m awslambdaric handler.handler` in `fixtures/python`.
/// Note: awslambdaric 4.2.2 (like aws-lambda-ric 4.0.2) segfaults if `/next` answers without `Content-Type`.
pub fn python_function() -> RuntimeSpec {
    RuntimeSpec {
        program: python(),
        args: vec!["-m".into(), "awslambdaric".into(), "handler.handler".into()],
        cwd: Some(workspace_root().join("fixtures/python")),
        env: vec![("PYTHONUNBUFFERED".into(), "1".into()), ("PYTHONDONTWRITEBYTECODE".into(), "1".into())],
    }
}

/// The Node.js sample function: `node fixtures/node/node_modules/aws-lambda-ric/index.mjs` in `fixtures/node`
/// with `_HANDLER=handler.handler` and `LAMBDA_TASK_ROOT` (aws-lambda-ric reads those, not argv). Panics with
/// the command to run if `make node` has not installed the runtime client.
pub fn node_function() -> RuntimeSpec {
    let dir = workspace_root().join("fixtures/node");
    let ric = dir.join("node_modules/aws-lambda-ric/index.mjs");
    assert!(ric.is_file(), "{} not found: run `make node` (needs node, npm and cmake)", ric.display());
    RuntimeSpec {
        program: find_in_path("node").unwrap_or_else(|| panic!("`node` is not on PATH (the Node.js fixture needs it)")),
        args: vec![ric.display().to_string()],
        cwd: Some(dir.clone()),
        env: vec![
            ("_HANDLER".into(), "handler.handler".into()),
            ("LAMBDA_TASK_ROOT".into(), dir.display().to_string()),
        ],
    }
}

/// The first executable file named `name` in the directories of `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Whether the Node.js fixture is installed (`make node`; `make test` does it when `node` is on PATH).
pub fn node_available() -> bool {
    workspace_root().join("fixtures/node/node_modules/aws-lambda-ric/rapid-client.node").is_file()
}

/// A loopback port for a child process to bind: free for TCP and for UDP when returned, and never
/// returned twice in this process.
///
/// The port is taken below the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`,
/// Linux's default 32768-60999; ip(7)). A port in that range can be handed to any `bind(0)` or
/// outgoing `connect()` on the machine between the moment a test finds it free and the moment its
/// child binds it (the SDK clients and HTTP clients of the tests running at the same time make such
/// connections all the time); below it, only an explicit bind takes a port. The candidates come
/// from a counter that starts at an offset derived from the process id, so two test processes on
/// the machine start apart, and each is checked with a TCP and a UDP bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()))
        .filter(|low| *low > LOWEST + 1_000)
        .unwrap_or(32_768);
    let span = ephemeral_low - LOWEST;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOWEST}..{ephemeral_low}");
}

/// The exact nearest-rank percentile (`p` in 0..=100) of `values`: the smallest value such that at
/// least p % of the values are less than or equal to it. Panics on an empty slice or a bad `p`.
pub fn percentile_exact(values: &[f64], p: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of no values");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Polls `condition` every 10 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory removed (with its contents) on drop. Created under `<target>/tmp` (the directory Cargo
/// gives integration tests as `CARGO_TARGET_TMPDIR`), on the same file system as the binaries so they
/// can be hard-linked.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = target_dir().join("tmp");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A temp dir laid out like `/opt/extensions`: each `(name, executable)` is placed there under `name`
/// with mode 755 (hard-linked when possible, else copied: a hard link is never open for writing, so
/// exec cannot hit ETXTBSY). Removed on drop. Pass `&[]` for a function without extensions.
pub fn extensions_dir(extensions: &[(&str, &Path)]) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("extensions");
    for (name, source) in extensions {
        assert!(source.is_file(), "extension `{name}`: {} is not a file", source.display());
        let dest = dir.path().join(name);
        if std::fs::hard_link(source, &dest).is_err() {
            std::fs::copy(source, &dest)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), dest.display()));
        }
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", dest.display()));
    }
    dir
}

/// `moto_server` (from the test venv) on a free loopback port: a second, independent CloudWatch
/// endpoint (counts and sums only: it computes no percentiles). Killed by PID on drop.
///
/// moto cannot read RPC v2 CBOR, the only protocol of `aws-sdk-cloudwatch` ≥ 1.100.0, so a
/// [`CborProxy`](perfmon_sandbox::cloudwatch::CborProxy) runs in front of it (on its own thread and
/// runtime): [`Moto::endpoint_url`] is the proxy (CBOR translated to AWS JSON, anything else passed
/// through), [`Moto::moto_url`] moto itself.
#[derive(Debug)]
pub struct Moto {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    proxy: Option<ProxyThread>,
    _dir: TempDir,
}

/// The CBOR proxy on a thread of its own (usable from sync and async tests alike); stopped on drop.
#[derive(Debug)]
pub struct ProxyThread {
    url: String,
    /// Asks the proxy's thread for its counters; it answers on the channel sent along.
    ask: tokio::sync::mpsc::UnboundedSender<std::sync::mpsc::Sender<(u64, u64, u64)>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyThread {
    /// Starts a proxy to `upstream_port` on 127.0.0.1.
    pub fn start(upstream_port: u16) -> ProxyThread {
        let (url_tx, url_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ask_tx, mut ask_rx) = tokio::sync::mpsc::unbounded_channel::<std::sync::mpsc::Sender<(u64, u64, u64)>>();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = url_tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], upstream_port));
                let proxy = match perfmon_sandbox::cloudwatch::CborProxy::start(upstream).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = url_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = url_tx.send(Ok(proxy.endpoint_url()));
                let mut stop_rx = stop_rx;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        asked = ask_rx.recv() => match asked {
                            Some(reply) => {
                                let _ = reply.send((proxy.translated(), proxy.refused(), proxy.passed_through()));
                            }
                            None => break,
                        },
                    }
                }
            });
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| Err(format!("no answer: {e}")))
            .unwrap_or_else(|e| panic!("CBOR proxy did not start: {e}"));
        ProxyThread { url, ask: ask_tx, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn endpoint_url(&self) -> &str {
        &self.url
    }

    /// (CBOR requests translated, CBOR requests refused by the proxy, others passed through), read
    /// from the proxy now: the proxy counts a request before it answers it, so every request whose
    /// answer the caller has seen is counted.
    pub fn stats(&self) -> (u64, u64, u64) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.ask.send(tx).is_err() {
            panic!("the CBOR proxy's thread has stopped");
        }
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("the CBOR proxy did not answer: {e}"))
    }
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Moto {
    /// How long moto may take to answer its first request (it imports boto and its backends).
    pub const START_TIMEOUT: Duration = Duration::from_secs(30);

    /// Starts moto_server and waits until it answers HTTP. Panics (with its log) if it does not.
    pub fn start() -> Moto {
        let server = venv_bin("moto_server");
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = TempDir::new("moto");
            let log = dir.path().join("moto.log");
            let port = free_port();
            let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
            let log_err = log_file.try_clone().unwrap_or_else(|e| panic!("dup moto log: {e}"));
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", server.display()));
            let mut moto = Moto { child: Some(child), port, log, proxy: None, _dir: dir };
            match moto.wait_ready() {
                Ok(()) => {
                    moto.proxy = Some(ProxyThread::start(port));
                    return moto;
                }
                Err(e) => {
                    last_error = format!("{e}; log:\n{}", moto.log_text());
                    moto.stop();
                }
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Self::START_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("moto_server exited early ({status})"));
                }
            }
            if http_status(self.port, "/moto-api/").is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no answer on port {} within {:?}", self.port, Self::START_TIMEOUT))
    }

    /// The CloudWatch endpoint for clients: the CBOR proxy in front of moto (`http://127.0.0.1:PORT`).
    /// The Rust SDK's RPC v2 CBOR is translated; boto3's AWS JSON passes through unchanged.
    pub fn endpoint_url(&self) -> String {
        match &self.proxy {
            Some(p) => p.endpoint_url().to_owned(),
            None => self.moto_url(),
        }
    }

    /// moto itself, without the proxy (`http://127.0.0.1:PORT`): for boto3 and raw HTTP.
    pub fn moto_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's own port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The proxy in front of moto.
    pub fn proxy(&self) -> Option<&ProxyThread> {
        self.proxy.as_ref()
    }

    /// The environment a client (perfmon, boto3) needs to send to this moto (through the proxy).
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_CLOUDWATCH".into(), self.endpoint_url()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }

    /// What moto printed so far (its request log).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills moto now (SIGKILL to its PID) and reaps it; later requests to it fail. Idempotent.
    pub fn stop(&mut self) {
        // The proxy goes too: connections to the endpoint are refused, as for a dead CloudWatch.
        drop(self.proxy.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `GET path` to 127.0.0.1:port and returns the status code, if anything answered.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Runs `perfmon ARGS` as a tool ([`crate::harness::Tool`]: no Lambda environment, no region from the
/// caller's environment), asserts that it succeeded, and returns its stdout.
pub fn perfmon_tool(args: &[&str]) -> String {
    let out = crate::harness::Tool::new(args).output();
    assert!(out.status.success(), "perfmon {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("perfmon {}: stdout is not UTF-8: {e}", args.join(" ")))
}
