//! Throwaway certificates for `replog bench --local --tls` and the TLS tests: a CA, and
//! node or client certificates it signs, as PEM files. Not for real use (README's
//! "Security" section shows how to make those with openssl).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A CA that signs certificates, with its certificate in `ca.pem` under its directory.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long a certificate is valid.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday for a year or so.
    Current,
    /// It expired a year ago (the TLS tests' refused certificate).
    #[allow(dead_code)] // Used by tests/node_tls.rs, which includes this file.
    Expired,
}

impl TestCa {
    /// A new CA named `name`; its certificate goes to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa, String> {
        let key = KeyPair::generate().map_err(|error| error.to_string())?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|error| error.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer =
            CertifiedIssuer::self_signed(params, key).map_err(|error| error.to_string())?;
        let cert = dir.join(format!("{name}.pem"));
        write(&cert, &issuer.pem())?;
        Ok(TestCa { issuer, cert })
    }

    /// A certificate for 127.0.0.1 and localhost (a node's, or a client's: it serves as
    /// either), written to `dir/<name>.pem` and `dir/<name>.key`.
    pub fn issue(&self, dir: &Path, name: &str, validity: Validity) -> Result<Identity, String> {
        let key = KeyPair::generate().map_err(|error| error.to_string())?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(|error| error.to_string())?;
        params.distinguished_name.push(DnType::CommonName, name);
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let day = rcgen::date_time_ymd(1970, 1, 2) - epoch;
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() / 86_400);
        let now = epoch + day * i32::try_from(today).unwrap_or(i32::MAX);
        match validity {
            Validity::Current => {
                params.not_before = now - day;
                params.not_after = now + day * 365;
            }
            Validity::Expired => {
                params.not_before = now - day * 3650;
                params.not_after = now - day * 365;
            }
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|error| error.to_string())?;
        let identity = Identity {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        write(&identity.cert, &cert.pem())?;
        write(&identity.key, &key.serialize_pem())?;
        Ok(identity)
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
}
