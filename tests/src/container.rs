//! A container started in the background: its command prints `ready` once it runs,
//! then blocks reading its stdin until the test lets it go on. Tests use the pause to
//! look at the running container from the host (its PID 1, cgroup, veth, /proc/PID/exe).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A started container, paused on its stdin.
pub struct Running {
    /// The launcher (nsenter-run) as the host sees it.
    pub child: Child,
    /// The container's stdout after the `ready` line.
    pub stdout: BufReader<ChildStdout>,
}

impl Running {
    /// Spawns `cmd` with piped stdio and waits for its `ready` line; panics with the
    /// container's stderr if the first line is anything else.
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the container");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the ready line");
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("container did not get ready: {line:?} {err}");
        }
        Running { child, stdout }
    }

    /// Lets the container go on (a newline on its stdin) and waits for it: its exit
    /// code (-1 when killed by a signal), the rest of its stdout, and its stderr.
    pub fn finish(mut self) -> (i32, String, String) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        let status = self.child.wait().expect("wait for the container");
        (status.code().unwrap_or(-1), out, err)
    }

    /// The container's PID 1 as the host sees it: the launcher's only child.
    pub fn pid1(&self) -> i32 {
        let children = format!("/proc/{0}/task/{0}/children", self.child.id());
        let text = std::fs::read_to_string(children).expect("read the launcher's children");
        text.split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("the launcher has a child")
    }
}
