//! `gateway`: see the crate docs. Thin: parse, set up logging, build, serve.

use std::process::ExitCode;

use common::shutdown::Shutdown;
use gateway::{
    config::{Cli, Command, Config, DEFAULT_GRPC_PORT},
    startup::Application,
};

/// mimalloc rather than glibc's malloc: see the workspace Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = common::config::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => {
            common::grpc::healthcheck_command(args, &cli.config.process.grpc, DEFAULT_GRPC_PORT)
                .await
        }
        None | Some(Command::Serve) => {
            common::telemetry::init(&cli.config.process.log);
            common::grpc::exit_code("gateway", serve(cli.config).await)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, Shutdown::on_signals()).await?;
    // HTTP first: test harnesses read lines until the gRPC one.
    common::grpc::announce("gateway", "HTTP", app.http_addr());
    common::grpc::announce("gateway", "gRPC", app.grpc_addr());
    app.run().await
}
