//! A small HTTP/1.1 server for `/metrics` and `/health`: one thread, one connection at a
//! time, one request per connection (`Connection: close`).
//!
//! Scrapers send a few hundred bytes and read a few kilobytes, so serving them in turn is
//! enough; the read and write timeouts bound how long a slow or silent client holds the
//! thread, and no node thread ever waits on this one.

use super::Metrics;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::warn;

/// How long a client may take to send its request, or to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read; scrapers send far less.
const MAX_HEAD_BYTES: usize = 8 << 10;

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

pub(super) fn spawn(listener: TcpListener, metrics: Metrics) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        // A client that went away mid-answer is its own problem.
                        let _ = serve(stream, &metrics);
                    }
                    Err(error) => {
                        // Out of file descriptors, most likely; do not spin on it.
                        warn!("metrics: accept failed: {error}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

/// An answer: status line, content type, body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: &'static str, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        body.push('\n');
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

fn serve(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (reply, head_only) = match read_head(&mut stream) {
        Ok(head) => route(&head, metrics),
        Err(problem) => (Reply::text("400 Bad Request", problem), false),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// Reads up to the blank line that ends the request head; the text before it. The whole
/// head must come within `IO_TIMEOUT`: a client trickling a byte at a time is cut off too.
fn read_head(stream: &mut TcpStream) -> Result<String, String> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            return String::from_utf8(head).map_err(|_| "the request head is not UTF-8".into());
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(format!(
                "the request head is longer than {MAX_HEAD_BYTES} bytes"
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the request head took longer than {IO_TIMEOUT:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|error| format!("cannot read the request: {error}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the connection closed before the request head ended".into()),
            Ok(read) => head.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("the request head took longer than {IO_TIMEOUT:?}"));
            }
            Err(error) => return Err(format!("cannot read the request: {error}")),
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|window| window == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|window| window == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The reply to a request head, and whether it was a HEAD request (headers only).
fn route(head: &str, metrics: &Metrics) -> (Reply, bool) {
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let problem = format!("not an HTTP request line: {request_line:?}");
        return (Reply::text("400 Bad Request", problem), false);
    };
    if !version.starts_with("HTTP/1.") {
        let problem = format!("unsupported HTTP version {version:?}");
        return (Reply::text("400 Bad Request", problem), false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            Reply::text("405 Method Not Allowed", "only GET and HEAD"),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or("");
    let reply = match path {
        "/metrics" => Reply {
            status: "200 OK",
            content_type: PROMETHEUS_TEXT,
            body: metrics.encode(),
        },
        "/health" => match metrics.health() {
            Ok(line) => Reply::text("200 OK", line),
            Err(reason) => Reply::text("503 Service Unavailable", reason),
        },
        _ => Reply::text(
            "404 Not Found",
            format!("no {path}: try /metrics or /health"),
        ),
    };
    (reply, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(head: &str) -> &'static str {
        route(head, &Metrics::new(&[])).0.status
    }

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(status_of("GET /metrics HTTP/1.1\r\nHost: x"), "200 OK");
        assert_eq!(status_of("GET /metrics?x=1 HTTP/1.0"), "200 OK");
        // No core thread has published: not healthy.
        assert_eq!(status_of("GET /health HTTP/1.1"), "503 Service Unavailable");
        assert_eq!(status_of("GET /nothing HTTP/1.1"), "404 Not Found");
        assert_eq!(
            status_of("POST /metrics HTTP/1.1"),
            "405 Method Not Allowed"
        );
        assert_eq!(status_of("GET /metrics"), "400 Bad Request");
        assert_eq!(status_of("GET /metrics SPDY/3"), "400 Bad Request");
        assert_eq!(status_of("hello"), "400 Bad Request");
        assert!(route("HEAD /metrics HTTP/1.1", &Metrics::new(&[])).1);
    }

    #[test]
    fn a_client_trickling_its_request_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let trickler = std::thread::spawn(move || {
            let mut client = TcpStream::connect(addr).unwrap();
            // One byte every 100 ms would take far longer than IO_TIMEOUT to end the head.
            for _ in 0..60 {
                if client.write_all(b"G").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (mut stream, _) = listener.accept().unwrap();
        let started = Instant::now();
        let error = read_head(&mut stream).unwrap_err();
        assert!(error.contains("took longer"), "{error}");
        assert!(
            started.elapsed() < IO_TIMEOUT * 2,
            "{:?}",
            started.elapsed()
        );
        drop(stream);
        trickler.join().unwrap();
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"),
            Some(20)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
