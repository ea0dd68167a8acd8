//! The real make-private binary: arguments, errors and exit codes, and the
//! propagation it changes, each case inside a throwaway mount namespace
//! (`unshare --mount --propagation private`) so the host is never touched.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_make-private");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run make-private")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Root and util-linux's unshare and setpriv are needed for the namespace cases: by
/// hand they are skipped with a reason, in CI (CI=true) their absence is a failure.
fn namespaces_available(test: &str) -> bool {
    tests::prereq::require_root(test)
        && tests::prereq::require_commands(test, &["unshare", "setpriv"])
}

/// Runs a shell script in a new mount namespace whose mounts start private, with
/// `$MP` the binary and `$D` a fresh directory. The namespace, and every mount the
/// script makes, dies with the shell.
fn in_namespace(dir: &Path, script: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-euc", script])
        .env("MP", BIN)
        .env("D", dir)
        .output()
        .expect("run unshare")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

#[test]
fn help_explains_the_mechanism_and_the_classic_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("mount --make-rprivate"), "{help}");
    assert!(help.contains("MS_REC|MS_PRIVATE"), "{help}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = run(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_path_names_the_path() {
    let out = run(&["/no/such/place"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "make-private: cannot resolve '/no/such/place': no such file or directory\n"
    );
}

#[test]
fn a_directory_that_is_not_a_mount_point_says_which_mount_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a mount point"), "{err}");
    assert!(err.contains("inside the mount at '/"), "{err}");
}

#[test]
fn without_privilege_says_so() {
    if !namespaces_available("without_privilege_says_so") {
        return;
    }
    // setpriv drops to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "/"])
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("run as root"), "{err}");
}

#[test]
fn a_shared_tree_leaks_mounts_until_made_private() {
    if !namespaces_available("a_shared_tree_leaks_mounts_until_made_private") {
        return;
    }
    let before = tests::mountns::mountinfo();
    let dir = tempfile::tempdir().unwrap();
    let out = in_namespace(
        dir.path(),
        r#"
        mount -t tmpfs demo "$D"
        mount --make-shared "$D"
        mkdir "$D/a" "$D/b"
        mount -t tmpfs inner "$D/b"

        # As systemd leaves it: a mount made in a child namespace appears here too.
        unshare --mount --propagation unchanged mount -t tmpfs leak "$D/a"
        grep -q " $D/a " /proc/self/mountinfo || { echo "expected the leak to show" >&2; exit 1; }
        umount "$D/a"
        "$MP" --show "$D" | grep -q shared:

        "$MP" "$D"

        # Nothing at or below $D is in a peer group any more ...
        shown=$("$MP" --show "$D")
        if echo "$shown" | grep shared:; then echo "still shared" >&2; exit 1; fi
        test "$(echo "$shown" | wc -l)" -eq 2
        lines=$(awk -v d="$D" '$5 == d || index($5, d "/") == 1' /proc/self/mountinfo)
        if echo "$lines" | grep ' shared:'; then echo "mountinfo still lists shared" >&2; exit 1; fi
        # ... so the child's mount stays in the child.
        unshare --mount --propagation unchanged mount -t tmpfs leak "$D/a"
        if grep " $D/a " /proc/self/mountinfo; then echo "leaked after make-private" >&2; exit 1; fi
        "#,
    );
    assert_ok(&out);
    assert_eq!(
        tests::mountns::mountinfo(),
        before,
        "the host's mount table changed"
    );
}

#[test]
fn no_recursive_changes_only_the_mount_at_path() {
    if !namespaces_available("no_recursive_changes_only_the_mount_at_path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = in_namespace(
        dir.path(),
        r#"
        mount -t tmpfs demo "$D"
        mount --make-shared "$D"
        mkdir "$D/sub"
        mount -t tmpfs sub "$D/sub"
        mount --make-shared "$D/sub"
        "$MP" --no-recursive "$D"
        "$MP" --show "$D"
        "#,
    );
    assert_ok(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(lines[0].ends_with(" private"), "{shown}");
    assert!(lines[1].contains("/sub shared:"), "{shown}");
}

#[test]
fn defaults_to_the_whole_tree_from_root() {
    if !namespaces_available("defaults_to_the_whole_tree_from_root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = in_namespace(
        dir.path(),
        r#"
        mount --make-rshared /
        "$MP" --show | grep -q shared:
        "$MP"
        if "$MP" --show | grep shared:; then exit 1; fi
        if grep ' shared:' /proc/self/mountinfo; then exit 1; fi
        "#,
    );
    assert_ok(&out);
}

#[test]
fn show_agrees_with_findmnt() {
    if !namespaces_available("show_agrees_with_findmnt") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = in_namespace(
        dir.path(),
        r#"
        mount -t tmpfs demo "$D"
        mount --make-shared "$D"
        for m in private shared unbindable; do
            mkdir "$D/$m"
            mount -t tmpfs "$m" "$D/$m"
        done
        mount --make-private "$D/private"
        mount --make-unbindable "$D/unbindable"
        # A slave needs a master: bind the shared mount (joining its peer group), then demote it.
        mkdir "$D/slave"
        mount --bind "$D/shared" "$D/slave"
        mount --make-slave "$D/slave"
        mkdir "$D/with space"
        mount -t tmpfs spaced "$D/with space"
        echo ours
        "$MP" --show "$D"
        echo findmnt
        findmnt --raw --noheadings --output TARGET,PROPAGATION --submounts --mountpoint "$D"
        "#,
    );
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let (ours, theirs) = text
        .trim_start_matches("ours\n")
        .split_once("findmnt\n")
        .expect("both listings");
    // findmnt names the kind only (shared, slave) and says "private,slave" for a
    // slave that shares nothing itself; we give the peer group instead.
    let mut ours: Vec<String> = ours
        .lines()
        .map(|line| {
            let (point, propagation) = line.rsplit_once(' ').expect("two fields");
            let kinds: Vec<&str> = propagation
                .split(',')
                .map(|p| match p.split(':').next() {
                    Some("master") => "slave",
                    Some(kind) => kind,
                    None => p,
                })
                .collect();
            format!("{} {}", point.replace("\\040", " "), kinds.join(","))
        })
        .collect();
    let mut theirs: Vec<String> = theirs
        .lines()
        .map(|line| line.replace("\\x20", " ").replace("private,", ""))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 6, "{ours:?}");
}

#[test]
fn explain_prints_the_call_and_the_classic_command() {
    if !namespaces_available("explain_prints_the_call_and_the_classic_command") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = in_namespace(
        dir.path(),
        r#"mount -t tmpfs demo "$D"; "$MP" --explain "$D""#,
    );
    assert_ok(&out);
    let err = stderr(&out);
    let expected = format!(
        "mount(NULL, \"{0}\", NULL, MS_REC|MS_PRIVATE, NULL)   # like: mount --make-rprivate {0}",
        dir.path().canonicalize().unwrap().display()
    );
    assert!(err.contains(&expected), "{err}");
}
