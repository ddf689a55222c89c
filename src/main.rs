//! The `edgewatch` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgewatch::config::{self, Config, LogFormat, Sources};

#[derive(Parser)]
#[command(name = "edgewatch", version, about = "Violence detection for Raspberry Pi camera fleets")]
struct Cli {
    /// Configuration file (TOML). Missing is fine unless given explicitly.
    #[arg(long, short, global = true, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture from the camera, detect events and write clips to the spool.
    Detect,
    /// Email each event in the spool; delete it once delivered and archived.
    Watch {
        /// Put events rejected for good (in `failed/`) back for another try, then exit:
        /// all of them, or the one with this id.
        #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
        retry_failed: Option<String>,
    },
    /// Run the pipeline on a bundled video and model; no network, no configuration.
    Demo {
        /// Directory for the demo's spool, archive and unpacked assets.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Play at the video's frame rate instead of as fast as possible.
        #[arg(long)]
        realtime: bool,
        /// Another MJPEG-in-AVI video to play instead of the bundled one.
        #[arg(long)]
        video: Option<PathBuf>,
    },
    /// Validate a configuration and the world it names, without side effects, listing every
    /// problem. Exit status: 0 valid, 2 the file, 3 model, 4 video source, 5 spool,
    /// 6 archive/S3, 7 SMTP (the first class with a problem).
    CheckConfig {
        /// The file to check (default: --config, else /etc/edgewatch/edgewatch.toml).
        file: Option<PathBuf>,
        /// Print the effective configuration (secrets redacted).
        #[arg(long)]
        print: bool,
        /// Which role the file is for: each checks only what it uses.
        #[arg(long, value_enum, default_value = "all")]
        role: edgewatch::check::Role,
        /// Classes not to check, comma-separated: model, source, spool, archive, smtp (a build
        /// sandbox has no camera, spool or secrets).
        #[arg(long, value_delimiter = ',', value_parser = parse_class)]
        skip: Vec<edgewatch::check::Class>,
        /// Also ask the servers: S3 HeadBucket, and an SMTP session up to AUTH (nothing is sent).
        #[arg(long)]
        online: bool,
        /// The file alone: no model, source, spool, archive or SMTP check.
        #[arg(long, conflicts_with_all = ["skip", "online"])]
        file_only: bool,
    },
}

fn parse_class(s: &str) -> Result<edgewatch::check::Class, String> {
    edgewatch::check::Class::parse(s).ok_or_else(|| format!("`{s}` is not one of model, source, spool, archive, smtp"))
}

fn main() -> ExitCode {
    edgewatch::alloc::one_malloc_arena();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain on one line, each cause once.
            let chain = edgewatch::telemetry::error_chain(&e);
            eprintln!("edgewatch: error: {chain}");
            tracing::error!("{chain}");
            ExitCode::FAILURE
        }
    }
}

/// Logging as the config says, with every secret it holds (and the AWS SDK's own environment
/// credentials) redacted from every line.
fn init_logging(cfg: &Config) {
    let mut secrets = cfg.secrets();
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        secrets.extend(std::env::var(var).ok());
    }
    edgewatch::telemetry::init_logging(cfg.log.format, &cfg.log.level, secrets);
}

fn load_config(path: Option<PathBuf>, defaults: Config) -> anyhow::Result<Config> {
    let required = path.is_some();
    let file = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    Ok(Config::load_with_defaults(defaults, &Sources::from_process(Some(file), required))?)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file, print, role, skip, online, file_only } => {
            let path = file.or(cli.config).unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
            let defaults =
                if role == edgewatch::check::Role::Watchdog { Config::watchdog_defaults() } else { Config::default() };
            let (cfg, origins) = match config::check_file(&path, defaults) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return Ok(ExitCode::from(2));
                }
            };
            if print {
                print!("{}", cfg.to_redacted_toml());
            }
            if file_only {
                eprintln!("{}: the file is valid (nothing else checked)", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            // Quiet unless something is wrong: the checks may load the model (tract logs nothing).
            edgewatch::telemetry::init_logging(config::LogFormat::Human, "warn", cfg.secrets());
            let opts = edgewatch::check::Options { role, skip, online };
            let problems = runtime()?.block_on(edgewatch::check::check(&cfg, &origins, &opts));
            if problems.is_empty() {
                eprintln!(
                    "{}: configuration is valid{}",
                    path.display(),
                    if online { " (servers answered)" } else { "" }
                );
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("{}: {} problem(s):", path.display(), problems.len());
            for p in &problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::from(problems[0].class as u8))
        }
        Command::Watch { retry_failed: Some(id) } => {
            let cfg = load_config(cli.config, Config::watchdog_defaults())?;
            init_logging(&cfg);
            let only = (!id.is_empty()).then_some(id.as_str());
            let ids = edgewatch::watchdog::retry_failed(&cfg, only)?;
            println!("put back {} event(s) for another try: {}", ids.len(), ids.join(" "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { retry_failed: None } => {
            let cfg = load_config(cli.config, Config::watchdog_defaults())?;
            init_logging(&cfg);
            runtime()?.block_on(async move {
                let shutdown = edgewatch::shutdown::on_signals();
                let summary = edgewatch::watchdog::run(cfg, shutdown).await?;
                tracing::info!(emails_sent = summary.sent, events_deleted = summary.deleted, "watchdog stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Detect => {
            let cfg = load_config(cli.config, Config::default())?;
            init_logging(&cfg);
            runtime()?.block_on(async move {
                let shutdown = edgewatch::shutdown::on_signals();
                let summary = edgewatch::detector::run(cfg, shutdown).await?;
                tracing::info!(
                    frames = summary.frames_captured,
                    inferred = summary.frames_inferred,
                    backbone_runs = summary.backbone_runs,
                    backbone_skipped = summary.backbone_skipped,
                    clips = summary.events.len(),
                    events_without_clip = summary.without_clip.len(),
                    events_open = summary.clip_failures,
                    "detector stopped"
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo { out, realtime, video } => {
            edgewatch::telemetry::init_logging(
                LogFormat::Human,
                &std::env::var("EDGEWATCH_LOG__LEVEL").unwrap_or_else(|_| "info".into()),
                Vec::new(),
            );
            runtime()?.block_on(async move {
                let shutdown = edgewatch::shutdown::on_signals();
                let started = Instant::now();
                let opts = edgewatch::demo::DemoOptions { out, realtime, video };
                let (cfg, summary) = edgewatch::demo::run(opts, shutdown).await.context("demo failed")?;
                print!("{}", edgewatch::demo::render_summary(&cfg, &summary, started.elapsed()));
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two workers: the heavy work runs on dedicated threads; tokio only serves HTTP and uploads.
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}
