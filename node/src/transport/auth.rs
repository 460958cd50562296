//! Peer authentication with a shared cluster secret (`--cluster-secret-file`).
//!
//! Both ends of a peer connection prove that they know the secret without sending it: the
//! dialer's hello carries a fresh random nonce; the listener answers with its own nonce and
//! `HMAC-SHA256(secret, "listener" label, hello line, listener nonce, listener id)`; the
//! dialer checks that and answers with the same HMAC under the "dialer" label. Each proof
//! covers both nonces, so a recorded handshake is worthless on a new connection, and the
//! labels differ, so a listener's proof can never be replayed as a dialer's. The hello line
//! is covered whole, so its cluster, cluster id and the sender's name, id and address are
//! authenticated too (and a peer's name is learned only once its proof checks out).
//!
//! During a rotation a node holds several secrets: it proves with the first and accepts a
//! proof made with any of them.

use crate::config::ConfigError;
use hmac::{Hmac, Mac};
use replog_core::NodeId;
use sha2::Sha256;
use std::fmt;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
const PROOF_BYTES: usize = 32;
const DIALER_LABEL: &[u8] = b"replog peer proof v2: dialer\0";
const LISTENER_LABEL: &[u8] = b"replog peer proof v2: listener\0";

/// Which end of a connection a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Listener,
}

/// The secrets a node authenticates peers with; empty when it runs without
/// `--cluster-secret-file` (peers are then not authenticated).
///
/// Invariant: no secret is empty.
#[derive(Clone, Default)]
pub struct ClusterSecrets {
    secrets: Vec<Vec<u8>>,
    paths: Vec<PathBuf>,
    /// Problems worth a warning in the node's log (a world-readable file).
    pub warnings: Vec<String>,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets themselves: the configuration is logged and printed in tests.
        f.debug_struct("ClusterSecrets")
            .field("paths", &self.paths)
            .finish()
    }
}

impl ClusterSecrets {
    /// Reads one secret per file, in order: the first is the one this node proves with.
    /// Whitespace around a secret is ignored, so `echo ... > FILE` works. A missing,
    /// unreadable or empty file is an error; one that every user may read, a warning.
    pub fn load(paths: &[PathBuf]) -> Result<ClusterSecrets, ConfigError> {
        let mut loaded = ClusterSecrets::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|error| {
                ConfigError(format!(
                    "--cluster-secret-file {}: cannot read it: {error}",
                    path.display()
                ))
            })?;
            let secret = bytes.trim_ascii();
            if secret.is_empty() {
                return Err(ConfigError(format!(
                    "--cluster-secret-file {} is empty; put the cluster's secret in it",
                    path.display()
                )));
            }
            if let Some(warning) = permission_warning("--cluster-secret-file", path) {
                loaded.warnings.push(warning);
            }
            loaded.secrets.push(secret.to_vec());
            loaded.paths.push(path.clone());
        }
        Ok(loaded)
    }

    /// Secrets given directly (tests).
    pub fn from_secrets(secrets: &[&[u8]]) -> ClusterSecrets {
        assert!(secrets.iter().all(|secret| !secret.is_empty()));
        ClusterSecrets {
            secrets: secrets.iter().map(|secret| secret.to_vec()).collect(),
            ..ClusterSecrets::default()
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The files the secrets came from, for the start-up log line.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// This node's proof, made with its first secret, as hex.
    ///
    /// Panics without a secret: callers check `is_enabled` first.
    pub fn prove(&self, role: Role, hello_line: &[u8], nonce: &[u8], listener: NodeId) -> String {
        let secret = self.secrets.first().expect("proving needs a secret");
        let mac = mac(secret, role, hello_line, nonce, listener);
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `proof` (hex, from a peer) was made with any of this node's secrets. Each
    /// comparison takes the same time wherever the bytes differ.
    pub fn verify(
        &self,
        proof: &str,
        role: Role,
        hello_line: &[u8],
        nonce: &[u8],
        listener: NodeId,
    ) -> bool {
        let Some(proof) = unhex(proof).filter(|proof| proof.len() == PROOF_BYTES) else {
            return false;
        };
        self.secrets.iter().any(|secret| {
            mac(secret, role, hello_line, nonce, listener)
                .verify_slice(&proof)
                .is_ok()
        })
    }
}

fn mac(secret: &[u8], role: Role, hello_line: &[u8], nonce: &[u8], listener: NodeId) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(match role {
        Role::Dialer => DIALER_LABEL,
        Role::Listener => LISTENER_LABEL,
    });
    // Lengths first, so that no two different inputs run together into the same bytes.
    mac.update(&(hello_line.len() as u64).to_be_bytes());
    mac.update(hello_line);
    mac.update(&(nonce.len() as u64).to_be_bytes());
    mac.update(nonce);
    mac.update(&listener.0.to_be_bytes());
    mac
}

/// A warning if every user of the machine may read the file `flag` names.
pub(crate) fn permission_warning(flag: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{flag} {} is readable by every user (mode {:o}); `chmod 600` it",
            path.display(),
            mode & 0o777
        )
    })
}

/// A fresh random nonce, as hex (the operating system's random source).
pub fn new_nonce() -> std::io::Result<String> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(hex(&nonce))
}

/// A nonce from a peer, checked: `NONCE_BYTES` bytes as hex.
pub fn parse_nonce(text: &str) -> Option<Vec<u8>> {
    unhex(text).filter(|nonce| nonce.len() == NONCE_BYTES)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_role_hello_nonce_and_listener() {
        let ours = ClusterSecrets::from_secrets(&[b"s3cret"]);
        let nonce = [7u8; NONCE_BYTES];
        let proof = ours.prove(Role::Dialer, b"hello", &nonce, NodeId(2));
        assert!(ours.verify(&proof, Role::Dialer, b"hello", &nonce, NodeId(2)));
        assert!(!ours.verify(&proof, Role::Listener, b"hello", &nonce, NodeId(2)));
        assert!(!ours.verify(&proof, Role::Dialer, b"hellO", &nonce, NodeId(2)));
        assert!(!ours.verify(
            &proof,
            Role::Dialer,
            b"hello",
            &[8u8; NONCE_BYTES],
            NodeId(2)
        ));
        assert!(!ours.verify(&proof, Role::Dialer, b"hello", &nonce, NodeId(3)));
        let other = ClusterSecrets::from_secrets(&[b"other"]);
        assert!(!other.verify(&proof, Role::Dialer, b"hello", &nonce, NodeId(2)));
        assert!(!ours.verify("zz", Role::Dialer, b"hello", &nonce, NodeId(2)));
    }

    #[test]
    fn rotation_proves_with_the_first_secret_and_accepts_any() {
        let nonce = [1u8; NONCE_BYTES];
        let rotating = ClusterSecrets::from_secrets(&[b"old", b"new"]);
        let new_only = ClusterSecrets::from_secrets(&[b"new"]);
        let old_only = ClusterSecrets::from_secrets(&[b"old"]);
        let from_new = new_only.prove(Role::Dialer, b"h", &nonce, NodeId(1));
        assert!(rotating.verify(&from_new, Role::Dialer, b"h", &nonce, NodeId(1)));
        let from_rotating = rotating.prove(Role::Dialer, b"h", &nonce, NodeId(1));
        assert!(old_only.verify(&from_rotating, Role::Dialer, b"h", &nonce, NodeId(1)));
        assert!(!new_only.verify(&from_rotating, Role::Dialer, b"h", &nonce, NodeId(1)));
    }

    #[test]
    fn secret_files_that_are_missing_or_empty_are_refused_and_world_readable_ones_warned() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = ClusterSecrets::load(&[missing]).unwrap_err();
        assert!(error.0.contains("cannot read it"), "{error}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let error = ClusterSecrets::load(&[empty]).unwrap_err();
        assert!(error.0.contains("is empty"), "{error}");
        let open = dir.path().join("open");
        std::fs::write(&open, "s3cret\n").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = ClusterSecrets::load(std::slice::from_ref(&open)).unwrap();
        assert!(loaded.warnings[0].contains("readable by every user"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = ClusterSecrets::load(&[open]).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_eq!(loaded.secrets, vec![b"s3cret".to_vec()]);
        assert!(!format!("{loaded:?}").contains("s3cret"));
    }
}
