//! Ctrl-C, SIGTERM and SIGHUP during an unpack. The handler only sets a flag
//! (the one thing signal-safety(7) allows it to do safely); the applier checks
//! it between entries and fails like any other error, so the usual cleanup
//! removes the half-unpacked bundle instead of the process dying mid-layer.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (SA_RESTART: calls in
/// progress finish; the next entry sees the flag).
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Whether one of those signals arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
