//! Tests of the fixtures themselves: each one must be the real thing before other tests
//! lean on it.

use tests::{mountns, prereq};

/// A tmpfs mounted inside the private namespace is visible there and never on the host.
#[test]
fn mountns_changes_are_invisible_to_the_host() {
    if !prereq::require_root("mountns_changes_are_invisible_to_the_host") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_owned();
    let before = mountns::mountinfo();

    let inside = mountns::in_private_mount_namespace(|| {
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount tmpfs: {e}"))?;
        let table = mountns::mountinfo();
        if !table.contains(&format!(" {} ", target.display())) {
            return Err(format!("tmpfs not in the namespace's mountinfo:\n{table}"));
        }
        Ok(())
    });

    assert_eq!(inside, Ok(()));
    assert_eq!(mount_points(&mountns::mountinfo()), mount_points(&before));
    assert!(!mountns::mountinfo().contains(&format!(" {} ", dir.path().display())));
}

/// Errors and panics of the closure come back to the parent as `Err`.
#[test]
fn mountns_reports_errors_and_panics() {
    if !prereq::require_root("mountns_reports_errors_and_panics") {
        return;
    }
    let err = mountns::in_private_mount_namespace(|| Err("it failed".into()));
    assert_eq!(err, Err("it failed".to_string()));
    let panicked = mountns::in_private_mount_namespace(|| panic!("boom"));
    assert!(panicked.unwrap_err().contains("boom"));
}

/// `private_command` runs its program with `/` private in a namespace of its own.
#[test]
fn mountns_private_command_has_no_shared_mounts() {
    if !prereq::require_root("mountns_private_command_has_no_shared_mounts")
        || !prereq::require_commands("mountns_private_command_has_no_shared_mounts", &["unshare"])
    {
        return;
    }
    let output = mountns::private_command("cat")
        .arg("/proc/self/mountinfo")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(!table.contains("shared:"), "{table}");
}

/// `bins::bin` points into the profile directory of this very test run.
#[test]
fn bins_profile_dir_is_the_parent_of_deps() {
    let dir = tests::bins::profile_dir();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(exe.parent().unwrap().parent().unwrap(), dir);
}

/// The mount points (field 5) of a mountinfo table, in order.
fn mount_points(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(String::from)
        .collect()
}
