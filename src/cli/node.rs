//! `replog start|append|query|status|demo` (placeholder until the node lands).
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct StartArgs {}
#[derive(Args)]
pub struct AppendArgs {}
#[derive(Args)]
pub struct QueryArgs {}
#[derive(Args)]
pub struct StatusArgs {}
#[derive(Args)]
pub struct DemoArgs {}

fn not_built() -> ExitCode {
    eprintln!("error: the node is not built yet");
    ExitCode::from(2)
}
pub fn start(_: StartArgs) -> ExitCode {
    not_built()
}
pub fn append(_: AppendArgs) -> ExitCode {
    not_built()
}
pub fn query(_: QueryArgs) -> ExitCode {
    not_built()
}
pub fn status(_: StatusArgs) -> ExitCode {
    not_built()
}
pub fn demo(_: DemoArgs) -> ExitCode {
    not_built()
}
