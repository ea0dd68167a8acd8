//! The command line: help, usage errors (exit 2), and input refused before
//! any network request (exit 1, one line naming the bad part).

use std::process::{Command, Output};

fn fetch_image(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fetch-image"))
        .args(args)
        .env("HOME", std::env::temp_dir())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run fetch-image")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_the_mechanism_and_the_classic_command() {
    let output = fetch_image(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("skopeo copy docker://"), "{help}");
    for flag in [
        "--platform",
        "--creds",
        "--authfile",
        "--no-creds",
        "--tls-verify",
        "--cert-dir",
        "--jobs",
        "--retry-times",
        "--quiet",
        "--explain",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["alpine"],
        &["--jobs", "0", "alpine", "oci:x"],
        &["--tls-verify=maybe", "alpine", "oci:x"],
        &["--creds", "a:b", "--no-creds", "alpine", "oci:x"],
    ] {
        let output = fetch_image(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:t", dir.path().join("layout").display());
    let cases: &[(&[&str], &str)] = &[
        (&["docker.io/Library/alpine"], "invalid image reference 'docker.io/Library/alpine': repository name 'Library/alpine' must be lowercase"),
        (&["alpine:"], "tag ''"),
        (&["alpine@sha256:../../x"], "digest 'sha256:../../x' is not sha256:"),
        (&["oci:some/dir:tag"], "transport 'oci:' is not supported as a source"),
        (&["--platform", "linux", "alpine"], "invalid platform 'linux'"),
        (&["--creds", ":pw", "alpine"], "invalid --creds"),
        (&["--authfile", "/nonexistent/auth.json", "alpine"], "cannot read auth file '/nonexistent/auth.json'"),
    ];
    for (args, needle) in cases {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&dest);
        let output = fetch_image(&all);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("fetch-image: "), "{err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(output.stdout.is_empty());
    }
    assert!(!dir.path().join("layout").exists(), "nothing created");

    let output = fetch_image(&["alpine", "oci::tag"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("invalid destination 'oci::tag': no directory"));
}

#[test]
fn unreachable_registry_is_one_clear_line() {
    // Port 9 (discard) on loopback is closed on any sane test machine.
    let dir = tempfile::tempdir().unwrap();
    let output = fetch_image(&[
        "--retry-times",
        "0",
        "127.0.0.1:9/a/b:c",
        &dir.path().join("layout").display().to_string(),
    ]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("http://127.0.0.1:9/v2/"), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
