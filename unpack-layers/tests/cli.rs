//! The real binary: arguments, help, errors and exit codes.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unpack-layers"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_explains_the_mechanism_and_the_classic_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("umoci unpack"), "{help}");
    assert!(help.contains("RESOLVE_IN_ROOT"), "{help}");
    for flag in [
        "--image",
        "--rootfs-only",
        "--platform",
        "--max-size",
        "--max-ratio",
        "--explain",
        "--quiet",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["bundle"],
        &["--image", "x"],
        &["--image", "x", "b", "--max-size", "lots"],
        &["--image", "x", "b", "--max-size", "12Q"],
        &["--image", "x", "b", "--max-ratio", "-1"],
        &["--image", "x", "b", "--platform", "linux"],
        &["--image", "x", "b", "--bogus"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[test]
fn missing_layout_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/nowhere:latest", dir.path().display());
    let bundle = dir.path().join("bundle");
    let out = run(&["--image", &image, bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("unpack-layers: cannot open image '"),
        "{err}"
    );
    assert!(err.contains("is not an OCI image layout"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !bundle.exists(),
        "nothing is created before the image is found"
    );
}

#[test]
fn malformed_index_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("index.json"), "{not json").unwrap();
    let image = format!("{}:latest", dir.path().display());
    let out = run(&["--image", &image, dir.path().join("b").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("index.json' is not a valid image index"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hostile_digest_in_index_never_becomes_a_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":"sha256:../../../../etc/passwd","size":10,
        "annotations":{"org.opencontainers.image.ref.name":"latest"}}]}"#;
    std::fs::write(dir.path().join("index.json"), index).unwrap();
    let image = format!("{}:latest", dir.path().display());
    let out = run(&["--image", &image, dir.path().join("b").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(!dir.path().join("b").exists());
}
