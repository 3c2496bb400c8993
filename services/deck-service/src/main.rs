//! `deck-service`: see the crate docs. Thin: parse, set up logging, build, serve.

use std::process::ExitCode;

use common::shutdown::Shutdown;
use deck_service::{
    config::{Cli, Command, Config, DEFAULT_PORT},
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
            common::grpc::healthcheck_command(args, &cli.config.process.grpc, DEFAULT_PORT).await
        }
        Some(Command::Seed) => {
            common::telemetry::init(&cli.config.process.log);
            common::grpc::exit_code(
                "deck-service seed",
                deck_service::seed::run(&cli.config).await,
            )
        }
        None | Some(Command::Serve) => {
            common::telemetry::init(&cli.config.process.log);
            common::grpc::exit_code("deck-service", serve(cli.config).await)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, Shutdown::on_signals()).await?;
    common::grpc::announce("deck-service", "gRPC", app.local_addr());
    app.run().await
}
