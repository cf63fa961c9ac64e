//! Checks of the shared test helpers themselves (`tests/tests/common`).
#![allow(clippy::unwrap_used)]

use perfmon_tests::common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

#[test]
fn percentile_is_nearest_rank() {
    let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    assert_eq!(percentile_exact(&values, 50.0), 50.0);
    assert_eq!(percentile_exact(&values, 99.0), 99.0);
    assert_eq!(percentile_exact(&values, 99.5), 100.0);
    assert_eq!(percentile_exact(&values, 100.0), 100.0);
    assert_eq!(percentile_exact(&values, 0.0), 1.0);
    assert_eq!(percentile_exact(&[15.0, 20.0, 35.0, 40.0, 50.0], 30.0), 20.0);
    assert_eq!(percentile_exact(&[15.0, 20.0, 35.0, 40.0, 50.0], 40.0), 20.0);
    assert_eq!(percentile_exact(&[15.0, 20.0, 35.0, 40.0, 50.0], 50.0), 35.0);
    assert_eq!(percentile_exact(&[7.0], 99.0), 7.0);
}

#[test]
fn extensions_dir_holds_executables_under_their_names_and_is_removed() {
    let script = TempDir::new("src");
    let source = script.path().join("ext.sh");
    std::fs::write(&source, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = {
        let dir = extensions_dir(&[("perfmon", &source), ("other", &source)]);
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["other", "perfmon"]);
        let mode = std::fs::metadata(dir.path().join("perfmon")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let out = std::process::Command::new(dir.path().join("perfmon")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        dir.path().to_path_buf()
    };
    assert!(!path.exists(), "extensions dir not removed on drop");
}

#[test]
fn paths_point_into_the_workspace() {
    assert!(workspace_root().join("Cargo.toml").is_file());
    assert!(workspace_root().join("fixtures/python/handler.py").is_file());
    let spec = python_function();
    assert_eq!(spec.cwd.unwrap(), workspace_root().join("fixtures/python"));
    assert!(rust_function().program.ends_with("sample-function"));
}

#[test]
#[should_panic(expected = "cargo build --workspace --bins")]
fn missing_binary_says_how_to_build_it() {
    bin_path("no-such-binary");
}

#[test]
fn moto_answers_and_is_killed_by_stop() {
    let mut moto = Moto::start();
    let port = moto.port();
    assert_eq!(http_status(port, "/moto-api/"), Some(200));
    assert!(moto.endpoint_url().starts_with("http://127.0.0.1:"));
    moto.stop();
    assert!(wait_until(Duration::from_secs(5), || http_status(port, "/moto-api/").is_none()), "moto still answers");
}
