//! The deployment examples of README "Attach it": `layer-build/examples/template.yaml` (SAM),
//! `cdk/perfmon-stack.ts` (CDK, type-checked and synthesized when node is installed) and `main.tf` (Terraform).
//!
//! - The SAM template passes `cfn-lint` (`.venv`, `make venv`) as written, and again after SAM's own
//!   transform (aws-sam-translator, in `layer-build/.tools`, `make layer`) as the plain CloudFormation
//!   `sam deploy` submits: cfn-lint checks SAM resources only for property names and types, the transformed
//!   template for runtimes, architectures and IAM actions too. Broken copies must fail both, so the checks
//!   are known to bite.
//! - The IAM statement allows `cloudwatch:PutMetricData` only, on the namespace the function is given.
//! - The CDK stack passes `tsc --strict`, synthesizes with aws-cdk-lib (`layer-build/cdk-synth.sh`), and its
//!   template passes `cfn-lint` with the same IAM statement (node and the example's npm packages are
//!   needed: `make layer-check`, run by `make test` where node is installed, installs them).
//! - The Terraform example parses as HCL2 (python-hcl2) with the same layers, statement and namespace.
//! - README "Attach it" quotes the three files verbatim and lists every variable of the contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use perfmon_tests::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{venv_bin, workspace_root, TempDir};
use perfmon_protocol::contract::env;
use serde_json::{json, Value};

fn examples() -> PathBuf {
    workspace_root().join("layer-build/examples")
}

fn template() -> PathBuf {
    examples().join("template.yaml")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn cfn_lint(path: &Path) -> Output {
    run(Command::new(venv_bin("cfn-lint")).arg(path))
}

/// A copy of the template with `from` replaced by `to` (which must occur).
fn broken_copy(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let original = std::fs::read_to_string(template()).unwrap();
    assert!(original.contains(from), "template.yaml no longer contains {from:?}");
    let path = dir.join(name);
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    path
}

/// The layer-build/.tools python if `make layer` installed aws-sam-translator there.
fn sam_python() -> Option<PathBuf> {
    let python = workspace_root().join("layer-build/.tools/bin/python");
    let ok = python.is_file() && run(Command::new(&python).args(["-c", "import samtranslator"])).status.success();
    ok.then_some(python)
}

/// SAM transform of `path` into `<dir>/<stem>.json`; the transform's output on failure.
fn sam_transform(python: &Path, path: &Path, dir: &Path) -> Result<PathBuf, String> {
    let out = run(Command::new(python).arg(workspace_root().join("layer-build/sam_to_cfn.py")).arg(path));
    if !out.status.success() {
        return Err(text(&out));
    }
    let stem = path.file_stem().unwrap().to_string_lossy();
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, &out.stdout).unwrap();
    Ok(json_path)
}

#[test]
fn sam_template_passes_cfn_lint_and_a_broken_copy_does_not() {
    let out = cfn_lint(&template());
    assert!(out.status.success(), "cfn-lint {}:\n{}", template().display(), text(&out));

    let dir = TempDir::new("layer-template");
    let bad = broken_copy(dir.path(), "bad-property.yaml", "      Layers:\n", "      Layerz:\n");
    let out = cfn_lint(&bad);
    assert!(!out.status.success(), "cfn-lint accepted a misspelled Layers property");
    assert!(text(&out).contains("Layerz"), "{}", text(&out));
}

#[test]
fn sam_template_after_the_sam_transform_passes_cfn_lint() {
    let python =
        sam_python().expect("aws-sam-translator not in layer-build/.tools: run `make layer` (or `make layer-check`)");
    let dir = TempDir::new("layer-template-cfn");
    let cfn = sam_transform(&python, &template(), dir.path()).unwrap_or_else(|e| panic!("SAM transform: {e}"));
    let out = cfn_lint(&cfn);
    assert!(out.status.success(), "cfn-lint of the transformed template:\n{}", text(&out));
    let doc: Value = serde_json::from_slice(&std::fs::read(&cfn).unwrap()).unwrap();
    let types: Vec<&str> = doc["Resources"].as_object().unwrap().values().filter_map(|r| r["Type"].as_str()).collect();
    for want in ["AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::IAM::Role"] {
        assert!(types.contains(&want), "transformed template has no {want}: {types:?}");
    }

    // The deep checks bite: an unknown runtime passes SAM, but not cfn-lint of the result.
    let bad = broken_copy(dir.path(), "bad-runtime.yaml", "Runtime: python3.13", "Runtime: python2.1");
    let bad_cfn = sam_transform(&python, &bad, dir.path()).unwrap();
    let out = cfn_lint(&bad_cfn);
    assert!(!out.status.success() && text(&out).contains("python2.1"), "{}", text(&out));
    // A wrong architecture is refused by the transform itself.
    let bad = broken_copy(
        dir.path(),
        "bad-arch.yaml",
        "CompatibleArchitectures: [arm64]",
        "CompatibleArchitectures: [arm65]",
    );
    let err = sam_transform(&python, &bad, dir.path()).expect_err("SAM accepted arm65");
    assert!(err.contains("CompatibleArchitectures"), "{err}");
}

/// The template as JSON (cfn-lint's own YAML loader understands the short-form intrinsics like `!Ref`).
fn template_json() -> Value {
    let script = "import json, sys\nfrom cfnlint.decode import decode\n\
                  t, m = decode(sys.argv[1])\nassert not m, m\nprint(json.dumps(t, default=str))";
    let out = run(Command::new(venv_bin("python")).args(["-c", script]).arg(template()));
    assert!(out.status.success(), "decode template.yaml: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn iam_statement_is_put_metric_data_on_the_functions_namespace_only() {
    let t = template_json();
    let function = &t["Resources"]["Function"]["Properties"];
    let namespace = &function["Environment"]["Variables"][env::NAMESPACE];
    assert_eq!(namespace, &json!({"Ref": "PerfmonNamespace"}));
    let statements: Vec<Value> = function["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(statements.len(), 1, "one statement: {statements:?}");
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Action"], "cloudwatch:PutMetricData", "PutMetricData and nothing else");
    assert_eq!(s["Resource"], "*", "PutMetricData has no resource-level permissions");
    assert_eq!(
        s["Condition"],
        json!({"StringEquals": {"cloudwatch:namespace": namespace}}),
        "limited to the namespace perfmon is configured with"
    );
    assert_eq!(function["Environment"]["Variables"][EXEC_WRAPPER], WRAPPER, "the wrapper by default");
    for (key, _) in function["Environment"]["Variables"].as_object().unwrap() {
        assert!(
            contract_vars().contains(&key.as_str()) || key == EXEC_WRAPPER,
            "{key} is not a variable of the contract"
        );
    }
    // The layers are the zips `make layer` writes, one per architecture.
    for (resource, arch) in [("PerfmonLayerArm64", "arm64"), ("PerfmonLayerX8664", "x86_64")] {
        let props = &t["Resources"][resource]["Properties"];
        assert_eq!(props["CompatibleArchitectures"], json!([arch]));
        let uri = props["ContentUri"].as_str().unwrap();
        let want = workspace_root().join(format!("target/layer/perfmon-layer-{arch}.zip"));
        assert_eq!(lexical(&examples().join(uri)), want, "ContentUri {uri} (relative to the template)");
    }
}

/// `path` with `..` components resolved without touching the file system (the zip may not exist yet).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Lambda's variable for a wrapper script, and perfmon's (README "How the wrapper works").
const EXEC_WRAPPER: &str = "AWS_LAMBDA_EXEC_WRAPPER";
const WRAPPER: &str = "/opt/perfmon-wrapper";

fn contract_vars() -> Vec<&'static str> {
    vec![
        env::NAMESPACE,
        env::DIMENSIONS,
        env::SINK,
        env::FLUSH,
        env::FLUSH_INTERVAL_S,
        env::HTTP_PORT,
        env::STATSD_PORT,
        env::STATSD_SOCKET,
        env::STATSD_RCVBUF,
        env::TELEMETRY_PORT,
        env::PRICE_GB_S,
        env::LOG,
    ]
}

/// README's "## Attach it" section (up to the next `## `).
fn attach_it_section() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme.find("\n## Attach it\n").expect("README.md has no `## Attach it` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    rest[..end].to_owned()
}

#[test]
fn readme_attach_it_quotes_the_examples_and_lists_every_variable() {
    let section = attach_it_section();
    for file in ["template.yaml", "cdk/perfmon-stack.ts", "main.tf"] {
        let body = std::fs::read_to_string(examples().join(file)).unwrap();
        // template.yaml's leading comment is about running it from the repository; the README says that itself.
        let body = body.find("AWSTemplateFormatVersion").map_or(body.as_str(), |i| &body[i..]);
        assert!(
            section.contains(body.trim_end()),
            "README `## Attach it` does not quote layer-build/examples/{file} verbatim"
        );
    }
    for var in contract_vars().into_iter().chain([EXEC_WRAPPER, "PERFMON_NEXT_WRAPPER"]) {
        let row = format!("| `{var}` |");
        assert!(section.contains(&row), "README `## Attach it` has no table row for {var}");
    }
    for needle in [
        "publish-layer-version",
        "--compatible-architectures arm64",
        "--compatible-architectures x86_64",
        "update-function-configuration",
        "cloudwatch:namespace",
    ] {
        assert!(section.contains(needle), "README `## Attach it` lacks {needle}");
    }
}

/// Why the CDK example cannot be synthesized here, if it cannot.
fn cdk_unavailable() -> Option<String> {
    if common::find_in_path("node").is_none() {
        return Some("node is not installed".into());
    }
    if !workspace_root().join("layer-build/examples/cdk/node_modules/.bin/tsc").exists() {
        return Some("the CDK example's npm packages are missing: run `make layer-check`".into());
    }
    for arch in ["x86_64", "arm64"] {
        let zip = workspace_root().join(format!("target/layer/perfmon-layer-{arch}.zip"));
        if !zip.is_file() {
            return Some(format!("{} not built: run `make layer`", zip.display()));
        }
    }
    None
}

fn cdk_synth(out: &Path, stack: Option<&Path>) -> Output {
    let mut cmd = Command::new(workspace_root().join("layer-build/cdk-synth.sh"));
    cmd.arg(out);
    if let Some(stack) = stack {
        cmd.arg(stack);
    }
    run(&mut cmd)
}

#[test]
fn cdk_example_type_checks_synthesizes_and_passes_cfn_lint() {
    if let Some(why) = cdk_unavailable() {
        panic!("the CDK example cannot be synthesized: {why}");
    }
    let dir = TempDir::new("layer-cdk");
    let out = cdk_synth(&dir.path().join("ok"), None);
    assert!(out.status.success(), "cdk-synth.sh: {}", text(&out));
    let template = dir.path().join("ok/cdk.out/PerfmonExample.template.json");
    // W3005: the DependsOn CDK itself adds next to the role's GetAtt, not something the example wrote.
    let lint = run(Command::new(venv_bin("cfn-lint")).args(["--ignore-checks", "W3005", "--"]).arg(&template));
    assert!(lint.status.success(), "cfn-lint of the synthesized template:\n{}", text(&lint));

    let t: Value = serde_json::from_slice(&std::fs::read(&template).unwrap()).unwrap();
    let of_type = |ty: &str| -> Vec<(String, Value)> {
        t["Resources"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, r)| r["Type"] == ty)
            .map(|(k, r)| (k.clone(), r["Properties"].clone()))
            .collect()
    };
    let layers = of_type("AWS::Lambda::LayerVersion");
    let archs: Vec<&Value> = layers.iter().map(|(_, p)| &p["CompatibleArchitectures"]).collect();
    assert_eq!(archs, [&json!(["arm64"]), &json!(["x86_64"])], "one layer per architecture");
    let functions = of_type("AWS::Lambda::Function");
    assert_eq!(functions.len(), 1);
    let f = &functions[0].1;
    assert_eq!(f["Architectures"], json!(["arm64"]));
    let arm_layer = &layers.iter().find(|(_, p)| p["CompatibleArchitectures"] == json!(["arm64"])).unwrap().0;
    assert_eq!(f["Layers"], json!([{"Ref": arm_layer}]), "the function has the arm64 layer");
    let namespace = &f["Environment"]["Variables"][env::NAMESPACE];
    assert_eq!(f["Environment"]["Variables"][EXEC_WRAPPER], WRAPPER, "the wrapper by default");
    let statements: Vec<Value> = of_type("AWS::IAM::Policy")
        .iter()
        .flat_map(|(_, p)| p["PolicyDocument"]["Statement"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        statements,
        [
            json!({"Action": "cloudwatch:PutMetricData", "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
                "Effect": "Allow", "Resource": "*"})
        ],
        "PutMetricData on the function's namespace only"
    );

    // tsc --strict bites: a runtime that does not exist fails the type check.
    let original = std::fs::read_to_string(examples().join("cdk/perfmon-stack.ts")).unwrap();
    let broken = dir.path().join("broken-stack.ts");
    std::fs::write(&broken, original.replacen("NODEJS_22_X", "NODEJS_22_Y", 1)).unwrap();
    let out = cdk_synth(&dir.path().join("broken"), Some(&broken));
    assert!(!out.status.success() && text(&out).contains("NODEJS_22_Y"), "{}", text(&out));
}

/// `main.tf` parsed by python-hcl2 (from `layer-build/.tools`) as JSON, or the parser's error.
fn parse_hcl(python: &Path, path: &Path) -> Result<Value, String> {
    let script = "import hcl2, json, sys\nwith open(sys.argv[1]) as f:\n    print(json.dumps(hcl2.load(f)))";
    let out = run(Command::new(python).args(["-c", script]).arg(path));
    if !out.status.success() {
        return Err(text(&out));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn terraform_example_parses_as_hcl2_with_the_namespace_condition() {
    let python = workspace_root().join("layer-build/.tools/bin/python");
    assert!(
        python.is_file() && run(Command::new(&python).args(["-c", "import hcl2"])).status.success(),
        "python-hcl2 not in layer-build/.tools: run `make layer` (or `make layer-check`)"
    );
    let tf = examples().join("main.tf");
    let doc = parse_hcl(&python, &tf).unwrap_or_else(|e| panic!("main.tf does not parse: {e}"));
    // python-hcl2 keeps expressions as text: check the pieces that must agree.
    let resource = |ty: &str, name: &str| -> Value {
        doc["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|r| r.get(format!("\"{ty}\"")).and_then(|r| r.get(format!("\"{name}\""))).cloned())
            .unwrap_or_else(|| panic!("main.tf has no resource {ty}.{name}"))
    };
    assert_eq!(resource("aws_lambda_layer_version", "perfmon_arm64")["compatible_architectures"], json!(["\"arm64\""]));
    assert_eq!(
        resource("aws_lambda_layer_version", "perfmon_x86_64")["compatible_architectures"],
        json!(["\"x86_64\""])
    );
    let policy = resource("aws_iam_role_policy", "perfmon")["policy"].as_str().unwrap().to_owned();
    assert!(policy.contains("Action = \"cloudwatch:PutMetricData\""), "{policy}");
    assert!(policy.contains("StringEquals = {\"cloudwatch:namespace\" = local.perfmon_namespace}"), "{policy}");
    let function = resource("aws_lambda_function", "example");
    assert_eq!(function["architectures"], json!(["\"arm64\""]));
    assert_eq!(function["layers"], json!(["${aws_lambda_layer_version.perfmon_arm64.arn}"]));
    let vars = &function["environment"][0]["variables"];
    assert_eq!(vars[env::NAMESPACE], "${local.perfmon_namespace}", "{vars}");
    assert_eq!(vars[EXEC_WRAPPER], format!("\"{WRAPPER}\""), "the wrapper by default: {vars}");

    // The parser bites: a missing closing brace is an error.
    let dir = TempDir::new("layer-tf");
    let broken = dir.path().join("broken.tf");
    let original = std::fs::read_to_string(&tf).unwrap();
    std::fs::write(&broken, original.trim_end().trim_end_matches('}')).unwrap();
    assert!(parse_hcl(&python, &broken).is_err(), "python-hcl2 parsed a truncated main.tf");
}
