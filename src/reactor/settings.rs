//! Per-connection settings: a timeout or an output limit for one
//! connection, over the reactor's [`Config`].
//!
//! What they cost when unused must be nothing, since an idle connection
//! is its slab record and nothing else: the settings live in a side table
//! keyed by slab slot, not in the record (whose size a test holds at 144
//! bytes). While no connection has settings, the table is empty and
//! asking it is a length check; once some have, a connection's deadlines
//! and limits cost one hash lookup when they are looked at (arming a
//! timer, queueing or flushing output). An entry leaves with its
//! connection, in step 8.

use std::time::Duration;

use super::side_table::SideTable;
use crate::config::Config;

/// How to make an outbound connection
/// ([`Context::connect_with`](crate::Context::connect_with)).
///
/// ```
/// use std::time::Duration;
/// use evloop::Connect;
/// # use evloop::{Config, ConnId, Context, Handler, Reactor};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Message = ();
/// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
/// # }
/// # let backend = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut reactor = Reactor::new(Echo, Config::default())?;
/// // From this host's loopback address (any port), giving up after 250 ms.
/// let options = Connect {
///     bind: Some("127.0.0.1:0".parse().unwrap()),
///     timeout: Some(Duration::from_millis(250)),
/// };
/// let conn = reactor.connect_with(backend.local_addr()?, options)?;
/// // Only a timeout; the kernel picks the local address.
/// let quick = Connect { timeout: Some(Duration::from_millis(50)), ..Connect::default() };
/// # let _ = (conn, quick);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    /// The local address to connect from (an interface, or a port); the
    /// kernel chooses when `None`.
    pub bind: Option<std::net::SocketAddr>,
    /// This connect's timeout, instead of
    /// [`Config::connect_timeout`](crate::Config::connect_timeout).
    pub timeout: Option<Duration>,
}

/// What one connection was given apart from the `Config`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `Some(None)`: no idle timeout for this one.
    pub(crate) idle_timeout: Option<Option<Duration>>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    /// (soft, hard) output limits.
    pub(crate) output_limits: Option<(usize, usize)>,
    /// Tell the handler (`on_flushed`) once the output is all written.
    pub(crate) notify_flushed: bool,
}

/// The limits in force for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) soft_grace: Duration,
    pub(crate) high_water: usize,
    pub(crate) low_water: usize,
    pub(crate) soft_limit: usize,
    pub(crate) hard_limit: usize,
}

impl Limits {
    /// The reactor's, for a connection with no settings of its own.
    pub(crate) fn of(config: &Config) -> Self {
        Limits {
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            connect_timeout: config.connect_timeout,
            handshake_timeout: config.handshake_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
            soft_grace: config.soft_grace,
            high_water: config.high_water,
            low_water: config.low_water,
            soft_limit: config.soft_limit,
            hard_limit: config.hard_limit,
        }
    }

    /// These, with `settings` over them.
    pub(crate) fn with(mut self, settings: &Settings) -> Self {
        if let Some(idle) = settings.idle_timeout {
            self.idle_timeout = idle;
        }
        if let Some(write) = settings.write_timeout {
            self.write_timeout = write;
        }
        if let Some(connect) = settings.connect_timeout {
            self.connect_timeout = connect;
        }
        if let Some((soft, hard)) = settings.output_limits {
            self.soft_limit = soft;
            self.hard_limit = hard;
        }
        self
    }
}

/// The side table: settings by slab slot, for the connections that have
/// any.
pub(crate) type Table = SideTable<Settings>;
