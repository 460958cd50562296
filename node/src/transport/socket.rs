//! Kernel options on peer sockets, so that a connection whose packets vanish (a cut
//! network, a peer machine that died) fails within seconds instead of lingering behind
//! TCP's backed-off retransmission timer, which stretches to minutes.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Unacknowledged data older than this aborts the connection (`TCP_USER_TIMEOUT`); the
/// dialer's own acknowledgement check usually notices sooner.
const USER_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is probed after this long without traffic, then every interval.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_PROBES: libc::c_int = 3;

/// Sets keepalive and `TCP_USER_TIMEOUT` on a peer connection, either end.
pub fn tune_peer_socket(socket: &impl AsRawFd) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        seconds(KEEPALIVE_IDLE),
    )?;
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        seconds(KEEPALIVE_INTERVAL),
    )?;
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES)?;
    let user_timeout_ms = libc::c_int::try_from(USER_TIMEOUT.as_millis()).expect("fits");
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        user_timeout_ms,
    )
}

fn seconds(duration: Duration) -> libc::c_int {
    libc::c_int::try_from(duration.as_secs()).expect("fits")
}

fn set(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket borrowed from its owner for the call, and `value` is
    // a `c_int` whose size is passed along, as these options take.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
