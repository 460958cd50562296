//! The flags every client command shares: how it proves itself to the nodes.

use clap::Args;
use replog_node::client::blocking::ClientOptions;
use replog_node::client::token::read_token_file;
use std::path::PathBuf;

/// The environment variable that holds a client token when `--token-file` is not given.
pub const TOKEN_ENV: &str = "REPLOG_TOKEN";

#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Show the token in FILE to nodes started with `--client-token-file` (default: the
    /// token in the REPLOG_TOKEN environment variable, if set). Nodes without one ignore it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Connect with TLS, trusting the nodes whose certificates the CA in FILE (PEM) signed.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: present this client certificate (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ClientArgs {
    /// The options to connect with, or why the flags cannot be used.
    pub fn options(&self) -> Result<ClientOptions, String> {
        let token = match &self.token_file {
            Some(path) => Some(read_token_file("--token-file", path)?),
            None => match std::env::var(TOKEN_ENV) {
                Ok(token) if token.trim().is_empty() => {
                    return Err(format!("{TOKEN_ENV} is set but empty"))
                }
                Ok(token) => Some(token.trim().to_string()),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("{TOKEN_ENV} is not UTF-8 text"))
                }
            },
        };
        let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        let tls = match &self.tls_ca {
            Some(ca) => Some(replog_node::tls::client_config(ca, identity)?),
            None => None,
        };
        Ok(ClientOptions { token, tls })
    }
}
