//! `synopticon`: `serve` (the default) and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use synopticon::configuration::{Settings, CONFIG_FILE_ENV};
use synopticon::startup::Application;
use synopticon::telemetry::init_logging;
use synopticon_actors::session::templates::TemplateStore;

#[derive(Parser)]
#[command(
    name = "synopticon",
    version,
    about = "Camera frames and edge detections to tracked objects and live events"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve {
        /// Configuration file layered over the embedded default.
        #[arg(long, env = CONFIG_FILE_ENV)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file: print every error and warning, exit 1 on errors.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from),
    }) {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => check_config(file),
    }
}

fn serve(config: Option<PathBuf>) -> ExitCode {
    let (settings, env_report) = match Settings::load(config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings.log);
    if !env_report.is_valid() {
        for e in &env_report.errors {
            tracing::error!(error = %e, "configuration error");
        }
        return ExitCode::FAILURE;
    }
    let result = actix_rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: PathBuf) -> ExitCode {
    let (settings, mut report) = match Settings::load(Some(&file)) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let templates = TemplateStore::new();
    report.merge(templates.load_dir(std::path::Path::new(&settings.sessions.templates_dir)));
    report.merge(settings.validate(&templates));
    for e in &report.errors {
        println!("error: {e}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    println!(
        "{}: {} error(s), {} warning(s)",
        file.display(),
        report.errors.len(),
        report.warnings.len()
    );
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
