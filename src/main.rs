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
    /// Email each finished clip in the spool; delete it once delivered and archived.
    Watch,
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
    /// Validate a configuration without side effects, listing every problem.
    CheckConfig {
        /// The file to check (default: --config, else /etc/edgewatch/edgewatch.toml).
        file: Option<PathBuf>,
        /// Print the effective configuration (secrets redacted).
        #[arg(long)]
        print: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line (lanzaboote's habit).
            eprintln!("edgewatch: error: {e:#}");
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>, defaults: Config) -> anyhow::Result<Config> {
    let required = path.is_some();
    let file = path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    Ok(Config::load_with_defaults(defaults, &Sources::from_process(Some(file), required))?)
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file, print } => {
            let path = file.or(cli.config).unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
            match config::check_file(&path) {
                Ok(cfg) => {
                    if print {
                        print!("{}", cfg.to_redacted_toml());
                    }
                    eprintln!("{}: configuration is valid", path.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Watch => {
            let cfg = load_config(cli.config, Config::watchdog_defaults())?;
            edgewatch::telemetry::init_logging(cfg.log.format, &cfg.log.level);
            runtime()?.block_on(async move {
                let shutdown = edgewatch::shutdown::on_signals();
                let summary = edgewatch::watchdog::run(cfg, shutdown).await?;
                tracing::info!(sent = summary.sent, deleted = summary.deleted, "watchdog stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Detect => {
            let cfg = load_config(cli.config, Config::default())?;
            edgewatch::telemetry::init_logging(cfg.log.format, &cfg.log.level);
            runtime()?.block_on(async move {
                let shutdown = edgewatch::shutdown::on_signals();
                let summary = edgewatch::detector::run(cfg, shutdown).await?;
                tracing::info!(frames = summary.frames_captured, events = summary.events.len(), "detector stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo { out, realtime, video } => {
            edgewatch::telemetry::init_logging(
                LogFormat::Human,
                &std::env::var("EDGEWATCH_LOG__LEVEL").unwrap_or_else(|_| "info".into()),
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
