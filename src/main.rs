//! `synopticon`: `serve` (the default), `edge`, `check-config`, `analyze`, `token`,
//! `backup`, `restore` and `key`.

/// jemalloc instead of the system allocator: glibc kept every page a closed session had
/// used (RSS stayed at its peak), where jemalloc hands freed memory back to the system.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: a background thread returns pages freed for
/// a second (`dirty_decay_ms`) to the system, instead of waiting for the next allocation
/// to notice; `muzzy_decay_ms:0` gives them back at once rather than in a second stage.
/// `lg_extent_max_active_fit:1` keeps a free region from serving an allocation more than
/// twice smaller (the default allows 64 times): request bodies of a megabyte cut up for
/// 100 KB events left pieces that no decay could return, and a flood held 35-40 MiB more
/// than the memory budget's events long after it ended (tests/api/limits.rs).
/// `_RJEM_MALLOC_CONF` in the environment overrides any of them.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,lg_extent_max_active_fit:1\0";

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use synopticon::analyze::AnalyzeArgs;
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
    /// Run as an edge device: the `[edge]` camera → model → tracker → the detection
    /// envelope of every frame, published to a Redis stream or an MQTT topic.
    Edge {
        /// Configuration file with an `[edge]` section.
        #[arg(long, env = CONFIG_FILE_ENV)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file: print every error and warning, exit 1 on errors.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Detect objects in an image, a folder of images or a video; write JSON lines.
    Analyze {
        /// Image (.jpg/.png), folder of images, or video file (decoded by ffmpeg).
        input: PathBuf,
        /// Model name from the configuration (default: inference.default_model).
        #[arg(long)]
        model: Option<String>,
        /// Write the JSON lines here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Analyse only every n-th video frame.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        every: u64,
        /// Override the model's confidence threshold (0..1).
        #[arg(long)]
        confidence: Option<f32>,
        /// Configuration file layered over the embedded default.
        #[arg(long, env = CONFIG_FILE_ENV)]
        config: Option<PathBuf>,
    },
    /// Make a bearer token for `[[auth.tokens]]`, or hash one.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Copy everything the store keeps (sessions, templates, tokens, sources, devices) to a
    /// new file; secrets stay sealed with the store's key. The server may be running.
    Backup {
        /// The new file (`-`: standard output).
        file: PathBuf,
        /// Configuration file naming the store (`store.url`).
        #[arg(long, env = CONFIG_FILE_ENV)]
        config: Option<PathBuf>,
    },
    /// Load a backup into an empty store (a new SQLite file or an empty database), with the
    /// key of the server it was taken from. Stop the server using that store first.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Configuration file naming the store (`store.url`).
        #[arg(long, env = CONFIG_FILE_ENV)]
        config: Option<PathBuf>,
    },
    /// Play a recording (an .mcap file) into a session of a running server, keeping its
    /// spacing (scaled by --rate); progress is printed until it ends, Ctrl-C stops it.
    Replay {
        /// The recording.
        file: PathBuf,
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        to: String,
        /// The session to play into.
        #[arg(long)]
        session: String,
        /// 1 = real time, 2 = twice as fast, 0 = as fast as the session takes them.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Start again at the end, until Ctrl-C.
        #[arg(long = "loop")]
        looping: bool,
        /// Event types to play (globs, comma-separated); all by default.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Seconds into the recording to start at.
        #[arg(long)]
        start_offset: Option<f64>,
        /// Seconds of it to play.
        #[arg(long)]
        duration: Option<f64>,
        /// Re-analyse the recorded detections with this source's current lines and zones.
        #[arg(long)]
        reanalyze: Option<String>,
        /// With --reanalyze: play the re-analysed events alone, without a dry run of the
        /// rules in force.
        #[arg(long)]
        no_rules: bool,
        /// Create the session if it does not exist.
        #[arg(long)]
        create: bool,
        /// Bearer token (an operator's).
        #[arg(long, env = "SYNOPTICON_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Keys for `store.secret_key`.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Print a new random key (base64 of 32 bytes).
    New,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print a new random token and the `[[auth.tokens]]` entry that accepts it.
    New {
        /// Id shown in logs and audit lines.
        #[arg(long, default_value = "admin")]
        id: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Print the SHA-256 of a token read from stdin (one line).
    Hash,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from),
    }) {
        Command::Serve { config } => serve(config, false),
        Command::Edge { config } => serve(config, true),
        Command::CheckConfig { file } => check_config(file),
        Command::Analyze {
            input,
            model,
            out,
            every,
            confidence,
            config,
        } => analyze(
            config,
            AnalyzeArgs {
                input,
                model,
                out,
                every,
                confidence,
            },
        ),
        Command::Token { action } => token(action),
        Command::Backup { file, config } => store_command(config, |settings| async move {
            synopticon::backup::backup(&settings, &file).await
        }),
        Command::Restore { file, config } => store_command(config, |settings| async move {
            synopticon::backup::restore(&settings, &file).await
        }),
        Command::Replay {
            file,
            to,
            session,
            rate,
            looping,
            events,
            start_offset,
            duration,
            reanalyze,
            no_rules,
            create,
            token,
        } => {
            let args = synopticon::replay_cli::ReplayArgs {
                file,
                to,
                session,
                rate,
                looping,
                events,
                start_offset_s: start_offset,
                duration_s: duration,
                reanalyze,
                rules: !no_rules,
                create,
                token,
            };
            summary(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(synopticon::replay_cli::run(args))),
            )
        }
        Command::Key {
            action: KeyAction::New,
        } => match synopticon::backup::new_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs a command on the store the configuration names; its summary goes to stderr (stdout
/// may be the backup itself).
fn store_command<F, Fut>(config: Option<PathBuf>, run: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let settings = match Settings::load(config.as_deref()) {
        Ok((settings, report)) if report.is_valid() => settings,
        Ok((_, report)) => {
            report.errors.iter().for_each(|e| eprintln!("error: {e}"));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut log = settings.log.clone();
    log.level = "warn".into();
    init_logging(&log);
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(settings)),
        Err(e) => Err(e.into()),
    };
    summary(result)
}

/// A command's summary line (stderr: stdout may carry its output), or its error.
fn summary(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(action: TokenAction) -> ExitCode {
    use synopticon::auth::{tokens, Role};
    match action {
        TokenAction::New { id, role } => {
            if Role::parse(&role).is_none() {
                eprintln!("error: --role must be admin, operator or viewer, got {role:?}");
                return ExitCode::FAILURE;
            }
            let secret = match tokens::generate() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("# The token (give it to the client; it is not stored anywhere):");
            println!("#   {secret}");
            println!("# The configuration entry that accepts it:");
            println!("[[auth.tokens]]");
            println!("id = {id:?}");
            println!("role = {role:?}");
            println!("sha256 = {:?}", tokens::hash_hex(&secret));
            ExitCode::SUCCESS
        }
        TokenAction::Hash => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("error: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
            println!("{}", tokens::hash_hex(line.trim()));
            ExitCode::SUCCESS
        }
    }
}

fn analyze(config: Option<PathBuf>, args: AnalyzeArgs) -> ExitCode {
    let (settings, env_report) = match Settings::load(config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // stderr is for the progress bar and the summary: only warnings and errors besides.
    let mut log = settings.log.clone();
    log.level = "warn".into();
    init_logging(&log);
    if let Some(e) = env_report.errors.first() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(c) = args.confidence.filter(|c| !(0.0..=1.0).contains(c)) {
        eprintln!("error: --confidence must be between 0 and 1, got {c}");
        return ExitCode::FAILURE;
    }
    match synopticon::analyze::run(&settings, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>, edge: bool) -> ExitCode {
    let (settings, env_report) = match Settings::load(config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = if edge {
        match synopticon::edge::settings(settings) {
            Ok(s) => s,
            Err(report) => {
                report.errors.iter().for_each(|e| eprintln!("error: {e}"));
                return ExitCode::FAILURE;
            }
        }
    } else {
        settings
    };
    init_logging(&settings.log);
    if !env_report.is_valid() {
        for e in &env_report.errors {
            tracing::error!(error = %e, "configuration error");
        }
        return ExitCode::FAILURE;
    }
    let result = actix_rt::System::new().block_on(async move {
        if let Some(frames) = settings.edge.clone().filter(|_| edge) {
            actix_rt::spawn(synopticon::edge::prune_frames(frames));
        }
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
    let templates = TemplateStore::with_guardrails(std::sync::Arc::new(settings.guardrails()));
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
