//! What the benchmark reads about processes from Linux's `/proc`: CPU time and resident
//! memory. Elsewhere every reading is `None` and the report leaves those fields out.

use std::fs;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux target
/// we build for; reading it properly would need `sysconf` from libc).
const TICKS_PER_SEC: u64 = 100;

/// User plus system CPU time a process has used so far, in microseconds.
pub fn cpu_us(pid: u32) -> Option<u64> {
    cpu_us_of(&format!("/proc/{pid}/stat"))
}

/// The same for this process (the load generator itself).
pub fn own_cpu_us() -> Option<u64> {
    cpu_us_of("/proc/self/stat")
}

fn cpu_us_of(path: &str) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_ascii_whitespace();
    // Fields 14 and 15 (utime, stime) counting from 1 = indexes 11 and 12 after field 2.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / TICKS_PER_SEC)
}

/// A process's resident set size now, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(own_cpu_us().is_some());
        assert!(rss_bytes(std::process::id()).is_some_and(|rss| rss > 0));
    }
}
