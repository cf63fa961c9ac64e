//! The environment of the runtime and of the extensions (docs/reference.md §16.6): the runtime gets the full Lambda
//! set; extensions get the same minus the runtime-only variables and anything starting with `_`.

use perfmon_protocol::contract::env::{INITIALIZATION_TYPE, MAX_CONCURRENCY};

use crate::config::SandboxConfig;
use crate::mode::Mode;

/// Variables Lambda does not give extensions (docs list + RIE code); names starting with `_` are
/// excluded as well.
/// `AWS_LAMBDA_MAX_CONCURRENCY` is documented for the runtime only (Managed Instances).
pub(crate) const NOT_FOR_EXTENSIONS: [&str; 8] = [
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_MAX_CONCURRENCY",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "LAMBDA_RUNTIME_DIR",
    "LAMBDA_TASK_ROOT",
];

/// The function's environment: platform variables, dummy credentials, then the configured ones
/// (which override). `PATH` and `LANG` are taken from the host so runtimes can be found.
pub(crate) fn function_env(cfg: &SandboxConfig, runtime_api: &str, task_root: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    set("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()));
    set("LANG", "en_US.UTF-8".to_owned());
    set("TZ", ":UTC".to_owned());
    set("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned());
    set("AWS_REGION", cfg.region.clone());
    set("AWS_DEFAULT_REGION", cfg.region.clone());
    set("AWS_LAMBDA_FUNCTION_NAME", cfg.function_name.clone());
    set("AWS_LAMBDA_FUNCTION_VERSION", cfg.function_version.clone());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cfg.memory_mb.to_string());
    set(INITIALIZATION_TYPE, cfg.mode.init_type_str().to_owned());
    if let Mode::ManagedInstances { .. } = cfg.mode {
        set(MAX_CONCURRENCY, cfg.mode.workers().to_string());
    }
    set("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", cfg.function_name));
    set("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]00000000000000000000000000000000".to_owned());
    set("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned());
    set("LAMBDA_TASK_ROOT", task_root.to_owned());
    set("LAMBDA_RUNTIME_DIR", task_root.to_owned());
    set("_HANDLER", cfg.handler.clone());
    set("AWS_ACCESS_KEY_ID", "AKIASANDBOXEXAMPLE00".to_owned());
    set("AWS_SECRET_ACCESS_KEY", "sandbox/secret/key/example/000000000000".to_owned());
    set("AWS_SESSION_TOKEN", "sandbox-session-token".to_owned());
    for (k, v) in &cfg.env {
        set(k, v.clone());
    }
    env
}

/// What an extension gets: the function's environment minus docs/reference.md §16.6's exclusions.
pub(crate) fn extension_env(function_env: &[(String, String)]) -> Vec<(String, String)> {
    function_env
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !NOT_FOR_EXTENSIONS.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeCommand;

    #[test]
    fn extensions_do_not_get_runtime_only_variables() {
        let cfg = SandboxConfig::new("fn", RuntimeCommand::new("/bin/true"))
            .env("PERFMON_SINK", "emf")
            .env("_X_AMZN_TRACE_ID", "x")
            .env("AWS_REGION", "eu-west-1");
        let f = function_env(&cfg, "127.0.0.1:1", "/task");
        let get = |env: &[(String, String)], k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get(&f, "AWS_LAMBDA_LOG_GROUP_NAME").as_deref(), Some("/aws/lambda/fn"));
        assert_eq!(get(&f, "_HANDLER").as_deref(), Some("bootstrap"));
        assert_eq!(get(&f, "AWS_REGION").as_deref(), Some("eu-west-1"));
        assert_eq!(f.iter().filter(|(k, _)| k == "AWS_REGION").count(), 1);
        let e = extension_env(&f);
        for k in NOT_FOR_EXTENSIONS.iter().chain(["_HANDLER", "_X_AMZN_TRACE_ID"].iter()) {
            assert_eq!(get(&e, k), None, "{k}");
        }
        for k in ["AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "TZ"] {
            assert!(get(&e, k).is_some(), "{k}");
        }
        assert_eq!(get(&e, "PERFMON_SINK").as_deref(), Some("emf"));
        assert_eq!(get(&e, INITIALIZATION_TYPE).as_deref(), Some("on-demand"));
        assert_eq!(get(&f, MAX_CONCURRENCY), None);
    }

    #[test]
    fn managed_instances_env() {
        let cfg = SandboxConfig::new("fn", RuntimeCommand::new("/bin/true"))
            .mode(Mode::ManagedInstances { max_concurrency: 3 });
        let f = function_env(&cfg, "127.0.0.1:1", "/task");
        let get = |env: &[(String, String)], k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get(&f, INITIALIZATION_TYPE).as_deref(), Some("lambda-managed-instances"));
        assert_eq!(get(&f, MAX_CONCURRENCY).as_deref(), Some("3"));
        let e = extension_env(&f);
        assert_eq!(get(&e, INITIALIZATION_TYPE).as_deref(), Some("lambda-managed-instances"));
        assert_eq!(get(&e, MAX_CONCURRENCY), None);
    }
}
