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

/// A `timerfd` that becomes readable every `period` (non-blocking,
/// close-on-exec): a periodic timer the program owns, for
/// [`Context::register`](crate::Context::register) as a foreign source.
/// Reading it gives the expirations since the last read, as a native
/// `u64`. A zero period is taken as one nanosecond (zero would disarm it).
///
/// ```no_run
/// use std::fs::File;
/// use std::io::Read;
/// use std::os::fd::AsRawFd;
/// use std::time::Duration;
/// use evloop::{Config, Context, Handler, Reactor, Readiness, SourceId};
/// use mio::{unix::SourceFd, Interest};
/// # use evloop::ConnId;
///
/// /// Logs the connection count every second.
/// struct Report { tick: File }
/// impl Handler for Report {
///     type Message = ();
///     fn on_start(&mut self, cx: &mut Context<'_>) {
///         let fd = self.tick.as_raw_fd();
///         cx.register(&mut SourceFd(&fd), Interest::READABLE).expect("register the timerfd");
///     }
///     fn on_ready(&mut self, cx: &mut Context<'_>, _: SourceId, _: Readiness) {
///         let mut count = [0; 8];
///         // One read takes every expiration since the last (WouldBlock: none).
///         if self.tick.read_exact(&mut count).is_ok() {
///             let missed = u64::from_ne_bytes(count) - 1;
///             println!("{} open ({missed} ticks missed)", cx.stats().active);
///         }
///     }
/// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
/// }
///
/// let tick = evloop::sys::timerfd(Duration::from_secs(1))?;
/// let mut reactor = Reactor::new(Report { tick }, Config::default())?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn timerfd(period: std::time::Duration) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: timerfd_create takes two flags and returns a new descriptor
    // or -1; nothing is passed by pointer.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by timerfd_create, is open, and is
    // owned by nothing else: the File takes it and closes it once.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let period = period.max(std::time::Duration::from_nanos(1));
    let spec = libc::timespec {
        tv_sec: libc::time_t::try_from(period.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(period.subsec_nanos() as i32),
    };
    let value = libc::itimerspec {
        it_interval: spec,
        it_value: spec,
    };
    // SAFETY: `fd` is a timerfd; timerfd_settime reads one itimerspec
    // through a valid pointer and, with a null old-value pointer, writes
    // nothing.
    if unsafe { libc::timerfd_settime(fd, 0, &value, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// `sendfile(2)`: up to `count` bytes of `file` from `offset` to the
/// socket `out`, without passing through user space. Returns the bytes
/// sent; 0 for a nonzero `count` means the file ends at `offset`. The
/// file's own offset is not moved.
pub(crate) fn sendfile(
    out: std::os::fd::BorrowedFd<'_>,
    file: std::os::fd::BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset past off_t"))?;
    // SAFETY: both descriptors are open for the length of the call (they
    // are borrowed); sendfile reads and updates one off_t through a valid
    // pointer to a local, and touches no other memory of ours.
    let sent = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// The process at the other end of a Unix domain socket, as the kernel
/// recorded it when the socket connected (`SO_PEERCRED`): its pid, uid
/// and gid.
pub(crate) fn peer_cred(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the call (borrowed); getsockopt
    // writes at most `len` bytes into `cred`, a properly sized and
    // aligned local, and the actual length into `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// Pins the calling thread to CPU `cpu` (`sched_setaffinity`): a shard
/// stays on its core, with its caches (`ServerBuilder::pin_cpus`); a load
/// generator's thread stays off the server's.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU index past CPU_SETSIZE",
        ));
    }
    // SAFETY: cpu_set_t is plain old data, valid all zeroes; CPU_SET
    // writes one bit inside it (the index was checked against
    // CPU_SETSIZE above); sched_setaffinity reads size_of::<cpu_set_t>()
    // bytes through a valid pointer to a local, for the calling thread (0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Steers each new connection of a `SO_REUSEPORT` group to the socket
/// whose index is the number of the CPU that received its first packet,
/// modulo `n` (`SO_ATTACH_REUSEPORT_CBPF`, with the kernel selftest's
/// program: `ld #cpu; mod #n; ret a`). Attached to one socket, it serves
/// the whole group; socket `i` is the `i`th bound. Linux 4.5 and later;
/// `Err` elsewhere, and the kernel's hash goes on choosing.
pub(crate) fn steer_by_cpu(socket: std::os::fd::BorrowedFd<'_>, n: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no sockets"));
    }
    // BPF_LD|BPF_W|BPF_ABS at SKF_AD_OFF + SKF_AD_CPU loads the CPU
    // number; BPF_ALU|BPF_MOD|BPF_K takes it modulo n; BPF_RET|BPF_A
    // returns it as the socket's index.
    const SKF_AD_OFF: u32 = 0xffff_f000; // -0x1000
    const SKF_AD_CPU: u32 = 36;
    let code = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: SKF_AD_OFF.wrapping_add(SKF_AD_CPU),
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: n,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let program = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the descriptor is open (borrowed); setsockopt reads one
    // sock_fprog through a valid pointer to a local, whose `filter`
    // points at `code`, alive until the call returns (the kernel copies
    // the program).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&program as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on (`sched_getaffinity`), in order: a
/// `taskset` or a container's cpuset, not every CPU the machine has.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data, valid all zeroes;
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into
    // it through a valid pointer to a local, for the calling thread (0);
    // CPU_ISSET reads one bit of it, at an index below CPU_SETSIZE.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        set
    };
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: as above: one bit of a local set, the index in bounds.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}
