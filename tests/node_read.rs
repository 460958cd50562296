//! `read`, `follow` and `query`'s range on real node processes over loopback: committed
//! entries served from the segments (`--log-cache-bytes 0`, small segments), in order,
//! without gaps or duplicates, within their limits, across a leader's kill.

mod node_support;

use node_support::{exe, TestCluster};
use replog_node::client::blocking::Connection;
use replog_node::client::{Consistency, LogEntry, ReadPage, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Entries really come from storage: no cache, and many segments.
const FROM_STORAGE: &[&str] = &["--log-cache-bytes", "0", "--segment-bytes", "4096"];
const WAIT: Duration = Duration::from_secs(30);

/// Appends `commands` through the leader, pipelined on one connection; panics unless
/// every one commits.
fn append_all(cluster: &TestCluster, commands: &[String]) {
    let (leader, _) = cluster.stable_leader(&(0..cluster.cluster.len()).collect::<Vec<_>>(), WAIT);
    let mut connection = Connection::connect(&cluster.addr(leader), WAIT).unwrap();
    for chunk in commands.chunks(1000) {
        for command in chunk {
            let request = Request::Append {
                command: command.clone(),
            };
            connection.send(&request).unwrap();
        }
        for command in chunk {
            match connection.recv().unwrap() {
                Response::Appended { .. } => {}
                other => panic!("append {command:?}: {other:?}"),
            }
        }
    }
}

fn read(addr: &str, from: u64, limit: usize) -> Response {
    let mut connection = Connection::connect(addr, WAIT).unwrap();
    connection
        .call(&Request::Read {
            from,
            limit,
            consistency: Consistency::Local,
        })
        .unwrap()
}

fn page(addr: &str, from: u64, limit: usize) -> ReadPage {
    match read(addr, from, limit) {
        Response::Read(page) => page,
        other => panic!("read from {from}: {other:?}"),
    }
}

/// Every committed command node `k` lists with `query`, in order.
fn committed_commands(cluster: &TestCluster, k: usize) -> Vec<(u64, Option<String>)> {
    let entries = cluster.query(k).unwrap().entries.unwrap();
    let committed = entries.into_iter().filter(|entry| entry.committed);
    committed
        .map(|entry| (entry.index, entry.command))
        .collect()
}

/// A raw connection, for lines the blocking client would not send.
fn raw(addr: &str) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn next_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "connection ended: {line:?}");
    line
}

/// Reads a follow stream on a thread: each line as it comes.
fn stream_lines(addr: &str, from: u64) -> mpsc::Receiver<String> {
    let (mut stream, mut reader) = raw(addr);
    stream.set_read_timeout(None).unwrap();
    writeln!(stream, r#"{{"op":"follow","from":{from}}}"#).unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let _keep_open = stream;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    lines
}

fn commands(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix} {n}")).collect()
}

#[test]
fn read_pages_through_the_committed_log_as_query_lists_it() {
    let cluster = TestCluster::start_with("read-pages", 3, FROM_STORAGE);
    append_all(&cluster, &commands("set", 300));
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], WAIT);
    let addr = cluster.addr(leader);
    let listed = committed_commands(&cluster, leader);

    let mut read_back = Vec::new();
    let mut from = 1;
    loop {
        let page = page(&addr, from, 64);
        assert!(page.entries.len() <= 64, "{}", page.entries.len());
        assert_eq!(page.first_index, 1);
        assert!(page.commit_index >= 301, "{}", page.commit_index);
        assert_eq!(page.next, from + page.entries.len() as u64);
        if page.entries.is_empty() {
            break;
        }
        read_back.extend(page.entries.into_iter().map(|e| (e.index, e.command)));
        from = page.next;
    }
    assert_eq!(read_back, listed);
    assert!(read_back.len() >= 301, "{}", read_back.len());

    // Beyond the commit index: no entries, and `next` stays where it was asked.
    let beyond = page(&addr, 10_000, 5);
    assert!(beyond.entries.is_empty());
    assert_eq!(beyond.next, 10_000);
    // Without `limit`, 1000 entries at most.
    let (mut stream, mut reader) = raw(&addr);
    writeln!(stream, r#"{{"op":"read","from":2}}"#).unwrap();
    match Response::parse(next_line(&mut reader).trim_end().as_bytes()).unwrap() {
        Response::Read(page) => {
            assert_eq!(page.entries.len(), read_back.len() - 1);
            assert_eq!(page.entries[0].index, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_answer_holds_at_most_one_mebibyte_of_entries() {
    let cluster = TestCluster::start_with("read-cap", 1, FROM_STORAGE);
    let big: Vec<String> = (0..24)
        .map(|n| format!("{n:02}{}", "x".repeat(100_000)))
        .collect();
    append_all(&cluster, &big);
    let addr = cluster.addr(0);
    let mut connection = Connection::connect(&addr, WAIT).unwrap();
    connection
        .send(&Request::Read {
            from: 2,
            limit: 1000,
            consistency: Consistency::Linearizable,
        })
        .unwrap();
    let line = connection.recv_line().unwrap().to_vec();
    let first = match Response::parse(&line).unwrap() {
        Response::Read(page) => page,
        other => panic!("{other:?}"),
    };
    let count = first.entries.len();
    assert!((1..=10).contains(&count), "{count} entries of 100 kB");
    assert!(line.len() < (1 << 20) + 200, "{} bytes", line.len());
    assert_eq!(first.next, 2 + count as u64);
    assert_eq!(first.entries[0].command.as_deref(), Some(big[0].as_str()));
    // Paging on gets the rest, each page capped the same way.
    let mut from = first.next;
    let mut seen = count;
    while seen < big.len() {
        let page = page(&addr, from, 1000);
        assert!(!page.entries.is_empty() && page.entries.len() <= 10);
        seen += page.entries.len();
        from = page.next;
    }
    assert_eq!(seen, big.len());
}

#[test]
fn malformed_reads_and_follows_get_bad_request_and_the_connection_goes_on() {
    let cluster = TestCluster::start("read-bad", 1);
    cluster.stable_leader(&[0], WAIT);
    let (mut stream, mut reader) = raw(&cluster.addr(0));
    let bad = [
        r#"{"op":"read","from":0}"#,
        r#"{"op":"read","from":-3}"#,
        r#"{"op":"read","from":"1"}"#,
        r#"{"op":"read","from":2.5}"#,
        r#"{"op":"read"}"#,
        r#"{"op":"read","from":1,"limit":0}"#,
        r#"{"op":"read","from":1,"limit":-1}"#,
        r#"{"op":"follow","from":0}"#,
        r#"{"op":"follow"}"#,
        r#"{"op":"query","from":0}"#,
    ];
    for line in bad {
        writeln!(stream, "{line}").unwrap();
    }
    writeln!(stream, r#"{{"op":"status"}}"#).unwrap();
    for line in bad {
        let answer = next_line(&mut reader);
        assert!(
            answer.contains(r#""error":"bad_request""#),
            "{line}: {answer}"
        );
        assert!(
            answer.contains("from") || answer.contains("limit"),
            "{line}: {answer}"
        );
    }
    assert!(next_line(&mut reader).contains(r#""role":"leader""#));
}

#[test]
fn follow_from_one_streams_every_committed_entry_in_order_across_a_leader_kill() {
    let mut cluster = TestCluster::start_with("follow-kill", 3, FROM_STORAGE);
    append_all(&cluster, &commands("before", 200));
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], WAIT);
    let follower = (leader + 1) % 3;
    let lines = stream_lines(&cluster.addr(follower), 1);

    cluster.cluster.kill(leader);
    let rest: Vec<usize> = (0..3).filter(|&k| k != leader).collect();
    let (new_leader, new_term) = cluster.stable_leader(&rest, WAIT);
    let after = commands("after", 200);
    let mut connection = Connection::connect(&cluster.addr(new_leader), WAIT).unwrap();
    for command in &after {
        let request = Request::Append {
            command: command.clone(),
        };
        assert!(matches!(
            connection.call(&request).unwrap(),
            Response::Appended { .. }
        ));
    }
    let last = cluster.status(new_leader).unwrap().commit_index;

    let mut streamed = Vec::new();
    let deadline = Instant::now() + WAIT;
    while streamed.len() < last as usize {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("stream stopped after {} entries", streamed.len()));
        let entry =
            LogEntry::parse(line.trim_end().as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
        streamed.push(entry);
    }
    let indexes: Vec<u64> = streamed.iter().map(|entry| entry.index).collect();
    assert_eq!(
        indexes,
        (1..=last).collect::<Vec<u64>>(),
        "in order, no gap, no duplicate"
    );
    let streamed_commands: Vec<&str> = streamed
        .iter()
        .filter_map(|e| e.command.as_deref())
        .collect();
    let expected: Vec<String> = commands("before", 200).into_iter().chain(after).collect();
    assert_eq!(streamed_commands, expected);
    assert!(
        streamed
            .iter()
            .any(|e| e.term == new_term && e.command.is_none()),
        "the new leader's no-op is in the stream"
    );
    assert_eq!(committed_commands(&cluster, follower).len(), last as usize);
}

#[test]
fn follow_beyond_the_commit_index_waits_then_streams_new_entries() {
    let cluster = TestCluster::start_with("follow-wait", 3, FROM_STORAGE);
    append_all(&cluster, &commands("old", 20));
    let (leader, _) = cluster.stable_leader(&[0, 1, 2], WAIT);
    let commit = cluster.status(leader).unwrap().commit_index;
    let from = commit + 3;
    let lines = stream_lines(&cluster.addr(leader), from);
    let fresh = commands("new", 10);
    append_all(&cluster, &fresh);
    let mut got = Vec::new();
    while got.len() < 8 {
        let line = lines.recv_timeout(WAIT).expect("the stream goes on");
        got.push(LogEntry::parse(line.trim_end().as_bytes()).unwrap());
    }
    assert_eq!(got[0].index, from, "the first line is the entry asked for");
    let got: Vec<&str> = got.iter().filter_map(|e| e.command.as_deref()).collect();
    assert_eq!(got, &fresh[2..]);
}

#[test]
fn requests_pipelined_after_follow_get_bad_request_in_place_and_the_stream_goes_on() {
    let cluster = TestCluster::start("follow-pipelined", 1);
    append_all(&cluster, &commands("a", 3));
    let addr = cluster.addr(0);
    let (mut stream, mut reader) = raw(&addr);
    let pipelined = [
        r#"{"op":"status"}"#,
        r#"{"op":"follow","from":1}"#,
        r#"{"op":"append","command":"not carried out"}"#,
        r#"{"op":"status"}"#,
    ];
    stream
        .write_all(format!("{}\n", pipelined.join("\n")).as_bytes())
        .unwrap();
    assert!(
        next_line(&mut reader).contains(r#""role":"leader""#),
        "answered before the stream"
    );
    let mut entries = Vec::new();
    let mut refused = 0;
    while entries.len() < 4 || refused < 2 {
        let line = next_line(&mut reader);
        if line.contains(r#""error":"bad_request""#) {
            assert!(line.contains("follows the log"), "{line}");
            refused += 1;
        } else {
            entries.push(LogEntry::parse(line.trim_end().as_bytes()).unwrap().index);
        }
        assert!(refused <= 2, "{line}");
    }
    append_all(&cluster, &commands("b", 2));
    while entries.len() < 6 {
        let line = next_line(&mut reader);
        entries.push(LogEntry::parse(line.trim_end().as_bytes()).unwrap().index);
    }
    assert_eq!(entries, [1, 2, 3, 4, 5, 6]);
    let listed = committed_commands(&cluster, 0);
    assert!(listed
        .iter()
        .all(|(_, c)| c.as_deref() != Some("not carried out")));
}

/// Keeps the kernel from taking the backlog off the node's hands: loopback receive
/// buffers may otherwise grow to tens of megabytes, and what they hold is not in the
/// node's resident memory.
fn small_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 64 << 10;
    // SAFETY: a valid socket, and a pointer to a c_int of the size given.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

/// Resident memory of process `pid`, in KiB, and its number of open files.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

#[test]
fn followers_that_never_read_hold_bounded_memory_and_appends_keep_committing() {
    let cluster = TestCluster::start_with("follow-stalled", 1, FROM_STORAGE);
    let pid = cluster.cluster.pid(0).unwrap();
    let payload = "y".repeat(2000);
    let first: Vec<String> = (0..6000).map(|n| format!("{n} {payload}")).collect();
    append_all(&cluster, &first);
    let (rss_before, fds_before) = footprint(pid);
    // 16 streams, each 12 MB behind, none read: buffering a backlog would take 190 MB.
    let addr = cluster.addr(0);
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            small_receive_buffer(&stream);
            writeln!(stream, r#"{{"op":"follow","from":1}}"#).unwrap();
            stream
        })
        .collect();
    let more: Vec<String> = (0..2000).map(|n| format!("more {n} {payload}")).collect();
    append_all(&cluster, &more);
    // The streams' reads go on after the appends: watch for a while, keep the peak.
    let (rss_after, fds_after) = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            footprint(pid)
        })
        .fold((0, 0), |(rss, fds), (r, f)| (rss.max(r), fds.max(f)));
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // A socket and at most one segment file per stream.
    assert!(
        fds_after <= fds_before + 2 * stalled.len() + 4,
        "{fds_before} -> {fds_after}"
    );
    drop(stalled);
    let last = cluster.status(0).unwrap().commit_index;
    assert!(last >= 8001, "{last}");
}

#[test]
fn query_lists_a_range_with_from_and_limit() {
    let cluster = TestCluster::start_with("query-range", 1, FROM_STORAGE);
    append_all(&cluster, &commands("q", 40));
    let addr = cluster.addr(0);
    let output = Command::new(exe())
        .args(["query", "-t", &addr, "--from", "5", "--limit", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("node 1: leader"), "{text}");
    assert_eq!(lines[1], "1. ID:5 Term:1 Committed:true Command:q 3");
    assert_eq!(lines[3], "3. ID:7 Term:1 Committed:true Command:q 5");
    // The whole log without them, as before.
    let whole = Command::new(exe())
        .args(["query", "-t", &addr])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(whole.stdout).unwrap().lines().count(), 42);
}

#[test]
fn the_read_and_follow_commands_print_committed_entries() {
    let cluster = TestCluster::start_with("read-cli", 1, FROM_STORAGE);
    append_all(
        &cluster,
        &[
            "one".to_string(),
            "two\nlines".to_string(),
            "three".to_string(),
        ],
    );
    let addr = cluster.addr(0);
    let read = Command::new(exe())
        .args(["read", "-t", &addr, "--from", "2", "--limit", "2"])
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    assert_eq!(
        String::from_utf8(read.stdout).unwrap(),
        "1. ID:2 Term:1 Committed:true Command:one\n\
         2. ID:3 Term:1 Committed:true Command:two\\nlines\n\
         next 4, first index 1, commit index 4\n"
    );
    let follow = Command::new(exe())
        .args([
            "follow", "-t", &addr, "--from", "1", "--count", "4", "--json",
        ])
        .output()
        .unwrap();
    assert!(follow.status.success(), "{follow:?}");
    let lines: Vec<LogEntry> = String::from_utf8(follow.stdout)
        .unwrap()
        .lines()
        .map(|line| LogEntry::parse(line.as_bytes()).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].command, None);
    assert_eq!(lines[2].command.as_deref(), Some("two\nlines"));

    // Without --from: from the next entry to commit, whenever it started following.
    let mut waiting = Command::new(exe())
        .args(["follow", "-t", &addr, "--count", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut tick = 0;
    cluster.wait_for(WAIT, "follow to print an entry and exit", |cluster| {
        tick += 1;
        cluster.append(&format!("tick {tick}"));
        waiting.try_wait().unwrap().map(drop)
    });
    let output = waiting.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let (_, command) = text.split_once("Command:").unwrap();
    let printed: u64 = command
        .trim_end()
        .strip_prefix("tick ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(printed >= 1 && text.lines().count() == 1, "{text}");
    assert_eq!(
        text,
        format!(
            "1. ID:{} Term:1 Committed:true Command:tick {printed}\n",
            4 + printed
        )
    );
}
