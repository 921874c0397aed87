//! `brisk-checkpoint`: inspect and manage a checkpoint store from a shell.
//!
//! ```text
//! brisk-checkpoint ls URL [--prefix P]
//! brisk-checkpoint verify URL [--prefix P] [encoder]
//! brisk-checkpoint gc URL [--prefix P] (--older-than 7d | --corrupt) [--dry-run] [encoder]
//! brisk-checkpoint show URL KEY [encoder]
//! ```
//!
//! `URL` is what `brisk_store::from_url` takes: a directory, `file://…`, `objfile://…`, and with
//! their features `s3://…`, `az://…`, `gs://…`. The encoder flags describe how the entries
//! were written (default: JSON + zstd, unencrypted).

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool prints its results"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use brisk_checkpoint::{Compressor, Encoder, Encrypter, KdfParams, Serializer, manage};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "brisk-checkpoint",
    about = "Inspect and manage a Brisk checkpoint store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the entries: key, size, when written, outer format.
    Ls {
        /// The store: a directory or a store URL.
        url: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Checks every entry's integrity and format; exits with 1 if any fails.
    Verify {
        /// The store: a directory or a store URL.
        url: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        encoder: EncoderArgs,
    },
    /// Removes entries older than an age, or the entries that fail verification.
    Gc {
        /// The store: a directory or a store URL.
        url: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Remove entries written longer ago than this (`90s`, `30m`, `12h`, `7d`).
        #[arg(long, value_parser = parse_age, conflicts_with = "corrupt")]
        older_than: Option<Duration>,
        /// Remove the entries that fail verification.
        #[arg(long)]
        corrupt: bool,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        encoder: EncoderArgs,
    },
    /// Prints one entry as JSON.
    Show {
        /// The store: a directory or a store URL.
        url: String,
        /// The entry's storage key.
        key: String,
        #[command(flatten)]
        encoder: EncoderArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Ser {
    Json,
    Yaml,
    Msgpack,
    Npy,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
enum Comp {
    Zstd,
    None,
}

/// How the entries were encoded.
#[derive(Args)]
struct EncoderArgs {
    /// The serializer.
    #[arg(long, value_enum, default_value = "json")]
    serializer: Ser,
    /// The compressor.
    #[arg(long, value_enum, default_value = "zstd")]
    compressor: Comp,
    /// AES-256-GCM key as 64 hex characters.
    #[arg(long, conflicts_with = "passphrase_file")]
    key_hex: Option<String>,
    /// A file holding the passphrase (the salt is read from the store).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl EncoderArgs {
    fn encoder(&self, store: &dyn brisk_checkpoint::Store) -> anyhow::Result<Encoder> {
        let mut e = Encoder::new();
        e = match self.serializer {
            Ser::Json => e.serializer(Serializer::Json),
            Ser::Yaml => e.serializer(Serializer::Yaml),
            Ser::Msgpack => e.serializer(Serializer::MessagePack),
            Ser::Npy => e.serializer(Serializer::Npy),
            Ser::Raw => e.no_serializer(),
        };
        e = match self.compressor {
            Comp::Zstd => e.compressor(Compressor::Zstd { level: 3 }),
            Comp::None => e.no_compressor(),
        };
        if let Some(hex) = &self.key_hex {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--key-hex is not hexadecimal"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("--key-hex must be 64 hex characters (32 bytes)"))?;
            e = e.encrypter(Encrypter::from_key(key));
        }
        if let Some(path) = &self.passphrase_file {
            let pass = std::fs::read_to_string(path)?;
            let pass = pass.trim_end_matches(['\n', '\r']);
            e = e.encrypter(Encrypter::from_passphrase(
                store,
                pass,
                KdfParams::default(),
            )?);
        }
        Ok(e)
    }
}

/// `90s`, `30m`, `12h`, `7d` (or plain seconds).
fn parse_age(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not an age like 90s, 30m, 12h or 7d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit `{other}` (s, m, h, d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// Seconds since the Unix epoch, or `-`.
fn when(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or_else(|| "-".to_owned(), |d| d.as_secs().to_string())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ls { url, prefix } => {
            let store = brisk_checkpoint::from_url(&url)?;
            let list = manage::entries(store.as_ref(), &prefix)?;
            println!("{:<60} {:>12} {:>12} format", "key", "bytes", "written");
            for e in &list {
                println!(
                    "{:<60} {:>12} {:>12} {}",
                    e.key,
                    e.size,
                    when(e.written),
                    e.format
                );
            }
            println!("{} entries", list.len());
        }
        Command::Verify {
            url,
            prefix,
            encoder,
        } => {
            let store = brisk_checkpoint::from_url(&url)?;
            let encoder = encoder.encoder(store.as_ref())?;
            let report = manage::verify(store.as_ref(), &encoder, &prefix)?;
            for (key, err) in &report.failed {
                println!("FAIL {key}: {err}");
            }
            println!(
                "{} entries checked, {} failed",
                report.checked,
                report.failed.len()
            );
            if !report.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Gc {
            url,
            prefix,
            older_than,
            corrupt,
            dry_run,
            encoder,
        } => {
            let store = brisk_checkpoint::from_url(&url)?;
            let doomed: Vec<String> = if let Some(age) = older_than {
                let old = manage::older_than(age);
                manage::entries(store.as_ref(), &prefix)?
                    .into_iter()
                    .filter(|e| old(e))
                    .map(|e| e.key)
                    .collect()
            } else if corrupt {
                let encoder = encoder.encoder(store.as_ref())?;
                manage::verify(store.as_ref(), &encoder, &prefix)?
                    .failed
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect()
            } else {
                anyhow::bail!("gc needs --older-than AGE or --corrupt");
            };
            for key in &doomed {
                if !dry_run {
                    store.delete(key)?;
                }
                println!("{} {key}", if dry_run { "would remove" } else { "removed" });
            }
            println!(
                "{} entries {}",
                doomed.len(),
                if dry_run { "to remove" } else { "removed" }
            );
        }
        Command::Show { url, key, encoder } => {
            let store = brisk_checkpoint::from_url(&url)?;
            let encoder = encoder.encoder(store.as_ref())?;
            let value = manage::show(store.as_ref(), &encoder, &key)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("brisk-checkpoint: {e:#}");
            ExitCode::from(2)
        }
    }
}
