//! SIGINT and SIGTERM. The first one stops the node cleanly, as standard input closing
//! does with `--stop-on-stdin-eof`: the node stops accepting, answers what is in flight,
//! syncs, trims its log file and exits 0. A second one, for a stop that takes too long,
//! exits at once with the shell's status for death by that signal (130 for SIGINT, 143
//! for SIGTERM); nothing is lost that was acknowledged, since acknowledgements wait for
//! fsync, and the next start cuts the log's preallocated tail with a warning.
//!
//! signal-hook's iterator does the handler's part (an async-signal-safe write to a pipe),
//! so the rest runs on an ordinary thread.

use crate::logging;
use crate::queue::QueueSender;
use crate::runtime::{Control, CoreEvent};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io;
use tracing::{info, warn};

/// Takes over SIGINT and SIGTERM: the first asks the core thread (through `control`) to
/// stop, the second exits the process.
pub fn watch(control: QueueSender<CoreEvent>) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut arriving = signals.forever();
            let Some(first) = arriving.next() else {
                return;
            };
            info!("received {}, stopping", name(first));
            let reason = format!("received {}", name(first));
            let _ = control.send(CoreEvent::Control(Control::Shutdown(reason)));
            if let Some(second) = arriving.next() {
                warn!("received {} while stopping: exiting at once", name(second));
                logging::flush();
                std::process::exit(128 + second);
            }
        })?;
    Ok(())
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
