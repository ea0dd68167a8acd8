//! The command's execve(2), made by a stub of a few dozen instructions instead
//! of nsenter-run itself.
//!
//! CVE-2019-5736 (see [`crate::selfexe`]): the container must never get hold of
//! nsenter-run's binary through `/proc/self/exe`. The process that executes the
//! command is the container's PID 1, and until that execve succeeds its exe *is*
//! nsenter-run: a command that is a script starting `#!/proc/self/exe` (or a
//! binfmt_misc entry resolved in the container) would have the kernel run
//! nsenter-run's own binary inside the container, where a process can keep a
//! handle on it and write it once nsenter-run has exited. runc answers with a
//! protected copy of the whole runtime, and so does nsenter-run under `--init`
//! and `--enter`, whose own code stays in the container. A plain launch leaves
//! nothing of nsenter-run in the container but its last execve, so it is enough
//! that this last execve is made by something else: this stub, in a memfd sealed
//! against every change. When the kernel resolves the command, `/proc/self/exe`
//! names the stub, which cannot be written. It costs one exec of a 351-byte file
//! (no C library to start) instead of a second start of nsenter-run (0.45 ms on
//! the reference VM, most of it glibc's start-up, which probes the CPU with
//! `cpuid`, a trap to the hypervisor each time).
//!
//! The contract: argv is `CANDIDATE... "" ARG0 ARG1...`, the environment is the
//! command's, and fd 3 is the setup-report pipe. The stub marks fd 3
//! close-on-exec, so that the parent reads EOF exactly when an execve succeeds,
//! then calls execve(CANDIDATE, [ARG0, ARG1...], envp) for each candidate in turn
//! (the PATH search of execvp(3), done beforehand by [`crate::exec`]). When all
//! fail it writes the two bytes `E` and an errno to fd 3 (the first error other
//! than ENOENT and ENOTDIR, as execvp(3) reports; else ENOENT) and exits with 127.
//! Without the empty separator it exits with 127 at once: that is what a
//! `#!/proc/self/exe` script gets.
//!
//! x86-64 only: elsewhere nsenter-run re-executes itself from a protected copy,
//! as under `--init`.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The stub's code (x86-64, AT&T syntax; `as` then `objdump -d` gave the bytes).
/// rbx walks the candidates, r12 stops at the separator, r13 is the command's
/// argv, r14 its envp.
#[rustfmt::skip]
const CODE: [u8; 175] = [
    0x48, 0x8d, 0x5c, 0x24, 0x08,               //         lea 0x8(%rsp),%rbx           rbx: argv, the first candidate
    0x49, 0x89, 0xdc,                           //         mov %rbx,%r12
    0x49, 0x8b, 0x04, 0x24,                     // args:   mov (%r12),%rax
    0x48, 0x85, 0xc0,                           //         test %rax,%rax
    0x0f, 0x84, 0x8e, 0x00, 0x00, 0x00,         //         je quit
    0x80, 0x38, 0x00,                           //         cmpb $0x0,(%rax)
    0x74, 0x06,                                 //         je found
    0x49, 0x83, 0xc4, 0x08,                     //         add $0x8,%r12
    0xeb, 0xe8,                                 //         jmp args
    0x4d, 0x8d, 0x6c, 0x24, 0x08,               // found:  lea 0x8(%r12),%r13           r13: the command's argv
    0x4d, 0x89, 0xee,                           //         mov %r13,%r14                r14: walks to envp
    0x49, 0x83, 0x3e, 0x00,                     // env:    cmpq $0x0,(%r14)
    0x4d, 0x8d, 0x76, 0x08,                     //         lea 0x8(%r14),%r14
    0x75, 0xf6,                                 //         jne env
    0xb8, 0x48, 0x00, 0x00, 0x00,               //         mov $0x48,%eax               SYS_fcntl: fd 3 close-on-exec
    0xbf, 0x03, 0x00, 0x00, 0x00,               //         mov $0x3,%edi
    0xbe, 0x02, 0x00, 0x00, 0x00,               //         mov $0x2,%esi                F_SETFD
    0xba, 0x01, 0x00, 0x00, 0x00,               //         mov $0x1,%edx                FD_CLOEXEC
    0x0f, 0x05,                                 //         syscall
    0x45, 0x31, 0xff,                           //         xor %r15d,%r15d              r15: the errno to report, none yet
    0x4c, 0x39, 0xe3,                           // next:   cmp %r12,%rbx
    0x74, 0x2a,                                 //         je failed
    0x48, 0x8b, 0x3b,                           //         mov (%rbx),%rdi
    0x4c, 0x89, 0xee,                           //         mov %r13,%rsi
    0x4c, 0x89, 0xf2,                           //         mov %r14,%rdx
    0xb8, 0x3b, 0x00, 0x00, 0x00,               //         mov $0x3b,%eax               SYS_execve (returns only on failure)
    0x0f, 0x05,                                 //         syscall
    0xf7, 0xd8,                                 //         neg %eax                     eax: its errno
    0x48, 0x83, 0xc3, 0x08,                     //         add $0x8,%rbx
    0x45, 0x85, 0xff,                           //         test %r15d,%r15d
    0x75, 0xe0,                                 //         jne next
    0x83, 0xf8, 0x02,                           //         cmp $0x2,%eax                ENOENT and ENOTDIR: try the next
    0x74, 0xdb,                                 //         je next
    0x83, 0xf8, 0x14,                           //         cmp $0x14,%eax
    0x74, 0xd6,                                 //         je next
    0x41, 0x89, 0xc7,                           //         mov %eax,%r15d               the first other error is the one reported
    0xeb, 0xd1,                                 //         jmp next
    0x45, 0x85, 0xff,                           // failed: test %r15d,%r15d
    0x75, 0x06,                                 //         jne 1f
    0x41, 0xbf, 0x02, 0x00, 0x00, 0x00,         //         mov $0x2,%r15d               all were ENOENT or ENOTDIR: report ENOENT
    0x41, 0xc1, 0xe7, 0x08,                     // 1:      shl $0x8,%r15d
    0x41, 0x83, 0xcf, 0x45,                     //         or $0x45,%r15d
    0x41, 0x57,                                 //         push %r15                    the bytes 'E', errno
    0xb8, 0x01, 0x00, 0x00, 0x00,               //         mov $0x1,%eax                SYS_write(3, 'E' errno, 2)
    0xbf, 0x03, 0x00, 0x00, 0x00,               //         mov $0x3,%edi
    0x48, 0x89, 0xe6,                           //         mov %rsp,%rsi
    0xba, 0x02, 0x00, 0x00, 0x00,               //         mov $0x2,%edx
    0x0f, 0x05,                                 //         syscall
    0xb8, 0x3c, 0x00, 0x00, 0x00,               // quit:   mov $0x3c,%eax               SYS_exit(127)
    0xbf, 0x7f, 0x00, 0x00, 0x00,               //         mov $0x7f,%edi
    0x0f, 0x05,                                 //         syscall
];

/// Where the stub is mapped: any page-aligned address above vm.mmap_min_addr.
const BASE: u64 = 0x40_0000;
const EHDR_SIZE: u16 = 64;
const PHDR_SIZE: u16 = 56;
const PHDR_COUNT: u16 = 2;

/// The stub as an ELF executable (elf(5)): the header, a PT_LOAD mapping the
/// whole file readable and executable at [`BASE`], a PT_GNU_STACK asking for a
/// stack that is not executable, then the code.
pub fn image() -> Vec<u8> {
    let headers = u64::from(EHDR_SIZE + PHDR_COUNT * PHDR_SIZE);
    let size = headers + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // e_ident: ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE, padding.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + headers).to_le_bytes()); // e_entry: the code
    elf.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&PHDR_SIZE.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&PHDR_COUNT.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let segments = [
        (1u32, 5u32, BASE, size, 0x1000u64), // PT_LOAD, PF_R|PF_X
        (0x6474_e551, 6, 0, 0, 16),          // PT_GNU_STACK, PF_R|PF_W
    ];
    for (kind, flags, addr, len, align) in segments {
        elf.extend_from_slice(&kind.to_le_bytes()); // p_type
        elf.extend_from_slice(&flags.to_le_bytes()); // p_flags
        elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        elf.extend_from_slice(&addr.to_le_bytes()); // p_vaddr
        elf.extend_from_slice(&addr.to_le_bytes()); // p_paddr
        elf.extend_from_slice(&len.to_le_bytes()); // p_filesz
        elf.extend_from_slice(&len.to_le_bytes()); // p_memsz
        elf.extend_from_slice(&align.to_le_bytes()); // p_align
    }
    elf.extend_from_slice(&CODE);
    elf
}

/// Whether the stub can run here: on x86-64, where memfds may be executed
/// (vm.memfd_noexec below 2; the file is absent before Linux 6.3).
pub fn usable() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read("/proc/sys/vm/memfd_noexec").map_or(true, |v| v.first() != Some(&b'2'))
}

/// The stub in a new memfd, sealed against every change.
pub fn load() -> Result<OwnedFd, Errno> {
    crate::selfexe::sealed_memfd("nsenter-run-exec", |file| {
        std::io::Write::write_all(file, &image())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    })
}

/// Execute the stub, which executes the command (see the module's contract):
/// `report` becomes fd 3. Returns only if the stub itself could not start.
pub fn exec(
    stub: &OwnedFd,
    report: BorrowedFd<'_>,
    candidates: &[CString],
    args: &[CString],
    env: &[CString],
) -> Errno {
    // Move the stub out of the way if it sits on fd 3 (it is close-on-exec).
    let moved;
    let stub = if stub.as_raw_fd() == 3 {
        match fcntl(stub, FcntlArg::F_DUPFD_CLOEXEC(4)) {
            Ok(fd) => {
                // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nothing else owns.
                moved = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                moved.as_fd()
            }
            Err(e) => return e,
        }
    } else {
        stub.as_fd()
    };
    // fd 3: the report pipe, inherited (the stub makes it close-on-exec itself).
    let placed = if report.as_raw_fd() == 3 {
        fcntl(report, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
    } else {
        // SAFETY: dup2 onto fd 3, whatever it was: everything above 2 is
        // close-on-exec by now and nothing of ours uses fd 3 past this point.
        Errno::result(unsafe { libc::dup2(report.as_raw_fd(), 3) }).map(drop)
    };
    if let Err(e) = placed {
        return e;
    }
    let separator = c"";
    let argv: Vec<&CStr> = candidates
        .iter()
        .map(CString::as_c_str)
        .chain(std::iter::once(separator))
        .chain(args.iter().map(CString::as_c_str))
        .collect();
    let Err(e) = nix::unistd::fexecve(stub, &argv, env);
    e
}

/// The error a failed stub wrote to the report pipe (`E` and an errno byte), or
/// None when `report` is not one.
pub fn parse_report(report: &[u8]) -> Option<Vec<Errno>> {
    if report.is_empty() || report.len() % 2 != 0 {
        return None;
    }
    report
        .chunks(2)
        .map(|pair| (pair[0] == b'E').then(|| Errno::from_raw(i32::from(pair[1]))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn the_image_is_a_minimal_x86_64_executable() {
        let elf = image();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf.len(), 64 + 2 * 56 + CODE.len());
        let entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
        assert_eq!(entry, BASE + 64 + 2 * 56);
    }

    #[test]
    fn reports_parse_as_errnos_and_nothing_else() {
        assert_eq!(
            parse_report(b"E\x02E\x0d"),
            Some(vec![Errno::ENOENT, Errno::EACCES])
        );
        assert_eq!(parse_report(b"125\nmessage"), None);
        assert_eq!(parse_report(b""), None);
    }

    /// Run the stub with ARGS and a pipe on fd 3; its exit code and what it reported.
    fn run_stub(args: &[&str]) -> (Option<i32>, Vec<u8>) {
        // Above fd 3, which the pipe takes in the child.
        let stub = fcntl(load().unwrap(), FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        let write_fd = write.as_raw_fd();
        let mut cmd = Command::new(format!("/proc/self/fd/{stub}"));
        cmd.args(args);
        // SAFETY: only dup2, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(write_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        drop(write);
        let mut report = Vec::new();
        std::fs::File::from(read).read_to_end(&mut report).unwrap();
        (child.wait().unwrap().code(), report)
    }

    #[test]
    fn the_stub_tries_each_candidate_and_reports_like_execvp() {
        if !usable() {
            return;
        }
        // The first candidate missing, the second runs: nothing reported.
        let (code, report) = run_stub(&["/nonexistent/true", "/bin/true", "", "true"]);
        assert_eq!((code, report), (Some(0), Vec::new()));
        // Missing, then not executable: EACCES wins over ENOENT.
        let file = tempfile::NamedTempFile::new().unwrap();
        let plain = file.path().to_str().unwrap();
        let (code, report) = run_stub(&["/nonexistent/a", plain, "/b", "", "a"]);
        assert_eq!(code, Some(127));
        assert_eq!(parse_report(&report), Some(vec![Errno::EACCES]));
        // All missing.
        let not_a_dir = format!("{plain}/a");
        let (code, report) = run_stub(&["/nonexistent/a", &not_a_dir, "", "a"]);
        assert_eq!(code, Some(127));
        assert_eq!(parse_report(&report), Some(vec![Errno::ENOENT]));
    }

    #[test]
    fn without_a_separator_the_stub_only_exits() {
        if !usable() {
            return;
        }
        let (code, report) = run_stub(&["/bin/true", "--version", "/evil"]);
        assert_eq!(code, Some(127));
        assert!(report.is_empty());
    }

    #[test]
    fn the_stub_cannot_be_written() {
        let stub = load().unwrap();
        let seals = fcntl(&stub, FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        assert_eq!(nix::unistd::write(&stub, b"x"), Err(Errno::EPERM));
    }
}
