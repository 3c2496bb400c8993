//! `session-service`: see the crate docs. Thin: parse, set up logging, build, serve.

use std::process::ExitCode;

use common::shutdown::Shutdown;
use session_service::{
    admin::StandingChange,
    config::{Cli, Command, Config, DEFAULT_PORT},
    startup::{Application, Options},
    tokens::TokenKeys,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = common::config::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => {
            common::grpc::healthcheck_command(args, &cli.config.process.grpc, DEFAULT_PORT).await
        }
        Some(Command::GenerateKey) => {
            print!("{}", session_service::tokens::generate_key_pem().expose());
            ExitCode::SUCCESS
        }
        Some(Command::MakeSuperuser(args)) => {
            change_standing(&cli.config, &args.email, StandingChange::MakeSuperuser).await
        }
        Some(Command::RemoveSuperuser(args)) => {
            change_standing(&cli.config, &args.email, StandingChange::RemoveSuperuser).await
        }
        Some(Command::DeactivateUser(args)) => {
            change_standing(&cli.config, &args.email, StandingChange::Deactivate).await
        }
        None | Some(Command::Serve) => {
            // A missing or unreadable signing key is a configuration error: exit 64.
            let keys = TokenKeys::from_config(&cli.config.tokens)
                .unwrap_or_else(|error| common::config::exit_config_error(error));
            common::telemetry::init(&cli.config.process.log);
            common::grpc::exit_code("session-service", serve(cli.config, keys).await)
        }
    }
}

/// Runs one of the subcommands that change a user ([`session_service::admin`]).
async fn change_standing(config: &Config, email: &str, change: StandingChange) -> ExitCode {
    common::telemetry::init(&config.process.log);
    common::grpc::exit_code(
        "session-service",
        session_service::admin::change_standing(config, email, change).await,
    )
}

async fn serve(config: Config, keys: TokenKeys) -> anyhow::Result<()> {
    let app =
        Application::build_with_keys(config, keys, Options::default(), Shutdown::on_signals())
            .await?;
    common::grpc::announce("session-service", "gRPC", app.local_addr());
    app.run().await
}
