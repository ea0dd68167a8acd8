//! The whole chain for real, as the demo runs it, and every step swapped for its peer:
//!
//! ```sh
//! fetch-image docker://HOST/busybox:TAG oci:layout:TAG     # or: skopeo copy
//! unpack-layers --image layout:TAG bundle                  # or: umoci unpack
//! btrfs-snap create images/busybox                         # or: btrfs subvolume create
//! unpack-layers --rootfs-only --image layout:TAG images/busybox   # or: cp -a bundle/rootfs/.
//! btrfs-snap snapshot images/busybox containers/tutorial   # or: btrfs subvolume snapshot
//! nsenter-run --rootfs containers/tutorial -- CMD          # or: --bundle, or runc run
//! ```
//!
//! The registry is the harness' real one (anonymous and token modes), seeded with the busybox
//! image under OCI and Docker media types and as a multi-platform index. Every way through
//! the chain must give the same container view: the hostname, the shell as PID 1, the file the
//! second layer adds, the file its whiteout deletes gone, the environment the image config
//! sets, the same root directory. Failures along the way must each say what failed in one
//! line, exit with SPEC's status and leave nothing half-done.
//!
//! Each test mounts its loop btrfs inside a private mount namespace of its own
//! (`tests::mountns`), and checks the host's mount table is the same afterwards.
//! Needs root, busybox-static, docker-registry, btrfs-progs, skopeo, umoci, runc.
//! Build the binaries first: `cargo build --workspace --bins`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tests::btrfs::LoopBtrfs;
use tests::image::{host_architecture, Image, IndexBuilder, MediaTypes};
use tests::registry::{Auth, Registry, RegistryConfig, REQUIRED_COMMANDS};
use tests::{bins, busybox, mountns, prereq};

/// The variable the image config sets, which a bundle must carry into the container.
const GREETING: &str = "GREETING=hello from the image config";

/// What the container prints: one `key=value` per line, the things a user checks.
const VIEW: &str = "echo hostname=$(hostname); \
    echo pid=$$; \
    echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline | cut -d' ' -f1-2); \
    echo issue=$(cat /etc/issue); \
    if [ -e /etc/motd ]; then echo motd=present; else echo motd=absent; fi; \
    echo greeting=$GREETING; \
    echo path=$PATH; \
    echo uid=$(id -u); \
    echo cwd=$(pwd); \
    echo root=$(ls / | tr '\\n' ' ')";

/// The view every way through the chain must print.
fn expected_view() -> BTreeMap<String, String> {
    let greeting = GREETING.trim_start_matches("GREETING=");
    let path = busybox::PATH.trim_start_matches("PATH=");
    [
        ("hostname", "tutorial"),
        ("pid", "1"),
        ("pid1", "/bin/sh -c"),
        ("issue", "busybox test image (containers by hand)"),
        ("motd", "absent"),
        ("greeting", greeting),
        ("path", path),
        ("uid", "0"),
        ("cwd", "/"),
        (
            "root",
            "bin dev etc home proc root run sbin sys tmp usr var",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Helpers

fn ready(test: &str, peers: &[&str]) -> bool {
    prereq::require_root(test)
        && prereq::require_commands(test, LoopBtrfs::COMMANDS)
        && prereq::require_commands(test, REQUIRED_COMMANDS)
        && prereq::require_commands(test, &["busybox", "unshare"])
        && prereq::require_commands(test, peers)
}

/// The busybox image with the greeting in its config.
fn busybox(types: MediaTypes) -> Image {
    busybox::busybox_image()
        .env(GREETING)
        .media_types(types)
        .build()
}

/// The same image for another architecture, with a config that gives itself away.
fn foreign_busybox(types: MediaTypes) -> Image {
    let (arch, variant) = match host_architecture() {
        "arm64" => ("amd64", None),
        _ => ("arm64", Some("v8")),
    };
    busybox::busybox_image()
        .env("GREETING=the wrong platform")
        .platform("linux", arch, variant)
        .media_types(types)
        .build()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to success (stdin closed), returning its stdout; an error naming the command
/// and quoting its stderr otherwise.
fn run(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        ));
    }
    Ok(text(&out.stdout))
}

fn tool(name: &str) -> Command {
    Command::new(bins::bin(name))
}

/// fetch-image with no auth file of the machine's user in reach.
fn fetch_image(home: &Path) -> Command {
    let mut cmd = tool("fetch-image");
    for var in [
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "DOCKER_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home).arg("--quiet");
    cmd
}

/// `fetch-image SOURCE oci:LAYOUT:TAG`; checks the digest it prints is the manifest's.
fn fetch(
    home: &Path,
    source: &str,
    layout: &Path,
    tag: &str,
    extra: &[&str],
) -> Result<String, String> {
    let out = run(
        &format!("fetch-image {source}"),
        fetch_image(home)
            .args(extra)
            .arg(source)
            .arg(format!("oci:{}:{tag}", layout.display())),
    )?;
    let digest = out.trim().to_string();
    let index: serde_json::Value = read_json(&layout.join("index.json"))?;
    let listed = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap_or_default().to_string());
    check(
        listed.as_deref() == Some(digest.as_str()),
        format!("fetch-image printed {digest:?}, index.json lists {listed:?} for '{tag}'"),
    )?;
    Ok(digest)
}

fn unpack(layout: &Path, tag: &str, bundle: &Path, extra: &[&str]) -> Result<(), String> {
    run(
        &format!("unpack-layers {}", bundle.display()),
        tool("unpack-layers")
            .arg("--quiet")
            .args(extra)
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    )
    .map(drop)
}

fn btrfs_snap(args: &[&Path]) -> Result<(), String> {
    run(
        &format!("btrfs-snap {args:?}"),
        tool("btrfs-snap").args(args),
    )
    .map(drop)
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("parse {}: {e}", path.display()))
}

fn check(ok: bool, why: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why.into())
    }
}

/// Parses the container's `key=value` lines.
fn parse_view(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Checks what `how` showed against the expected view.
fn check_view(how: &str, stdout: &str) -> Result<(), String> {
    let seen = parse_view(stdout);
    let expected = expected_view();
    let keys: std::collections::BTreeSet<&String> = seen.keys().chain(expected.keys()).collect();
    let wrong: Vec<String> = keys
        .into_iter()
        .filter(|k| seen.get(*k) != expected.get(*k))
        .map(|k| format!("{k}: saw {:?}, want {:?}", seen.get(k), expected.get(k)))
        .collect();
    check(
        wrong.is_empty(),
        format!("{how}: the container view differs: {}", wrong.join("; ")),
    )
}

/// `nsenter-run --rootfs DIR`, with the image's environment given by hand (a bare rootfs
/// has no config).
fn view_rootfs(how: &str, rootfs: &Path) -> Result<(), String> {
    let out = run(
        how,
        tool("nsenter-run")
            .arg("--rootfs")
            .arg(rootfs)
            .args(["--env", GREETING, "--env", busybox::PATH])
            .args(["--", "/bin/sh", "-c", VIEW]),
    )?;
    check_view(how, &out)
}

/// Makes a bundle run VIEW as its process, with no terminal (runc needs a tty otherwise),
/// and checks the hostname the unpacker chose; umoci names every host `umoci-default`, so
/// its bundles get ours.
fn prepare_bundle(bundle: &Path, hostname_from_unpacker: bool) -> Result<(), String> {
    let path = bundle.join("config.json");
    let mut config = read_json(&path)?;
    if hostname_from_unpacker {
        check(
            config["hostname"] == "tutorial",
            format!("{}: hostname {}", path.display(), config["hostname"]),
        )?;
    }
    config["hostname"] = serde_json::json!("tutorial");
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", VIEW]);
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))
}

/// `nsenter-run --bundle DIR` with the bundle's own process.args.
fn view_bundle(how: &str, bundle: &Path) -> Result<(), String> {
    let out = run(how, tool("nsenter-run").arg("--bundle").arg(bundle))?;
    check_view(how, &out)
}

/// `runc run --bundle DIR` (state kept in a directory of its own).
fn view_runc(how: &str, bundle: &Path, state: &Path) -> Result<(), String> {
    let id = format!("pipeline-{}", std::process::id());
    let out = run(
        how,
        Command::new("runc")
            .arg("--root")
            .arg(state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id),
    );
    let _ = Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["delete", "--force", &id])
        .output();
    check_view(how, &out?)
}

/// The host's mount table, less the loop btrfs fixtures that tests running alongside mount
/// and unmount meanwhile (their own mount points, nothing below).
fn host_mounts() -> Vec<String> {
    mountns::mountinfo()
        .lines()
        .filter(|line| {
            let point = line.split(' ').nth(4).unwrap_or("");
            !(point.starts_with("/tmp/loop-btrfs-") && point.ends_with("/mnt"))
        })
        .map(str::to_string)
        .collect()
}

/// Runs `body` with a fresh loop btrfs, inside a private mount namespace of its own so
/// nothing it mounts reaches the host, and checks the host's mounts are the same after.
fn on_private_btrfs(body: impl FnOnce(&Path) -> Result<(), String>) {
    let before = host_mounts();
    let result = mountns::in_private_mount_namespace(|| {
        let fs = LoopBtrfs::try_new(256).map_err(|e| format!("loop btrfs: {e}"))?;
        body(fs.path())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    assert_eq!(host_mounts(), before, "the host's mount table changed");
}

// ---------------------------------------------------------------------------------------
// Tests

/// The demo's chain with the project's tools only, from an anonymous registry: the bundle
/// run as it is, the rootfs unpacked straight into a subvolume, and a `cp -a` of the bundle's
/// rootfs into another, each snapshotted and run.
#[test]
fn own_tools_from_registry_to_container() {
    let test = "own_tools_from_registry_to_container";
    if !ready(test, &[]) {
        return;
    }
    let registry = Registry::start(RegistryConfig::default());
    busybox(MediaTypes::Oci)
        .push(&registry, "library/busybox", "latest")
        .unwrap();
    let source = format!("docker://{}/library/busybox:latest", registry.host());
    let home = tempfile::tempdir().unwrap();

    on_private_btrfs(|fs| {
        let layout = fs.join("oci-images/busybox");
        fetch(home.path(), &source, &layout, "latest", &[])?;

        std::fs::create_dir_all(fs.join("unpacked-images")).map_err(|e| e.to_string())?;
        let bundle = fs.join("unpacked-images/tutorial");
        unpack(&layout, "latest", &bundle, &[])?;
        prepare_bundle(&bundle, true)?;
        view_bundle("unpack-layers -> nsenter-run --bundle", &bundle)?;

        std::fs::create_dir_all(fs.join("images")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(fs.join("containers")).map_err(|e| e.to_string())?;
        let image = fs.join("images/busybox");
        let container = fs.join("containers/tutorial");
        btrfs_snap(&["create".as_ref(), &image])?;
        unpack(&layout, "latest", &image, &["--rootfs-only"])?;
        check(
            !image.join("config.json").exists(),
            "--rootfs-only wrote a config.json",
        )?;
        btrfs_snap(&["snapshot".as_ref(), &image, &container])?;
        view_rootfs(
            "unpack-layers --rootfs-only -> nsenter-run --rootfs",
            &container,
        )?;
        // The container wrote nothing into the image it was snapshotted from.
        check(
            image.join("etc/issue").is_file() && !image.join("etc/motd").exists(),
            "the image subvolume changed",
        )?;

        // The classic `cp -a` of the bundle's rootfs instead of --rootfs-only.
        let copied = fs.join("images/copied");
        let copy_container = fs.join("containers/copy/tutorial");
        std::fs::create_dir_all(fs.join("containers/copy")).map_err(|e| e.to_string())?;
        btrfs_snap(&["create".as_ref(), &copied])?;
        run(
            "cp -a",
            Command::new("cp")
                .arg("-a")
                .arg(bundle.join("rootfs/."))
                .arg(format!("{}/", copied.display())),
        )?;
        btrfs_snap(&["snapshot".as_ref(), &copied, &copy_container])?;
        view_rootfs("cp -a -> nsenter-run --rootfs", &copy_container)?;

        // btrfs-snap sees every subvolume the chain made.
        let listed = run("btrfs-snap list", tool("btrfs-snap").arg("list").arg(fs))?;
        for name in [
            "images/busybox",
            "images/copied",
            "containers/tutorial",
            "containers/copy/tutorial",
        ] {
            check(
                listed
                    .lines()
                    .any(|l| l.trim_end_matches('/').ends_with(name)),
                format!("btrfs-snap list misses {name}: {listed}"),
            )?;
        }
        Ok(())
    });
}

/// Token auth (Docker Hub's flow) with credentials, the Docker media types and two
/// multi-platform indexes (OCI and a Docker manifest list): fetch-image and skopeo each pull
/// every one, unpack-layers unpacks them, and each runs the same.
#[test]
fn token_auth_docker_types_and_platform_indexes() {
    let test = "token_auth_docker_types_and_platform_indexes";
    if !ready(test, &["skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryConfig {
        auth: Auth::Token {
            user: "alice".into(),
            password: "s3cret".into(),
        },
        tls: false,
    });
    let docker = busybox(MediaTypes::Docker);
    docker.push(&registry, "team/busybox", "docker").unwrap();
    IndexBuilder::new()
        .image(foreign_busybox(MediaTypes::Oci))
        .image(busybox(MediaTypes::Oci))
        .build()
        .push(&registry, "team/busybox", "multi")
        .unwrap();
    IndexBuilder::new()
        .image(foreign_busybox(MediaTypes::Docker))
        .image(docker.clone())
        .build()
        .push(&registry, "team/busybox", "multi-docker")
        .unwrap();
    let host = registry.host().to_string();
    let home = tempfile::tempdir().unwrap();

    on_private_btrfs(|fs| {
        let ours = fs.join("ours");
        let theirs = fs.join("skopeo");
        for tag in ["docker", "multi", "multi-docker"] {
            let source = format!("docker://{host}/team/busybox:{tag}");
            fetch(
                home.path(),
                &source,
                &ours,
                tag,
                &["--creds", "alice:s3cret"],
            )?;
            run(
                &format!("skopeo copy {source}"),
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .args(["--src-creds", "alice:s3cret"])
                    .arg(&source)
                    .arg(format!("oci:{}:{tag}", theirs.display())),
            )?;
            for (who, layout) in [("fetch-image", &ours), ("skopeo", &theirs)] {
                let dir = fs.join(format!("{who}-{tag}"));
                std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
                let bundle = dir.join("tutorial");
                // skopeo keeps the index in the layout; unpack-layers picks this platform.
                unpack(layout, tag, &bundle, &[])?;
                prepare_bundle(&bundle, true)?;
                view_bundle(
                    &format!("{who} ({tag}) -> unpack-layers -> nsenter-run --bundle"),
                    &bundle,
                )?;
            }
        }
        // The layers are the very blobs the registry holds, converted or not.
        for layer in &docker.layers {
            let hex = layer.digest.trim_start_matches("sha256:");
            check(
                ours.join("blobs/sha256").join(hex).is_file(),
                format!("fetch-image's layout lacks layer {}", layer.digest),
            )?;
        }
        Ok(())
    });
    check(registry.token_requests() > 0, "no token was asked for").unwrap();
}

/// skopeo -> unpack-layers, fetch-image -> umoci, unpack-layers' bundle -> runc, umoci's
/// bundle -> nsenter-run: the peers read what the tools write and the other way round.
#[test]
fn peers_swap_in_for_fetch_unpack_and_run() {
    let test = "peers_swap_in_for_fetch_unpack_and_run";
    if !ready(test, &["skopeo", "umoci", "runc"]) {
        return;
    }
    let registry = Registry::start(RegistryConfig::default());
    busybox(MediaTypes::Oci)
        .push(&registry, "library/busybox", "1.36")
        .unwrap();
    let source = format!("docker://{}/library/busybox:1.36", registry.host());
    let home = tempfile::tempdir().unwrap();

    on_private_btrfs(|fs| {
        let state = fs.join("runc-state");
        let ours = fs.join("layout-ours");
        let theirs = fs.join("layout-skopeo");
        fetch(home.path(), &source, &ours, "1.36", &[])?;
        run(
            "skopeo copy",
            Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(&source)
                .arg(format!("oci:{}:1.36", theirs.display())),
        )?;

        // skopeo -> unpack-layers -> nsenter-run, and the same bundle under runc.
        std::fs::create_dir(fs.join("a")).map_err(|e| e.to_string())?;
        let bundle = fs.join("a/tutorial");
        unpack(&theirs, "1.36", &bundle, &[])?;
        prepare_bundle(&bundle, true)?;
        view_bundle("skopeo -> unpack-layers -> nsenter-run --bundle", &bundle)?;
        view_runc("skopeo -> unpack-layers -> runc run", &bundle, &state)?;

        // fetch-image -> umoci -> nsenter-run, and the same bundle under runc.
        let umoci_bundle = fs.join("b/tutorial");
        run(
            "umoci unpack",
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:1.36", ours.display()))
                .arg(&umoci_bundle),
        )?;
        prepare_bundle(&umoci_bundle, false)?;
        view_bundle(
            "fetch-image -> umoci -> nsenter-run --bundle",
            &umoci_bundle,
        )?;
        view_runc("fetch-image -> umoci -> runc run", &umoci_bundle, &state)?;

        // umoci and unpack-layers made the same tree from the same layout.
        let tree = |root: &Path| {
            run(
                "find",
                Command::new("find")
                    .arg(".")
                    .args(["-printf", "%p %y %m %U:%G %s %l\n"])
                    .current_dir(root),
            )
            .map(|out| {
                let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
                lines.sort();
                lines
            })
        };
        let ours_tree = {
            std::fs::create_dir(fs.join("c")).map_err(|e| e.to_string())?;
            let bundle = fs.join("c/tutorial");
            unpack(&ours, "1.36", &bundle, &[])?;
            tree(&bundle.join("rootfs"))?
        };
        let umoci_tree = tree(&umoci_bundle.join("rootfs"))?;
        check(
            ours_tree == umoci_tree,
            format!(
                "unpack-layers and umoci trees differ:\n ours only: {:?}\n umoci only: {:?}",
                difference(&ours_tree, &umoci_tree),
                difference(&umoci_tree, &ours_tree)
            ),
        )
    });
}

fn difference(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// btrfs-progs and btrfs-snap make each other's subvolumes and snapshots: `btrfs subvolume
/// create` + `btrfs-snap snapshot`, and `btrfs-snap create` + `btrfs subvolume snapshot`,
/// each run by nsenter-run.
#[test]
fn btrfs_progs_and_btrfs_snap_swap_both_ways() {
    let test = "btrfs_progs_and_btrfs_snap_swap_both_ways";
    if !ready(test, &["btrfs"]) {
        return;
    }
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = layout_dir.path().join("busybox");
    busybox(MediaTypes::Oci)
        .write_oci_layout(&layout, "latest")
        .unwrap();

    on_private_btrfs(|fs| {
        let btrfs = |args: &[&std::ffi::OsStr]| {
            run(&format!("btrfs {args:?}"), Command::new("btrfs").args(args))
        };
        for dir in ["images", "progs", "snap"] {
            std::fs::create_dir(fs.join(dir)).map_err(|e| e.to_string())?;
        }

        // btrfs subvolume create -> unpack-layers --rootfs-only -> btrfs-snap snapshot.
        let by_progs = fs.join("images/by-progs");
        btrfs(&[
            "subvolume".as_ref(),
            "create".as_ref(),
            by_progs.as_os_str(),
        ])?;
        unpack(&layout, "latest", &by_progs, &["--rootfs-only"])?;
        let container = fs.join("snap/tutorial");
        btrfs_snap(&["snapshot".as_ref(), &by_progs, &container])?;
        view_rootfs("btrfs subvolume create -> btrfs-snap snapshot", &container)?;

        // btrfs-snap create -> unpack-layers --rootfs-only -> btrfs subvolume snapshot.
        let by_snap = fs.join("images/by-snap");
        btrfs_snap(&["create".as_ref(), &by_snap])?;
        unpack(&layout, "latest", &by_snap, &["--rootfs-only"])?;
        let container = fs.join("progs/tutorial");
        btrfs(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            by_snap.as_os_str(),
            container.as_os_str(),
        ])?;
        view_rootfs("btrfs-snap create -> btrfs subvolume snapshot", &container)?;

        // Each side sees the other's snapshot as a snapshot of its source.
        let uuid_of = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix(key).map(|v| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let progs_show = btrfs(&[
            "subvolume".as_ref(),
            "show".as_ref(),
            fs.join("snap/tutorial").as_os_str(),
        ])?;
        let source_show = btrfs(&["subvolume".as_ref(), "show".as_ref(), by_progs.as_os_str()])?;
        check(
            uuid_of(&progs_show, "Parent UUID:") == uuid_of(&source_show, "UUID:"),
            format!("btrfs-progs does not see btrfs-snap's snapshot's parent:\n{progs_show}"),
        )?;
        let snap_show = run(
            "btrfs-snap show",
            tool("btrfs-snap")
                .arg("show")
                .arg(fs.join("progs/tutorial")),
        )?;
        let source_uuid = uuid_of(
            &btrfs(&["subvolume".as_ref(), "show".as_ref(), by_snap.as_os_str()])?,
            "UUID:",
        );
        check(
            snap_show.contains(&source_uuid),
            format!("btrfs-snap show lacks the parent uuid {source_uuid}:\n{snap_show}"),
        )?;
        Ok(())
    });
}

/// A one-line `TOOL: ...` error naming `names`, exit status `code`, nothing on stdout.
fn fails(what: &str, cmd: &mut Command, code: i32, names: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let stderr = text(&out.stderr);
    let tool = what.split(' ').next().unwrap_or_default();
    check(
        out.status.code() == Some(code)
            && out.stdout.is_empty()
            && stderr.lines().count() == 1
            && stderr.starts_with(&format!("{tool}: "))
            && stderr.contains(names),
        format!(
            "{what}: want exit {code} and one line naming '{names}', got {}: stdout {:?}, stderr {stderr:?}",
            out.status,
            text(&out.stdout)
        ),
    )
}

/// Failures along the chain, as a user meets them: each says what failed in one line, exits
/// with the status SPEC gives, and leaves nothing half-done (no layout, no bundle, the
/// subvolume emptied but kept, no stray subvolume).
#[test]
fn failures_along_the_chain_leave_nothing_behind() {
    let test = "failures_along_the_chain_leave_nothing_behind";
    if !ready(test, &[]) {
        return;
    }
    let registry = Registry::start(RegistryConfig::default());
    let image = busybox(MediaTypes::Oci);
    image.push(&registry, "library/busybox", "latest").unwrap();
    let host = registry.host().to_string();
    let home = tempfile::tempdir().unwrap();
    // A layout whose second layer was damaged after the fact.
    let damaged = tempfile::tempdir().unwrap();
    image.write_oci_layout(damaged.path(), "latest").unwrap();
    let last = image
        .layers
        .last()
        .unwrap()
        .digest
        .trim_start_matches("sha256:");
    let blob = damaged.path().join("blobs/sha256").join(last);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    on_private_btrfs(|fs| {
        let layout = fs.join("oci-images/busybox");
        fails(
            "fetch-image of a missing tag",
            fetch_image(home.path())
                .arg(format!("docker://{host}/library/busybox:nope"))
                .arg(format!("oci:{}:nope", layout.display())),
            1,
            "nope",
        )?;
        check(!layout.exists(), "a failed fetch left a layout behind")?;
        fetch(
            home.path(),
            &format!("{host}/library/busybox"),
            &layout,
            "latest",
            &[],
        )?;

        std::fs::create_dir(fs.join("unpacked")).map_err(|e| e.to_string())?;
        let bundle = fs.join("unpacked/tutorial");
        fails(
            "unpack-layers of a missing tag",
            tool("unpack-layers")
                .arg("--image")
                .arg(format!("{}:nope", layout.display()))
                .arg(&bundle),
            1,
            "nope",
        )?;
        check(!bundle.exists(), "a failed unpack left a bundle behind")?;
        fails(
            "unpack-layers of a damaged layer",
            tool("unpack-layers")
                .arg("--image")
                .arg(format!("{}:latest", damaged.path().display()))
                .arg(&bundle),
            1,
            last,
        )?;
        check(!bundle.exists(), "a failed unpack left a bundle behind")?;

        let subvolume = fs.join("images-busybox");
        btrfs_snap(&["create".as_ref(), &subvolume])?;
        fails(
            "unpack-layers --rootfs-only of a damaged layer",
            tool("unpack-layers")
                .arg("--rootfs-only")
                .arg("--image")
                .arg(format!("{}:latest", damaged.path().display()))
                .arg(&subvolume),
            1,
            last,
        )?;
        let left = std::fs::read_dir(&subvolume)
            .map_err(|e| e.to_string())?
            .count();
        check(
            left == 0,
            format!("the subvolume kept {left} entries after a failed unpack"),
        )?;
        unpack(&layout, "latest", &subvolume, &["--rootfs-only"])?;

        let container = fs.join("tutorial");
        btrfs_snap(&["snapshot".as_ref(), &subvolume, &container])?;
        fails(
            "btrfs-snap snapshot onto an existing path",
            tool("btrfs-snap")
                .arg("snapshot")
                .arg(&subvolume)
                .arg(&container),
            1,
            "tutorial",
        )?;
        fails(
            "btrfs-snap create outside btrfs",
            tool("btrfs-snap").arg("create").arg(home.path().join("x")),
            1,
            "not btrfs",
        )?;
        let listed = run("btrfs-snap list", tool("btrfs-snap").arg("list").arg(fs))?;
        check(
            listed.lines().count() == 2,
            format!("stray subvolumes after the failures: {listed}"),
        )?;

        fails(
            "nsenter-run of a missing rootfs",
            tool("nsenter-run")
                .arg("--rootfs")
                .arg(fs.join("nothere"))
                .args(["--", "/bin/true"]),
            125,
            "nothere",
        )?;
        fails(
            "nsenter-run of a missing command",
            tool("nsenter-run")
                .arg("--rootfs")
                .arg(&container)
                .args(["--", "/bin/nothere"]),
            127,
            "/bin/nothere",
        )?;
        fails(
            "nsenter-run of a file that is not executable",
            tool("nsenter-run")
                .arg("--rootfs")
                .arg(&container)
                .args(["--", "/etc/issue"]),
            126,
            "/etc/issue",
        )?;
        let status = tool("nsenter-run")
            .arg("--rootfs")
            .arg(&container)
            .args(["--", "/bin/sh", "-c", "exit 3"])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        check(
            status.code() == Some(3),
            format!("exit 3 came back as {status}"),
        )
    });
}
