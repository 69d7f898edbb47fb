//! What the process does first, because it holds relay keys: no core dumps, a clean end on
//! Ctrl-C and friends, and the removal of what a killed run left behind.

/// Runs before anything else in `main`, while the process has one thread (the signal mask set
/// here is inherited by every thread started later).
pub fn at_start() {
    no_core_dumps();
    interrupt::install();
    crate::secrets::tor_keys::sweep_dead();
}

/// A core file would hold whatever keys are decrypted at that moment (RSA identity, ed25519
/// master key, family key) and lands in the working directory: the inventory repository. With
/// RLIMIT_CORE 0 (soft and hard, so no child can raise it) no core file is written; not dumpable,
/// the kernel writes none to a core pipe either and other processes of the same user cannot
/// ptrace this one or read its memory through /proc.
fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with valid arguments.
    let (limit, dumpable) = unsafe {
        (
            libc::setrlimit(libc::RLIMIT_CORE, &zero),
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0),
        )
    };
    if limit != 0 || dumpable != 0 {
        eprintln!(
            "warning: could not turn core dumps off ({}): a crash could write decrypted keys to a core file",
            std::io::Error::last_os_error()
        );
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT end oignon through one path: stop tor, wipe the scratch
/// keys, say what was interrupted, exit 128+signal. SIGQUIT is handled too because its default
/// action is a core dump.
pub mod interrupt {
    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    /// Blocks the signals in this thread (hence in every thread started later) and hands them to
    /// a thread of their own that waits for them with `sigwait`: nothing runs in a signal handler.
    /// Children get their default mask back (std resets it before exec).
    pub fn install() {
        // SAFETY: sigset operations on a zeroed, then initialised, local set.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            set
        };
        // SAFETY: `set` is initialised; the old mask is not wanted.
        let blocked =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } == 0;
        if !blocked {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` and `sig` are valid for the call.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                    on_signal(sig);
                }
            });
        if spawned.is_err() {
            // With no thread to receive them, unblock the signals so they still end the process.
            // SAFETY: as above.
            unsafe {
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            }
        }
    }

    fn on_signal(sig: libc::c_int) -> ! {
        crate::secrets::tor_keys::wipe_all();
        let name = match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            _ => "SIGQUIT",
        };
        let mut msg =
            format!("\noignon: interrupted ({name}); decrypted scratch keys were wiped\n");
        let hosts = crate::transport::interrupted_report();
        for line in &hosts {
            msg.push_str(&format!("  {line}\n"));
        }
        if hosts.iter().any(|l| l.starts_with("ssh ")) {
            let persist = crate::transport::masters::persist();
            let idle = if persist > 0 {
                persist
            } else {
                crate::transport::masters::IDLE_WHEN_NOT_KEPT_S
            };
            msg.push_str(&format!(
                "  ssh connections end on their own after {idle} s unused (--ssh-persist)\n"
            ));
        }
        // One write: the lines of a report are not interleaved with another thread's output.
        eprint!("{msg}");
        std::process::exit(128 + sig);
    }
}
