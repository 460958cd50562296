//! Client authentication with a shared token (`--client-token-file`).
//!
//! A node started with a token file serves a client connection only once it has shown the
//! token: either in a first `{"op":"auth","token":"..."}` line, answered
//! `{"ok":true,"authenticated":true}`, or as a `"token"` field on a request. Either way a
//! correct token authenticates the connection for the requests after it, and a wrong or
//! missing one is answered `unauthorized` and the connection is closed. A node without a
//! token file ignores tokens (and answers `auth` as authenticated), so clients can be
//! given a token before the nodes require one.
//!
//! Peers are not clients: a connection whose first line is a `peer_hello` is let through
//! here and authenticated by the peer handshake (`--cluster-secret-file`).

use super::protocol::ParsedLine;
use crate::config::ConfigError;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The token a node requires of its clients.
///
/// Only its digest is kept: comparing digests of equal length in constant time hides
/// both where a guess differs and how long the token is.
#[derive(Clone)]
pub struct ClientToken {
    digest: [u8; 32],
    path: PathBuf,
    /// Problems worth a warning in the node's log (a world-readable file).
    pub warnings: Vec<String>,
}

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token: the configuration is logged and printed in tests.
        f.debug_struct("ClientToken")
            .field("path", &self.path)
            .finish()
    }
}

impl ClientToken {
    /// Reads the token from `path` (`--client-token-file`): a missing, unreadable or empty
    /// file is an error; one that every user may read, a warning.
    pub fn load(path: &Path) -> Result<ClientToken, ConfigError> {
        let token = read_token_file("--client-token-file", path).map_err(ConfigError)?;
        let mut loaded = ClientToken::from_token(&token);
        loaded.path = path.to_path_buf();
        loaded.warnings = crate::transport::auth::permission_warning("--client-token-file", path)
            .into_iter()
            .collect();
        Ok(loaded)
    }

    /// A token given directly (tests).
    pub fn from_token(token: &str) -> ClientToken {
        assert!(!token.is_empty(), "a client token is never empty");
        ClientToken {
            digest: Sha256::digest(token.as_bytes()).into(),
            path: PathBuf::new(),
            warnings: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `given` is the token; takes the same time wherever a guess differs.
    pub fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let difference = given
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// Reads a token file, for the node (`--client-token-file`) and the CLI (`--token-file`):
/// whitespace around the token is ignored, so `echo ... > FILE` works; the token is text
/// (it travels in a JSON string). `flag` names the file in errors.
pub fn read_token_file(flag: &str, path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("{flag} {}: cannot read it: {error}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{flag} {}: the token is not UTF-8 text", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{flag} {} is empty; put the client token in it",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// What the front end does with one line, before anything else.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Handle the line as usual.
    Pass,
    /// An `auth` line that authenticated (or a node without a token): answer
    /// `authenticated`.
    Authenticated,
    /// Answer `unauthorized` with this message and close the connection.
    Refuse(String),
}

/// Decides whether a connection may have `parsed` (which carried `token`, if any) carried
/// out; a correct token marks the connection `authenticated`.
pub fn gate(
    required: Option<&ClientToken>,
    authenticated: &mut bool,
    parsed: &ParsedLine,
    token: Option<&str>,
) -> Gate {
    let is_auth = matches!(parsed, ParsedLine::Auth);
    if matches!(parsed, ParsedLine::Blank | ParsedLine::PeerHello) {
        return Gate::Pass;
    }
    let Some(required) = required else {
        return if is_auth {
            Gate::Authenticated
        } else {
            Gate::Pass
        };
    };
    match token {
        Some(token) if required.matches(token) => {
            *authenticated = true;
            if is_auth {
                Gate::Authenticated
            } else {
                Gate::Pass
            }
        }
        Some(_) => Gate::Refuse("wrong client token; closing the connection".into()),
        None if is_auth => Gate::Refuse("auth needs a \"token\"; closing the connection".into()),
        None if *authenticated => Gate::Pass,
        None => Gate::Refuse(
            "this node requires a client token: send {\"op\":\"auth\",\"token\":...} first, \
             or \"token\" on the request; closing the connection"
                .into(),
        ),
    }
}

/// Appends the `auth` line for `token`, newline included.
pub fn encode_auth(token: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"op\":\"auth\",\"token\":");
    // Writing a string into a Vec cannot fail.
    serde_json::to_writer(&mut *out, token).expect("a string always serializes");
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::protocol::Request;

    fn run(required: Option<&ClientToken>, lines: &[&str]) -> Vec<Gate> {
        let mut authenticated = false;
        lines
            .iter()
            .map(|line| {
                let (parsed, token) = Request::parse_with_token(line.as_bytes());
                gate(required, &mut authenticated, &parsed, token.as_deref())
            })
            .collect()
    }

    #[test]
    fn only_the_right_token_opens_a_connection_and_it_stays_open() {
        let token = ClientToken::from_token("s3cret");
        let refused = |gate: &Gate| matches!(gate, Gate::Refuse(_));
        let gates = run(
            Some(&token),
            &[r#"{"op":"auth","token":"s3cret"}"#, r#"{"op":"status"}"#],
        );
        assert_eq!(gates, [Gate::Authenticated, Gate::Pass]);
        let gates = run(
            Some(&token),
            &[r#"{"op":"status","token":"s3cret"}"#, r#"{"op":"status"}"#],
        );
        assert_eq!(gates, [Gate::Pass, Gate::Pass]);
        for line in [
            r#"{"op":"status"}"#,
            r#"{"op":"status","token":"s3cre"}"#,
            r#"{"op":"auth","token":"s3cretx"}"#,
            r#"{"op":"auth"}"#,
            r#"{"op":"nonsense"}"#,
            "{not json",
        ] {
            let gates = run(Some(&token), &[line]);
            assert!(refused(&gates[0]), "{line} let through: {gates:?}");
        }
        // A wrong token on an authenticated connection is still refused.
        let gates = run(
            Some(&token),
            &[
                r#"{"op":"auth","token":"s3cret"}"#,
                r#"{"op":"status","token":"x"}"#,
            ],
        );
        assert!(refused(&gates[1]), "{gates:?}");
        // Peers authenticate in their own handshake.
        let hello = format!("{{\"op\":\"{}\"}}", crate::transport::wire::PEER_HELLO_OP);
        assert_eq!(run(Some(&token), &[&hello]), [Gate::Pass]);
    }

    #[test]
    fn a_node_without_a_token_ignores_tokens() {
        let gates = run(
            None,
            &[
                r#"{"op":"auth","token":"any"}"#,
                r#"{"op":"status","token":"x"}"#,
            ],
        );
        assert_eq!(gates, [Gate::Authenticated, Gate::Pass]);
    }

    #[test]
    fn the_auth_line_carries_the_token_as_a_json_string() {
        let mut line = Vec::new();
        encode_auth("a\"b", &mut line);
        assert_eq!(line, b"{\"op\":\"auth\",\"token\":\"a\\\"b\"}\n");
        let (parsed, token) = Request::parse_with_token(&line[..line.len() - 1]);
        assert!(matches!(parsed, ParsedLine::Auth));
        assert_eq!(token.as_deref(), Some("a\"b"));
    }

    #[test]
    fn token_files_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let missing = read_token_file("--token-file", &path).unwrap_err();
        assert!(missing.contains("cannot read it"), "{missing}");
        std::fs::write(&path, " \n").unwrap();
        let empty = read_token_file("--token-file", &path).unwrap_err();
        assert!(empty.contains("is empty"), "{empty}");
        std::fs::write(&path, "tok\n").unwrap();
        assert_eq!(read_token_file("--token-file", &path).unwrap(), "tok");
    }
}
