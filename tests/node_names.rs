//! Node names and cluster identity, with real processes on loopback: the original README's
//! sequence as written, names learned in the hello and kept across restarts, an old
//! numeric data directory, and the refusals (another cluster, a name claimed twice, bad
//! names).

#[path = "node_support/mod.rs"]
mod support;

use replog_node::client::NodeState;
use replog_node::local_cluster::{free_addrs, fresh_temp_dir};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::exe;

const TIMEOUT: Duration = Duration::from_secs(20);

/// A `replog start` process in `dir` (its data goes to `dir/data/` unless told otherwise),
/// logging to `dir/<tag>.log`. Stopped (standard input closed) and waited for on drop.
struct Node {
    child: Option<Child>,
    log: PathBuf,
    addr: String,
}

impl Node {
    fn start(dir: &Path, tag: &str, args: &[&str]) -> Node {
        let log = dir.join(format!("{tag}.log"));
        let addr_at = args.iter().position(|arg| *arg == "-a").expect("-a given");
        let child = Command::new(exe())
            .arg("start")
            .args(args)
            // The tests' lifeline: a node never outlives the test that started it.
            .arg("--stop-on-stdin-eof")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn replog start");
        Node {
            child: Some(child),
            log,
            addr: args[addr_at + 1].to_string(),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the node cleanly and checks that it exited 0.
    fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        drop(child.stdin.take());
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "{} exited {status}:\n{}",
            self.addr,
            self.log()
        );
    }

    fn status(&self) -> Option<NodeState> {
        support::status_of(&self.addr)
    }

    /// Waits until `probe` holds of the node's status.
    fn wait_status(&self, what: &str, probe: impl Fn(&NodeState) -> bool) -> NodeState {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(state) = self.status().filter(|state| probe(state)) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; status {:?}\n{}",
                self.addr,
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the node's log holds `text`.
    fn wait_log(&self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {text:?} in its log:\n{log}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!("log of {}:\n{}", self.addr, self.log());
                let _ = child.kill();
            }
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The members as `status` shows them: `1=node1@ADDR,...` (`?` for a name not heard).
fn members_of(state: &NodeState) -> String {
    let members = state.members.as_ref().expect("a status with members");
    let shown: Vec<String> = members
        .iter()
        .map(|member| {
            let name = member.name.as_deref().unwrap_or("?");
            format!("{}={name}@{}", member.id, member.addr)
        })
        .collect();
    shown.join(",")
}

fn named(addrs: &[String], names: &[&str]) -> String {
    let shown: Vec<String> = (0..addrs.len())
        .map(|k| format!("{}={}@{}", k + 1, names[k], addrs[k]))
        .collect();
    shown.join(",")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run replog")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The README's ports, 8080-8082, when all three are free; otherwise three free ports (the
/// same commands with those ports in place), since another process may hold 8080.
fn readme_addrs() -> Vec<String> {
    let readme: Vec<String> = (8080..=8082)
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let free = readme.iter().all(|addr| TcpListener::bind(addr).is_ok());
    if free {
        return readme;
    }
    eprintln!("127.0.0.1:8080-8082 are taken here: running the sequence on free ports");
    free_addrs(3).expect("free ports")
}

/// `start -i NAME -a ADDR -p "THE OTHER TWO"` as the original README writes it.
fn readme_start(dir: &Path, addrs: &[String], k: usize, leader: bool) -> Node {
    let others: Vec<&str> = (0..3)
        .filter(|&j| j != k)
        .map(|j| addrs[j].as_str())
        .collect();
    let peers = others.join(",");
    let name = format!("node{}", k + 1);
    let mut args = vec!["-i", &name, "-a", &addrs[k], "-p", &peers];
    if leader {
        args.push("--leader");
    }
    Node::start(dir, &name, &args)
}

fn start_readme_cluster(dir: &Path, addrs: &[String]) -> Vec<Node> {
    (0..3)
        .map(|k| readme_start(dir, addrs, k, k == 0))
        .collect()
}

#[test]
fn the_original_readme_sequence_works_as_written_and_names_survive_restarts() {
    let dir = fresh_temp_dir("names-readme").unwrap();
    let addrs = readme_addrs();
    let nodes = start_readme_cluster(&dir, &addrs);
    // As a person would: the next command once the nodes listen (`append` gives up at
    // once on an address that refuses connections).
    for node in &nodes {
        node.wait_status("the node to serve", |_| true);
    }
    let command = "user_login:alice";
    let appended = run(&dir, &["append", "-t", &addrs[0], "-c", command]);
    assert!(appended.status.success(), "{appended:?}");
    assert!(
        stdout(&appended).starts_with("committed at index 2 in term "),
        "{}",
        stdout(&appended)
    );
    let queried = run(&dir, &["query", "-t", &addrs[0]]);
    assert!(queried.status.success(), "{queried:?}");
    let listing = stdout(&queried);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("node node1 (id 1): "), "{listing}");
    assert!(
        lines[2].starts_with("2. ID:2 Term:") && lines[2].ends_with(" Command:user_login:alice"),
        "{listing}"
    );
    // Peers named only by address: each node learns the others' names in their hellos.
    let everyone = named(&addrs, &["node1", "node2", "node3"]);
    for node in &nodes {
        node.wait_status("every name", |state| members_of(state) == everyone);
        node.wait_log("is named node");
    }
    let record = |k: usize| {
        fs::read_to_string(dir.join(format!("data/node{}/cluster.json", k + 1))).unwrap()
    };
    let recorded = Instant::now() + TIMEOUT;
    while !(0..3).all(|k| record(k).matches("\"name\":\"node").count() == 3) {
        assert!(
            Instant::now() < recorded,
            "names never recorded: {}",
            record(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = run(&dir, &["status", "-t", &addrs[1]]);
    let members = stdout(&shown)
        .lines()
        .find_map(|line| line.strip_prefix("members: ").map(str::to_string))
        .unwrap_or_else(|| panic!("no members line: {}", stdout(&shown)));
    // Each member by id, name and address; a leader adds its followers' match indexes,
    // never its own (node2 is the one asked).
    let listed: Vec<&str> = members.split(", ").collect();
    assert_eq!(listed.len(), 3, "{members}");
    for (k, member) in listed.iter().enumerate() {
        let expected = format!("{}=node{}@{}", k + 1, k + 1, addrs[k]);
        let follower_of_leader = k != 1 && member.starts_with(&format!("{expected} (match "));
        assert!(*member == expected || follower_of_leader, "{members}");
    }
    // The configuration in force: the founding voters, no change made yet.
    assert!(
        stdout(&shown)
            .lines()
            .any(|line| line == "configuration: voters 1,2,3; learners none (bootstrap)"),
        "{}",
        stdout(&shown)
    );
    let records: Vec<String> = (0..3).map(record).collect();
    nodes.into_iter().for_each(Node::stop);

    // The same commands again: same ids, same names, the entry still there.
    let nodes = start_readme_cluster(&dir, &addrs);
    for node in &nodes {
        let state = node.wait_status("the restarted cluster to commit", |state| {
            state.leader.is_some() && state.commit_index >= 2
        });
        assert_eq!(members_of(&state), everyone);
    }
    let queried = run(&dir, &["query", "-t", &addrs[2]]);
    assert!(
        stdout(&queried).contains(" Command:user_login:alice"),
        "{}",
        stdout(&queried)
    );
    assert_eq!((0..3).map(record).collect::<Vec<_>>(), records);
    nodes.into_iter().for_each(Node::stop);

    // Alone, with neither -p nor its peers: the members and names come from cluster.json.
    let alone = Node::start(&dir, "node2-alone", &["-i", "node2", "-a", &addrs[1]]);
    let state = alone.wait_status("a status", |_| true);
    assert_eq!((state.node, state.name.as_deref()), (2, Some("node2")));
    assert_eq!(members_of(&state), everyone);
    // The logging thread writes on its own time: wait for the line.
    alone.wait_log("no -p given: the members are the recorded ones");
    alone.stop();
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_old_numeric_data_directory_starts_unchanged() {
    let dir = fresh_temp_dir("names-numeric").unwrap();
    let addr = free_addrs(1).unwrap().remove(0);
    let node = Node::start(&dir, "first", &["-i", "1", "-a", &addr, "-l"]);
    node.wait_status("leadership", |state| state.commit_index >= 1);
    let appended = run(&dir, &["append", "-t", &addr, "-c", "before names"]);
    assert!(appended.status.success(), "{appended:?}");
    node.stop();
    // What a replog from before names left: data/1/ with its log and metadata.json only.
    let record = dir.join("data/1/cluster.json");
    fs::remove_file(&record).expect("the first start recorded its identity");
    let node = Node::start(&dir, "again", &["-i", "1", "-a", &addr, "-l"]);
    let state = node.wait_status("the entry", |state| state.commit_index >= 3);
    assert_eq!((state.node, state.name.as_deref()), (1, Some("1")));
    let queried = run(&dir, &["query", "-t", &addr]);
    assert!(
        stdout(&queried).starts_with("node 1: leader"),
        "{queried:?}"
    );
    assert!(
        stdout(&queried).contains(" Command:before names"),
        "{queried:?}"
    );
    node.wait_log("predates names");
    node.stop();
    let text = fs::read_to_string(&record).expect("recorded at this start");
    assert!(
        text.contains(&format!(
            "\"id\":1,\"members\":[{{\"id\":1,\"name\":\"1\",\"addr\":\"{addr}\"}}]"
        )),
        "{text}"
    );
    let names: Vec<String> = fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["1"], "no second directory for the same node");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_node_of_another_cluster_is_refused_and_the_log_says_which() {
    let dir = fresh_temp_dir("names-other-cluster").unwrap();
    let addrs = free_addrs(3).unwrap();
    let ours = Node::start(&dir, "a", &["-i", "a", "-a", &addrs[0], "-p", &addrs[1]]);
    ours.wait_status("a status", |_| true);
    // Another cluster (founded on other addresses) with a member at the address ours
    // expects its peer at, in its own data directory.
    let theirs_dir = dir.join("theirs");
    fs::create_dir(&theirs_dir).unwrap();
    let peers = format!("{},{}", addrs[0], addrs[2]);
    let theirs = Node::start(
        &theirs_dir,
        "b",
        &["-i", "b", "-a", &addrs[1], "-p", &peers],
    );
    let refusal = format!("peer at {} belongs to cluster \"replog\" (id ", addrs[1]);
    let log = ours.wait_log(&refusal);
    let line = log.lines().find(|line| line.contains(&refusal)).unwrap();
    assert!(
        line.contains("WARN") && line.contains("refused peer connection from"),
        "{line}"
    );
    theirs.wait_log("refused our hello: peer at");
    let state = ours.status().expect("status");
    assert_eq!(
        members_of(&state),
        format!("1=a@{},2=?@{}", addrs[0], addrs[1])
    );
    theirs.stop();
    ours.stop();

    // Our data directory, started with their cluster's members: refused before it runs.
    let started = run(
        &dir,
        &[
            "start",
            "-i",
            "a",
            "-a",
            &addrs[0],
            "-p",
            &peers,
            "--stop-on-stdin-eof",
        ],
    );
    let error = String::from_utf8_lossy(&started.stderr);
    assert!(!started.status.success(), "{error}");
    assert!(
        error.contains("data directory data/a belongs to cluster ")
            && error.contains(&format!("founded with 1={},2={}", addrs[0], addrs[1]))
            && error.contains(&format!("describe 1={},2={}", addrs[0], addrs[2])),
        "{error}"
    );
    let started = run(
        &dir,
        &[
            "start",
            "-i",
            "a",
            "-a",
            &addrs[0],
            "--cluster-id",
            "elsewhere",
            "--stop-on-stdin-eof",
        ],
    );
    let error = String::from_utf8_lossy(&started.stderr);
    assert!(!started.status.success(), "{error}");
    assert!(
        error.contains("data directory data/a belongs to cluster id ")
            && error.contains("but --cluster-id says elsewhere"),
        "{error}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_name_claimed_by_a_second_address_is_refused() {
    let dir = fresh_temp_dir("names-claimed").unwrap();
    let addrs = free_addrs(3).unwrap();
    let all = addrs.join(",");
    let first = Node::start(&dir, "node1", &["-i", "node1", "-a", &addrs[0], "-p", &all]);
    let second = Node::start(&dir, "node2", &["-i", "node2", "-a", &addrs[1], "-p", &all]);
    first.wait_status("node2's name", |state| {
        members_of(state).contains(&format!("2=node2@{}", addrs[1]))
    });
    // The third member's address, claiming the second's name (its own data directory).
    let impostor_dir = dir.join("impostor");
    fs::create_dir(&impostor_dir).unwrap();
    let impostor = Node::start(
        &impostor_dir,
        "impostor",
        &["-i", "node2", "-a", &addrs[2], "-p", &all],
    );
    let refusal = format!(
        "peer at {} (node 3) claims the name node2, which is node 2's at {}",
        addrs[2], addrs[1]
    );
    first.wait_log(&refusal);
    second.wait_log(&refusal);
    let state = first.status().expect("status");
    assert_eq!(
        members_of(&state),
        format!("1=node1@{},2=node2@{},3=?@{}", addrs[0], addrs[1], addrs[2])
    );
    impostor.stop();
    second.stop();
    first.stop();
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn bad_names_are_refused_by_the_cli_naming_the_rule() {
    let dir = fresh_temp_dir("names-bad").unwrap();
    let long = "n".repeat(65);
    let rule = "it must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'";
    for (name, why) in [
        ("node 1", "holds ' '"),
        ("data/node1", "holds '/'"),
        (long.as_str(), "is 65 bytes long"),
        ("", "node name is empty"),
    ] {
        let output = run(&dir, &["start", "-i", name, "-a", "127.0.0.1:1"]);
        let error = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name:?}: {error}");
        assert!(
            error.contains(why) && error.contains(rule),
            "{name:?}: {error}"
        );
    }
    let output = run(
        &dir,
        &[
            "start",
            "-i",
            "a",
            "-a",
            "127.0.0.1:1",
            "-p",
            "b c=127.0.0.1:2",
        ],
    );
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{error}");
    assert!(
        error.contains("peer \"b c=127.0.0.1:2\": node name \"b c\" holds ' '"),
        "{error}"
    );
    assert!(
        fs::read_dir(&dir).unwrap().next().is_none(),
        "a refused start creates nothing"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_peer_that_fails_the_cluster_secret_teaches_no_name() {
    use replog_node::identity::{ClusterId, NodeName};
    use replog_node::transport::wire::{Hello, PEER_HELLO_OP, PROTOCOL_VERSION};
    use std::io::{BufRead, BufReader, Write};
    let dir = fresh_temp_dir("names-secret").unwrap();
    let addrs = free_addrs(2).unwrap();
    let secret = dir.join("secret");
    fs::write(&secret, "the cluster's secret").unwrap();
    let secret = secret.display().to_string();
    let args = ["-i", "a", "-a", &addrs[0], "-p", &addrs[1]];
    let node = Node::start(
        &dir,
        "a",
        &[&args[..], &["--cluster-secret-file", &secret]].concat(),
    );
    node.wait_status("a status", |_| true);
    let record = replog_node::identity::record::read(&dir.join("data/a"))
        .unwrap()
        .expect("recorded");
    // Member 2's hello, typed by someone without the secret, under a name of their own.
    let hello = Hello {
        op: PEER_HELLO_OP.into(),
        version: PROTOCOL_VERSION,
        cluster: "replog".into(),
        cluster_id: ClusterId::parse(record.cluster_id.as_str()).unwrap(),
        from: 2,
        name: NodeName::parse("mallory").unwrap(),
        addr: addrs[1].clone(),
        members: record.members.fingerprint(),
        nonce: Some("ab".repeat(32)),
    };
    let mut stream = std::net::TcpStream::connect(&addrs[0]).unwrap();
    stream.write_all(&hello.encode_line()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut challenge = String::new();
    BufReader::new(&stream).read_line(&mut challenge).unwrap();
    assert!(challenge.contains("peer_challenge"), "{challenge}");
    stream
        .write_all(b"{\"op\":\"peer_proof\",\"proof\":\"00\"}\n")
        .unwrap();
    node.wait_log("wrong proof of the cluster secret");
    let state = node.status().expect("status");
    assert_eq!(
        members_of(&state),
        format!("1=a@{},2=?@{}", addrs[0], addrs[1])
    );
    node.stop();
    let _ = fs::remove_dir_all(dir);
}
