//! The crate's only `unsafe` code: what the operating system offers that
//! neither std, mio nor socket2 wraps.
#![allow(unsafe_code)]

use std::io;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit
/// and returns the limit now in force. Every connection is a descriptor; the
/// soft limit is often 1,024 while the hard limit allows far more, and a
/// C10K server must ask for it.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a
    // properly initialised local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    // rlim_t is u64 on Linux; the conversion is for platforms where it is not.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(limit.rlim_cur))
}

/// Whether an error means the process or the system ran out of file
/// descriptors (`EMFILE`, `ENFILE`).
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The signals that ask a server to stop: Ctrl-C, and what `kill`,
/// systemd and Kubernetes send.
pub(crate) const SIGINT: i32 = libc::SIGINT;
/// See [`SIGINT`].
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
