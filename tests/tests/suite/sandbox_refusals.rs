//! The sandbox refuses what Lambda refuses, with Lambda's status and `errorType` (docs/reference.md §16.1.2–16.1.4, §16.2.1):
//! a late subscription, buffering out of range, unknown / missing / malformed extension ids, a
//! second registration after Init, and more. A stdlib-only Python extension ("prober") makes the
//! calls from inside the sandbox and prints what it got; the sandbox records each refusal too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{bin_path, extensions_dir, rust_function};
use perfmon_protocol::telemetry::Status;
use perfmon_sandbox::{RuntimeCommand, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const PROBER: &str = r#"#!/usr/bin/env python3
import http.client, json, os, sys, uuid
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r.status, r, data
def probe(name, method, path, body=None, headers=None):
    status, _, data = call(method, path, body, headers)
    try:
        error_type = json.loads(data).get("errorType")
    except Exception:
        error_type = None
    print(json.dumps({"probe": name, "status": status, "errorType": error_type}), flush=True)
def sub(buffering=None, schema="2022-07-01", uri="http://sandbox.localdomain:4999/t"):
    body = {"schemaVersion": schema, "types": ["platform"], "destination": {"protocol": "HTTP", "URI": uri}}
    if buffering is not None:
        body["buffering"] = buffering
    return body
REG = "/2020-01-01/extension/register"
NEXT = "/2020-01-01/extension/event/next"
TEL = "/2022-07-01/telemetry"
LOGS = "/2020-08-15/logs"
_, r, _ = call("POST", REG, {"events": ["INVOKE", "SHUTDOWN"]}, {"Lambda-Extension-Name": "prober"})
me = {"Lambda-Extension-Identifier": r.getheader("Lambda-Extension-Identifier")}
# During Init.
probe("next-missing-id", "GET", NEXT)
probe("next-invalid-id", "GET", NEXT, headers={"Lambda-Extension-Identifier": "not-a-uuid"})
probe("next-unknown-id", "GET", NEXT, headers={"Lambda-Extension-Identifier": str(uuid.uuid4())})
probe("subscribe-unknown-id", "PUT", TEL, sub(), {"Lambda-Extension-Identifier": str(uuid.uuid4())})
probe("subscribe-max-items-10", "PUT", TEL, sub({"maxItems": 10}), me)
probe("subscribe-max-bytes-1", "PUT", TEL, sub({"maxBytes": 1}), me)
probe("subscribe-timeout-5", "PUT", TEL, sub({"timeoutMs": 5}), me)
probe("subscribe-timeout-30001", "PUT", TEL, sub({"timeoutMs": 30001}), me)
probe("subscribe-bad-schema", "PUT", TEL, sub(schema="2020-01-01"), me)
probe("subscribe-bad-host", "PUT", TEL, sub(uri="http://localhost:4999/t"), me)
probe("register-again", "POST", REG, {"events": ["INVOKE"]}, {"Lambda-Extension-Name": "prober"})
probe("register-internal-shutdown", "POST", REG, {"events": ["SHUTDOWN"]}, {"Lambda-Extension-Name": "no-such-file"})
probe("register-bad-event", "POST", REG, {"events": ["RESTORE"]}, {"Lambda-Extension-Name": "no-such-file"})
probe("register-no-name", "POST", REG, {"events": ["INVOKE"]})
probe("init-error-no-type", "POST", "/2020-01-01/extension/init/error", {}, me)
print("init probes done", flush=True)
# Lets "slowpoke" register: until then the runtime is not started, so registration stays open.
os.mkdir(os.path.join(os.path.dirname(sys.argv[0]), "probes-done.d"))
while True:
    _, _, data = call("GET", NEXT, headers=me)
    ev = json.loads(data)
    if ev["eventType"] == "SHUTDOWN":
        sys.exit(0)
    # After Init: everything is closed.
    probe("late-subscribe", "PUT", TEL, sub({"timeoutMs": 25}), me)
    probe("late-logs-subscribe", "PUT", LOGS, sub(schema="2021-03-18"), me)
    probe("late-register", "POST", REG, {"events": ["INVOKE", "SHUTDOWN"]}, {"Lambda-Extension-Name": "latecomer"})
    probe("late-init-error", "POST", "/2020-01-01/extension/init/error", {}, dict(me, **{"Lambda-Extension-Function-Error-Type": "Extension.Late"}))
"#;

/// Registers only once the prober is done with its Init probes (a directory appears), which keeps
/// extension registration open meanwhile: Lambda starts the runtime when every external extension
/// has registered, and the runtime's first `/next` closes registration.
const SLOWPOKE: &str = r#"#!/usr/bin/env python3
import http.client, json, os, sys, time
here = os.path.dirname(sys.argv[0])
deadline = time.time() + 8
while not os.path.isdir(os.path.join(here, "probes-done.d")) and time.time() < deadline:
    time.sleep(0.01)
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    r = c.getresponse()
    return r, r.read()
r, _ = call("POST", "/2020-01-01/extension/register", {"events": ["SHUTDOWN"]}, {"Lambda-Extension-Name": "slowpoke"})
me = {"Lambda-Extension-Identifier": r.getheader("Lambda-Extension-Identifier")}
call("GET", "/2020-01-01/extension/event/next", headers=me)
"#;

fn prober_dir() -> common::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    for (name, text) in [("prober", PROBER), ("slowpoke", SLOWPOKE)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn config(dir: &std::path::Path) -> SandboxConfig {
    SandboxConfig::new("refusals-fn", RuntimeCommand::new(rust_function().program))
        .extensions_dir(dir)
        .timeout(Duration::from_secs(5))
}

/// What the prober saw: probe name → (status, errorType).
fn probes(sb: &Sandbox) -> HashMap<String, (u64, Option<String>)> {
    sb.logs()
        .iter()
        .filter(|l| l.source == "extension:prober")
        .filter_map(|l| serde_json::from_str::<Value>(&l.line).ok())
        .map(|v| {
            let name = v["probe"].as_str().unwrap().to_owned();
            (name, (v["status"].as_u64().unwrap(), v["errorType"].as_str().map(str::to_owned)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_during_and_after_init() {
    let dir = prober_dir();
    let mut sb = Sandbox::start(config(dir.path())).await.unwrap();
    let out = sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success, "refused calls are not fatal: {out:?}\n{:?}", sb.logs());
    sb.shutdown().await.unwrap();

    let got = probes(&sb);
    let expect: &[(&str, u64, &str)] = &[
        ("next-missing-id", 403, "Extension.MissingExtensionIdentifier"),
        ("next-invalid-id", 403, "Extension.InvalidExtensionIdentifier"),
        ("next-unknown-id", 403, "Extension.UnknownExtensionIdentifier"),
        ("subscribe-unknown-id", 403, "Extension.UnknownExtensionIdentifier"),
        ("subscribe-max-items-10", 400, "ValidationError"),
        ("subscribe-max-bytes-1", 400, "ValidationError"),
        ("subscribe-timeout-5", 400, "ValidationError"),
        ("subscribe-timeout-30001", 400, "ValidationError"),
        ("subscribe-bad-schema", 400, "ValidationError"),
        ("subscribe-bad-host", 400, "ValidationError"),
        ("register-again", 403, "Extension.InvalidExtensionState"),
        ("register-internal-shutdown", 403, "Extension.InvalidEventType"),
        ("register-bad-event", 403, "Extension.InvalidEventType"),
        ("register-no-name", 403, "Extension.InvalidExtensionName"),
        ("init-error-no-type", 403, "Extension.MissingHeader"),
        ("late-subscribe", 403, "Telemetry.SubscriptionClosed"),
        ("late-logs-subscribe", 403, "Logs.SubscriptionClosed"),
        ("late-register", 403, "Extension.RegistrationClosed"),
        ("late-init-error", 403, "Extension.InvalidExtensionState"),
    ];
    for (name, status, error_type) in expect {
        assert_eq!(got.get(*name), Some(&(*status, Some((*error_type).to_owned()))), "probe {name}: {got:?}");
    }
    // The sandbox's own record of the same refusals, attributed to the caller when it is known.
    let refusals = sb.refusals();
    assert_eq!(refusals.len(), expect.len(), "{refusals:?}");
    let late = refusals.iter().find(|r| r.error_type == "Telemetry.SubscriptionClosed").unwrap();
    assert_eq!(
        (late.method.as_str(), late.path.as_str(), late.extension.as_deref()),
        ("PUT", "/2022-07-01/telemetry", Some("prober"))
    );
    // A refused subscription leaves no subscriber behind.
    assert!(sb.telemetry_batches("prober").is_empty());
}

/// Raw HTTP from the test itself, after Init: a second registration is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_after_init_from_outside() {
    use std::io::{Read, Write};
    let dir = extensions_dir(&[("noop", &bin_path("noop-extension"))]);
    let mut sb = Sandbox::start(config(dir.path())).await.unwrap();
    let init = sb.init().await.unwrap();
    assert_eq!(init.status, Status::Success);
    let api = sb.runtime_api();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&api).unwrap();
        let body = r#"{"events":["INVOKE"]}"#;
        write!(
            s,
            "POST /2020-01-01/extension/register HTTP/1.1\r\nHost: {api}\r\nLambda-Extension-Name: noop\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains(r#""errorType":"Extension.RegistrationClosed""#), "{answer}");
    // The environment is unaffected.
    let out = sb.invoke(json!({})).await.unwrap();
    assert_eq!(out.status, Status::Success);
    sb.shutdown().await.unwrap();
}
