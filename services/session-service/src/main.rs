//! `session-service`: see the crate docs. Thin: parse, set up logging, build, serve.

use std::process::ExitCode;

use common::shutdown::Shutdown;
use session_service::{
    config::{Cli, Command, Config, DEFAULT_PORT},
    startup::{Application, Options},
    tokens::TokenKeys,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = common::config::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => {
            common::grpc::healthcheck_command(args, &cli.config.grpc, DEFAULT_PORT).await
        }
        Some(Command::GenerateKey) => {
            print!("{}", session_service::tokens::generate_key_pem().expose());
            ExitCode::SUCCESS
        }
        Some(Command::MakeSuperuser(args)) => {
            common::telemetry::init(&cli.config.log);
            common::grpc::exit_code(
                "session-service make-superuser",
                session_service::admin::make_superuser(&cli.config.postgres, &args.email).await,
            )
        }
        None | Some(Command::Serve) => {
            // A missing or unreadable signing key is a configuration error: exit 64.
            let keys = TokenKeys::from_config(&cli.config.tokens)
                .unwrap_or_else(|error| common::config::exit_config_error(error));
            common::telemetry::init(&cli.config.log);
            common::grpc::exit_code("session-service", serve(cli.config, keys).await)
        }
    }
}

async fn serve(config: Config, keys: TokenKeys) -> anyhow::Result<()> {
    let app =
        Application::build_with_keys(config, keys, Options::default(), Shutdown::on_signals())
            .await?;
    common::grpc::announce("session-service", "gRPC", app.local_addr());
    app.run().await
}
