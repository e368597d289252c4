//! `archway`: one binary, subcommands for every role (CLI wiring only; the work lives in the
//! library crates).
//!
//! Blocking file calls are allowed in the CLI: they read and write the data directory and the
//! user's files before a gateway or a mount serves (or in one-shot commands); the serving
//! itself runs in the library crates, where they are not allowed.
#![allow(clippy::disallowed_methods)]

mod catalog_cmd;
mod demo;
mod mount;
mod reduce_cmd;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "archway",
    version,
    about = "Federated data-colocation storage gateway for science platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway. Without --config: the embedded default (SQLite catalogue, demo volume).
    Serve {
        /// Data directory (catalogue, credentials, built-in backends). Default ./archway-data.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address, HOST:PORT. Default 127.0.0.1:9000.
        #[arg(long)]
        listen: Option<String>,
        /// Configuration file (see `archway config example`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Mount volumes as files: MOUNTPOINT/<volume>/<key path> (remote or local mode).
    Mount(mount::MountArgs),
    /// Unmount a mount made by `archway mount` (also one whose process died).
    Unmount {
        mountpoint: PathBuf,
        /// Detach now even if files are open (they stay usable until closed).
        #[arg(long)]
        lazy: bool,
        /// (Internal: the mount's watchdog.) Wait until standard input closes — the mount
        /// process ended — then unmount the mount point if it is left dead.
        #[arg(long, hide = true)]
        when_stdin_closes: bool,
    },
    /// Reduce a FITS object where it is stored; prints one JSON object.
    Reduce(reduce_cmd::ReduceArgs),
    /// Check or print configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Curate the volume catalogue, users and grants.
    Catalog {
        #[command(flatten)]
        target: catalog_cmd::Target,
        #[command(subcommand)]
        command: catalog_cmd::CatalogCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate FILE; report every problem with its key path and line.
    Check { file: PathBuf },
    /// Print a fully commented example configuration.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCHWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("archway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Mount(args) => mount::run(args, &runtime),
        Command::Unmount {
            mountpoint,
            when_stdin_closes: true,
            ..
        } => mount::watch_and_unmount(&mountpoint),
        Command::Unmount {
            mountpoint, lazy, ..
        } => mount::run_unmount(&mountpoint, lazy),
        command => runtime.block_on(run(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("archway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            data_dir,
            listen,
            config,
        } => {
            serve::serve(serve::Source {
                config,
                data_dir,
                listen,
            })
            .await
        }
        Command::Config(ConfigCommand::Check { file }) => {
            archway_config::Config::load(Some(&file), std::env::vars())?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", archway_config::EXAMPLE);
            Ok(())
        }
        Command::Catalog { target, command } => catalog_cmd::run(target, command).await,
        Command::Reduce(args) => reduce_cmd::run(args).await,
        Command::Mount(_) | Command::Unmount { .. } => unreachable!("run outside the runtime"),
    }
}
