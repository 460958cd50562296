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
        Ok(ClientOptions { token })
    }
}
