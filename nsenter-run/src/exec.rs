//! The last steps before the command runs: the working directory, the file
//! descriptors, and execve(2) with the shell's exit-code conventions.
//!
//! - CVE-2024-21626 (runc "Leaky Vessels"): an fd on a host directory leaked
//!   into the container let `cwd=/proc/self/fd/7` land outside the root. Every
//!   fd above 2 is marked close-on-exec (close_range(2) with
//!   CLOSE_RANGE_CLOEXEC: the pipe that reports setup errors stays usable until
//!   the execve itself), and the cwd is checked to be inside the root after chdir.
//! - Exit codes as docker and POSIX shells use them: 126 found but not
//!   executable, 127 not found.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{chdir, execve, getcwd};

use crate::explain::Explain;
use crate::Error;

/// Not executable (docker: "permission denied" / "exec format error").
pub const NOT_EXECUTABLE: i32 = 126;
/// Not found.
pub const NOT_FOUND: i32 = 127;

/// chdir into the container's cwd, then make sure it really is inside the root.
pub fn chdir_checked(cwd: &Path, explain: Explain) -> Result<(), Error> {
    explain.call(format!("chdir({cwd:?})"), format!("cd {}", cwd.display()));
    chdir(cwd).map_err(|e| Error::sys(format!("chdir '{}'", cwd.display()), e))?;
    // getcwd(3) fails with ENOENT when the kernel's answer starts with
    // "(unreachable)": the directory is not below the current root.
    match getcwd() {
        Ok(now) if now.is_absolute() => Ok(()),
        _ => Err(Error::Invalid(format!(
            "working directory '{}' is outside the container's root (CVE-2024-21626)",
            cwd.display()
        ))),
    }
}

/// Mark every fd above 2 close-on-exec: the container starts with 0, 1, 2 only.
pub fn close_fds_on_exec(explain: Explain) -> Result<(), Error> {
    explain.call("close_range(3, ~0U, CLOSE_RANGE_CLOEXEC)", "");
    // SAFETY: close_range only sets flags on this process' descriptors.
    let rc = unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| Error::sys("close_range(3, ~0, CLOSE_RANGE_CLOEXEC)", e))
}

/// The candidates execvp(3) would try for `program` with this PATH.
pub fn candidates(program: &OsStr, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path_var = path_var.unwrap_or(OsStr::new(crate::DEFAULT_PATH));
    path_var
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(OsStr::from_bytes(dir))
            }
        })
        .map(|dir| dir.join(program))
        .collect()
}

/// The exit code for an execve failure: the last interesting errno decides, as
/// in execvp(3): EACCES anywhere makes it "not executable".
pub fn exit_code_for(errors: &[Errno]) -> i32 {
    if errors
        .iter()
        .all(|e| matches!(e, Errno::ENOENT | Errno::ENOTDIR))
    {
        NOT_FOUND
    } else {
        NOT_EXECUTABLE
    }
}

/// Who makes the command's execve.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// This process (already running from a protected copy, see selfexe).
    Itself,
    /// The sealed exec stub ([`crate::stub`]), with the setup-report pipe.
    Stub(BorrowedFd<'a>),
}

/// execve the command, trying each PATH candidate. Returns only on failure.
pub fn exec(
    args: &[CString],
    env: &[CString],
    path_var: Option<&OsStr>,
    via: Via<'_>,
    explain: Explain,
) -> Error {
    let Some(program) = args.first() else {
        return Error::Invalid("empty command".to_string());
    };
    if program.as_bytes().is_empty() {
        // execvp(3) would try "" against each PATH directory and fail with EACCES;
        // an empty name is a name that is not there (docker says the same, 127).
        return Error::Exec {
            code: NOT_FOUND,
            message: "cannot run '': not found (the command is an empty string)".to_string(),
        };
    }
    let program_os = OsStr::from_bytes(program.as_bytes());
    // execvpe(3)'s search, by hand: the PATH is the container's, not ours.
    let call = if program.as_bytes().contains(&b'/') {
        "execve"
    } else {
        "execvpe"
    };
    explain.call(
        format!(
            "{call}({program_os:?}, {:?}, [{} variables])",
            printable(args),
            env.len()
        ),
        format!("exec {}", printable(args).join(" ")),
    );
    let candidates: Vec<CString> = candidates(program_os, path_var)
        .into_iter()
        .filter_map(|c| CString::new(c.into_os_string().into_vec()).ok())
        .collect();
    let errors: Vec<Errno> = match via {
        Via::Itself => candidates
            .iter()
            .map(|c| {
                let Err(e) = execve(c, args, env);
                e
            })
            .collect(),
        Via::Stub(report) => {
            explain.call(
                "memfd_create(\"nsenter-run-exec\"); write(the exec stub); F_ADD_SEALS; execveat(stub, [CANDIDATE... \"\" ARGS...])",
                "(CVE-2019-5736: the command's execve is made by a sealed stub, not by nsenter-run)",
            );
            let err = match crate::stub::load() {
                Ok(stub) => crate::stub::exec(&stub, report, &candidates, args, env),
                Err(e) => e,
            };
            return Error::sys(
                "cannot execute the exec stub from a sealed memfd (the CVE-2019-5736 defence)",
                err,
            );
        }
    };
    failure(program_os, &errors)
}

/// The error for a command that could not be executed: `errors` are what each
/// PATH candidate's execve returned.
pub fn failure(program: &OsStr, errors: &[Errno]) -> Error {
    let code = exit_code_for(errors);
    let what = if code == NOT_FOUND {
        "not found".to_string()
    } else {
        let e = errors
            .iter()
            .find(|e| !matches!(e, Errno::ENOENT | Errno::ENOTDIR))
            .copied()
            .unwrap_or(Errno::EACCES);
        format!("not executable: {}", e.desc())
    };
    Error::Exec {
        code,
        message: format!("cannot run '{}': {what}", program.to_string_lossy()),
    }
}

fn printable(args: &[CString]) -> Vec<String> {
    args.iter()
        .map(|a| CStr::to_string_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_means_no_search() {
        assert_eq!(
            candidates(OsStr::new("./run"), Some(OsStr::new("/bin"))),
            vec![PathBuf::from("./run")]
        );
    }

    #[test]
    fn path_is_searched_in_order_and_empty_means_here() {
        assert_eq!(
            candidates(OsStr::new("sh"), Some(OsStr::new("/usr/bin::/bin"))),
            vec![
                PathBuf::from("/usr/bin/sh"),
                PathBuf::from("./sh"),
                PathBuf::from("/bin/sh")
            ]
        );
        assert_eq!(candidates(OsStr::new("sh"), None).len(), 6);
    }

    #[test]
    fn exit_codes_follow_the_shells() {
        assert_eq!(exit_code_for(&[Errno::ENOENT, Errno::ENOTDIR]), NOT_FOUND);
        assert_eq!(exit_code_for(&[]), NOT_FOUND);
        assert_eq!(
            exit_code_for(&[Errno::ENOENT, Errno::EACCES]),
            NOT_EXECUTABLE
        );
        assert_eq!(exit_code_for(&[Errno::ENOEXEC]), NOT_EXECUTABLE);
    }
}
