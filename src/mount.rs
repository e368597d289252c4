//! `archway mount` and `archway unmount`: the CLI around the `archway-fuse` crate.
//!
//! Two modes: **remote** (`--gateway URL`: the gateway's S3 front with S3 credentials, reached
//! as a peer backend reaches a gateway, the volume list from its catalogue API) and **local** (`--config FILE` / `--data-dir DIR`:
//! straight to the backends through the dataplane). Without `--foreground` the command starts
//! itself again in the background and returns once the mount is ready (or says why not).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use archway_cache::{BlockCache, CacheConfig, CachedStore};
use archway_catalog::{Access, Principal, VolumeQuery};
use archway_config::credentials::CredentialsFile;
use archway_dataplane::audit::{AuditConfig, AuditLog};
use archway_dataplane::{BackendConfig, Op, Secret};
use archway_fuse::fs::FileAudit;
use archway_fuse::session::{self, MountOptions};
use archway_fuse::whole::WholeCopies;
use archway_fuse::{Fs, FsConfig, MountMetrics, MountVolume, Writes};
use secrecy::{ExposeSecret, SecretString};

/// Set in the environment of the background child: it reports readiness on stdout.
const NOTIFY_ENV: &str = "ARCHWAY_MOUNT_NOTIFY";

#[derive(clap::Args, Debug, Clone)]
pub struct MountArgs {
    /// Where the volumes appear: MOUNTPOINT/<volume>/<key path>.
    pub mountpoint: PathBuf,
    /// Remote mode: the gateway's URL, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "ARCHWAY_GATEWAY")]
    pub gateway: Option<String>,
    /// S3 access key id (remote mode). Default: the environment, then the AWS credentials file.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// S3 secret access key (remote mode).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true, value_parser = secret)]
    pub secret_access_key: Option<SecretString>,
    /// S3 session token (remote mode, temporary credentials).
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true, value_parser = secret)]
    pub session_token: Option<SecretString>,
    /// Profile in the credentials file (default: `default`, then `archway`).
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// AWS shared credentials file (default ~/.aws/credentials); `archway serve` writes one
    /// as <data-dir>/credentials.
    #[arg(long, env = "AWS_SHARED_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// API token, to ask the catalogue which volumes to mount (default: `archway_api_token`
    /// from the credentials file's profile).
    #[arg(long, env = "ARCHWAY_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<SecretString>,
    /// Remote mode without credentials: unsigned requests, which the gateway serves for public
    /// volumes only (name them with --volume). Credentials given anyway are not used.
    #[arg(long)]
    pub anonymous: bool,
    /// Local mode: the gateway's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Local mode: the gateway's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Mount only these volumes (repeatable). Default: every volume you may read.
    #[arg(long = "volume")]
    pub volumes: Vec<String>,
    /// Mount read-only, workspaces included.
    #[arg(long)]
    pub read_only: bool,
    /// Let other users use the mount (needs `user_allow_other` in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Owner of every file (default: the mounting user).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every file (default: the mounting user's group).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Bits removed from file modes, octal.
    #[arg(long, default_value = "022", value_parser = parse_umask)]
    pub umask: u16,
    /// How long attributes (size, time) are trusted before the store is asked again.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub attr_ttl: Duration,
    /// How long the kernel trusts a name (that it exists, and what it is).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub entry_ttl: Duration,
    /// Memory for cached blocks, e.g. 256MiB.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub cache_memory: u64,
    /// Disk for cached blocks (needs --cache-dir); 0 keeps the cache in memory only.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub cache_disk: u64,
    /// Directory of the disk cache (not one a gateway uses).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// The unit of caching and of requests to the gateway or store (4KiB to 64MiB). Measured
    /// with benches/peers.rs (512 MiB through a remote mount with a disk tier, 2 cores), 2 MiB
    /// blocks read cold 8 % faster than 1 MiB but warm 26 % slower, and 4 MiB lost both.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub cache_block_size: u64,
    /// The most blocks fetched ahead of one sequential reader.
    #[arg(long, default_value_t = CacheConfig::default().readahead_blocks)]
    pub cache_readahead: u64,
    /// Read straight from the stores, without the block cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Fetch a file of at most this size whole into --cache-dir when it is opened for
    /// reading, and let the kernel read that copy directly (FUSE passthrough: Linux 6.9 or
    /// later, root or CAP_SYS_ADMIN; else files are read through the mount as usual). Fast
    /// for files read in full or at random; costly for large files of which little is read
    /// (a header), hence the limit. Remote mode; 0 (the default) turns it off.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub whole_file_max: u64,
    /// The most disk the whole-file copies of --whole-file-max take (least recently opened
    /// removed first), besides --cache-disk.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    pub whole_files: u64,
    /// Do not show S3 metadata as extended attributes (`user.*`): the kernel then stops
    /// asking the mount for any, and `ls -l` of a large tree makes no round trip to the mount
    /// per entry for them.
    #[arg(long)]
    pub no_xattrs: bool,
    /// Threads that take requests from the kernel (the work runs on the mount's runtime). With
    /// a reader one request at a time, one thread waiting on the reader's CPU saves a wake-up
    /// between CPUs: measured (fio random 4 KiB, depth 1, a 2-core VM) 4 threads read 9 %
    /// faster than 2 and 1.8× faster than 1; 8 and 16 gained nothing more.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub fuse_threads: u16,
    /// Where files being written wait for their upload (default: the system's temp dir).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Stay in the foreground, logging to stderr.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Log file of the background mount (default: none).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9101.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Do not ask fusermount3 to unmount when this process dies.
    #[arg(long)]
    pub no_auto_unmount: bool,
    /// Keep an audit record of every open file, written at its last close with the bytes read
    /// and written (doc/audit.md), in FILE (appended to, rotated past 100 MiB, 5 kept) or `-`
    /// for standard output. Give the mount a file of its own: one writer per file.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<String>,
}

fn parse_umask(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal umask (e.g. 022)"))
}

/// A secret from the command line or the environment, kept out of `Debug` output.
fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

/// Sizes as bytes or with a unit, as the `bytesize` crate reads them: `512KiB`, `64MiB`,
/// `2GiB` (powers of 1024), `10kB`, `2GB` (powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size (e.g. 64MiB): {e}"))
}

pub fn run_unmount(mountpoint: &Path, lazy: bool) -> Result<()> {
    session::unmount(mountpoint, lazy)?;
    println!("unmounted {}", mountpoint.display());
    Ok(())
}

/// The mount's watchdog (`archway unmount --when-stdin-closes MOUNTPOINT`, started by the
/// mount process with its standard input a pipe from it): when the pipe closes, the mount
/// process has ended, and a mount it left dead is detached ([`session::detach_if_dead`]).
pub fn watch_and_unmount(mountpoint: &Path) -> Result<()> {
    // The mount this watchdog is for: it starts once the mount is up.
    let watched = session::fuse_mount_id(mountpoint);
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    session::detach_if_dead(mountpoint, watched)
        .with_context(|| format!("detaching {}", mountpoint.display()))
}

/// Starts the watchdog for `mountpoint` (see [`watch_and_unmount`]); it lives in its own
/// process group, so signals to this one's group do not end it. The returned child holds
/// the pipe: it closes when this process ends, however it ends.
fn start_watchdog(mountpoint: &Path) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the archway binary")?;
    std::process::Command::new(exe)
        .args(["unmount", "--when-stdin-closes"])
        .arg(mountpoint)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the mount's watchdog")
}

/// `archway mount`: in the background unless `--foreground`.
pub fn run(args: MountArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.gateway.is_some() == (args.config.is_some() || args.data_dir.is_some()) {
        bail!(
            "say where the volumes are: --gateway URL (remote mode) or --config FILE / \
             --data-dir DIR (local mode), not both"
        );
    }
    if args.anonymous && args.gateway.is_none() {
        bail!("--anonymous is for remote mode (--gateway URL)");
    }
    if args.cache_disk > 0 && args.cache_dir.is_none() {
        bail!("--cache-disk needs --cache-dir (a directory no gateway uses)");
    }
    if args.whole_file_max > 0 {
        if args.cache_dir.is_none() {
            bail!("--whole-file-max needs --cache-dir (where the copies are kept)");
        }
        if args.gateway.is_none() {
            bail!("--whole-file-max is for remote mode (--gateway URL)");
        }
        if args.audit_log.is_some() {
            bail!(
                "--whole-file-max cannot go with --audit-log: the kernel reads the copies \
                 without the mount, so the bytes read could not be counted"
            );
        }
        if args.whole_file_max > args.whole_files {
            bail!(
                "--whole-file-max ({}) is above --whole-files ({}): no copy would fit",
                args.whole_file_max,
                args.whole_files
            );
        }
    }
    if !args.no_cache {
        let flag = |key: &str| match key {
            "block_size" => "--cache-block-size",
            "memory_bytes" => "--cache-memory",
            "disk_bytes" => "--cache-disk",
            _ => "the cache options",
        };
        let problems: Vec<String> = cache_config(&args)
            .problems()
            .into_iter()
            .map(|(key, message)| format!("{}: {message}", flag(&key)))
            .collect();
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
    }
    if args.foreground {
        return runtime.block_on(foreground(args));
    }
    background(&args)
}

/// Starts `archway mount … --foreground` detached and waits for it to say it is ready.
fn background(args: &MountArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding the archway binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(NOTIFY_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    match &args.log_file {
        Some(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            cmd.stderr(log);
        }
        None => {
            cmd.stderr(std::process::Stdio::null());
        }
    }
    // Its own process group: a Ctrl-C meant for the shell does not reach the mount.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting the background mount")?;
    let stdout = child
        .stdout
        .take()
        .context("no pipe from the background mount")?;
    let mut problems = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        if line == "ready" {
            println!(
                "mounted at {} (pid {}); stop with `archway unmount {}`",
                args.mountpoint.display(),
                child.id(),
                args.mountpoint.display()
            );
            return Ok(());
        }
        problems.push(line);
    }
    let status = child.wait()?;
    if problems.is_empty() {
        bail!("the background mount exited ({status}) before it was ready");
    }
    bail!("{}", problems.join("\n"))
}

async fn foreground(args: MountArgs) -> Result<()> {
    let notify = std::env::var_os(NOTIFY_ENV).is_some();
    let result = mount_and_serve(&args, notify).await;
    if notify && let Err(e) = &result {
        // The waiting parent prints this.
        println!("{e:#}");
    }
    result
}

async fn mount_and_serve(args: &MountArgs, notify: bool) -> Result<()> {
    let mut opts = MountOptions::new(&args.mountpoint);
    opts.allow_other = args.allow_other;
    opts.read_only = args.read_only;
    opts.auto_unmount = !args.no_auto_unmount;
    opts.threads = usize::from(args.fuse_threads);
    // Say what is missing (/dev/fuse, the permission, the mount point) before anything else.
    session::preflight(&opts)?;
    let metrics = MountMetrics::new();
    if notify && args.audit_log.as_deref() == Some("-") {
        bail!(
            "--audit-log -: a background mount has no standard output to write to; give a \
             file, or add --foreground"
        );
    }
    let audit = match &args.audit_log {
        Some(path) => Some(
            AuditLog::open(&AuditConfig {
                path: Some(path.clone()),
                ..Default::default()
            })
            .with_context(|| format!("opening the audit trail {path} (--audit-log)"))?,
        ),
        None => None,
    };
    let (volumes, fs_config, closer, principal, auth) = if let Some(gateway) = &args.gateway {
        let (volumes, principal) = remote_volumes(args, gateway, audit.is_some()).await?;
        let auth = if args.anonymous { "anonymous" } else { "sigv4" };
        (volumes, fs_config(args)?, None, principal, auth)
    } else {
        let (volumes, config, opened) = local_volumes(args).await?;
        (volumes, config, Some(opened), None, "local")
    };
    if volumes.is_empty() {
        bail!("no volumes to mount: you may read none, or every --volume was refused");
    }
    let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    tracing::info!(volumes = ?names, "volumes");
    let mut fs = Fs::new(volumes, fs_config, metrics.clone());
    if let Some(log) = audit {
        fs = fs.with_audit(FileAudit::new(log, principal, auth));
    }
    if let (Some(dir), true) = (&args.cache_dir, args.whole_file_max > 0) {
        let dir = dir.join("whole");
        let copies = WholeCopies::open(dir.clone(), args.whole_file_max, args.whole_files)
            .with_context(|| format!("preparing {} for whole-file copies", dir.display()))?;
        fs = fs.with_whole_copies(copies);
    }
    let fs = Arc::new(fs);
    // The mount point as /proc/mounts will list it.
    let absolute =
        std::fs::canonicalize(&args.mountpoint).unwrap_or_else(|_| args.mountpoint.clone());
    // Watched before mounting: a SIGTERM as soon as the mount appears still unmounts cleanly.
    let stop = crate::serve::shutdown_signal();
    let mounted = session::mount(fs, tokio::runtime::Handle::current(), &opts)?;
    // Held (never written) until this process ends: then the watchdog looks at the mount.
    let _watchdog = if opts.auto_unmount {
        Some(start_watchdog(&absolute)?)
    } else {
        None
    };
    if let Some(addr) = &args.metrics {
        serve_metrics(addr, metrics).await?;
    }
    tracing::info!(mountpoint = %args.mountpoint.display(), "mounted");
    if notify {
        println!("ready");
    }
    let r = mounted.serve_until(stop).await;
    if let Some(opened) = closer {
        opened.state.dataplane.catalog().close().await;
    }
    r.with_context(|| format!("serving {}", args.mountpoint.display()))?;
    tracing::info!(mountpoint = %args.mountpoint.display(), "unmounted");
    Ok(())
}

fn fs_config(args: &MountArgs) -> Result<FsConfig> {
    let spool_dir = match &args.spool_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&spool_dir)
        .with_context(|| format!("creating the spool directory {}", spool_dir.display()))?;
    let defaults = FsConfig::default();
    Ok(FsConfig {
        attr_ttl: args.attr_ttl,
        entry_ttl: args.entry_ttl,
        uid: args.uid.unwrap_or_else(current_uid),
        gid: args.gid.unwrap_or_else(current_gid),
        umask: args.umask,
        spool_dir,
        xattrs: !args.no_xattrs,
        ..defaults
    })
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just made is who we are (no unsafe getuid needed).
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn current_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.gid())
        .unwrap_or(0)
}

fn cache_config(args: &MountArgs) -> CacheConfig {
    CacheConfig {
        enabled: !args.no_cache,
        memory_bytes: args.cache_memory,
        disk_bytes: args.cache_disk,
        dir: args.cache_dir.clone(),
        block_size: args.cache_block_size,
        readahead_blocks: args.cache_readahead.max(1),
        // Room for the window of four readers at once, whatever the block size.
        readahead_bytes: (4 * args.cache_readahead.max(1) * args.cache_block_size)
            .max(CacheConfig::default().readahead_bytes),
        ..CacheConfig::default()
    }
}

/// The gateway as a peer backend sees another gateway (its S3 front) with the caller's S3
/// credentials, and the caller's API token: each from the command line, the environment or
/// the credentials file.
fn signed_backend(
    args: &MountArgs,
    gateway: &str,
) -> Result<(BackendConfig, Option<SecretString>)> {
    let profile = credentials_profile(args)?;
    let from_file = |key: &str| profile.as_ref().and_then(|p| p.get(key).cloned());
    let secret_from_file = |key: &str| from_file(key).map(SecretString::from);
    let access_key_id = args
        .access_key_id
        .clone()
        .or_else(|| from_file("aws_access_key_id"))
        .context(
            "no S3 credentials: pass --access-key-id/--secret-access-key, set \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, point --credentials-file at a file \
             with them, or mount public volumes with --anonymous",
        )?;
    let secret_access_key = args
        .secret_access_key
        .clone()
        .or_else(|| secret_from_file("aws_secret_access_key"))
        .context("an access key id without its secret access key")?;
    let token = args
        .token
        .clone()
        .or_else(|| secret_from_file("archway_api_token"));
    let backend = BackendConfig {
        url: format!("archway+{}", gateway.trim_end_matches('/')),
        access_key_id: Some(access_key_id),
        secret_access_key: Some(Secret(secret_access_key.expose_secret().to_string())),
        session_token: args
            .session_token
            .clone()
            .or_else(|| secret_from_file("aws_session_token"))
            .map(|t| Secret(t.expose_secret().to_string())),
        ..Default::default()
    };
    Ok((backend, token))
}

/// The volumes of a remote gateway — named ones, or those the catalogue says we may read —
/// and (with `whoami`, where an API token says it) the user the mount acts as.
async fn remote_volumes(
    args: &MountArgs,
    gateway: &str,
    whoami: bool,
) -> Result<(Vec<MountVolume>, Option<String>)> {
    let (backend, token) = if args.anonymous {
        // Unsigned requests: the gateway serves them for public volumes only.
        let backend = BackendConfig {
            url: format!("archway+{}", gateway.trim_end_matches('/')),
            anonymous: true,
            ..Default::default()
        };
        (backend, None)
    } else {
        signed_backend(args, gateway)?
    };
    let mut principal = None;
    let listed = match &token {
        Some(t) => {
            let client = archway_gateway::ApiClient::remote(gateway, Some(t.clone()))?;
            if whoami {
                let me: archway_catalog::User = client
                    .json(http::Method::GET, "/api/v1/whoami", None::<&()>)
                    .await
                    .with_context(|| format!("asking {gateway} who the API token is"))?;
                principal = Some(me.name);
            }
            let list: archway_gateway::api::VolumeList = client
                .json(
                    http::Method::GET,
                    "/api/v1/volumes?limit=10000",
                    None::<&()>,
                )
                .await
                .with_context(|| format!("asking {gateway} which volumes you may read"))?;
            list.volumes
                .into_iter()
                .map(|v| {
                    let writes = if v.volume.read_only {
                        Writes::ReadOnly
                    } else if v.access < Access::Write {
                        Writes::Denied
                    } else {
                        Writes::Allowed
                    };
                    (v.volume.id, writes)
                })
                .collect::<Vec<_>>()
        }
        None if !args.volumes.is_empty() => Vec::new(),
        None if args.anonymous => bail!(
            "an anonymous mount cannot ask the catalogue which volumes are public: name them \
             with --volume"
        ),
        None => bail!(
            "no API token to ask the catalogue which volumes you may read: pass --token \
             (or `archway_api_token` in the credentials file), or name them with --volume"
        ),
    };
    let wanted: Vec<(String, Writes)> = if args.volumes.is_empty() {
        listed
    } else {
        let known: HashMap<_, _> = listed.into_iter().collect();
        args.volumes
            .iter()
            .map(|v| {
                if token.is_some() && !known.contains_key(v) {
                    bail!("volume `{v}` does not exist on {gateway} or you may not read it");
                }
                // Without the catalogue, writes are tried and the gateway decides (EACCES).
                Ok((v.clone(), known.get(v).copied().unwrap_or(Writes::Allowed)))
            })
            .collect::<Result<_>>()?
    };
    let cache_config = CacheConfig {
        // Through the gateway, workspaces are remote too: cached like archives. Every open
        // pins its reads to the version the inode holds (If-Match), blocks are keyed by
        // version, and the cached metadata is never trusted longer than the kernel trusts
        // attributes, so a change made elsewhere is seen as soon as the attributes expire.
        bypass_workspaces: false,
        metadata_ttl: args.attr_ttl.min(CacheConfig::default().metadata_ttl),
        ..cache_config(args)
    };
    let cache = if cache_config.enabled {
        Some(BlockCache::new(cache_config).await)
    } else {
        None
    };
    wanted
        .into_iter()
        .map(|(name, writes)| {
            let writes = if args.read_only {
                Writes::ReadOnly
            } else {
                writes
            };
            let remote = archway_dataplane::gateway_volume(&backend, &name)
                .with_context(|| format!("volume `{name}` on {gateway}"))?;
            let s3 = remote.store;
            // Reads through the block cache, writable volumes too (see above); the mount's
            // own writes go through it and drop what they make stale.
            let store: Arc<dyn archway_dataplane::object_store::ObjectStore> = match &cache {
                Some(c) => {
                    let scope = format!("{}/{name}", gateway.trim_end_matches('/'));
                    Arc::new(CachedStore::new(s3.clone(), c.clone(), scope))
                }
                None => s3.clone(),
            };
            Ok(MountVolume {
                name,
                store,
                lister: Some(remote.lister),
                writes,
                origin: Some(s3),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(|volumes| (volumes, principal))
}

/// The profile's keys from the AWS shared credentials file, if there is one.
fn credentials_profile(args: &MountArgs) -> Result<Option<BTreeMap<String, String>>> {
    credentials_profile_in(args, std::env::var_os("HOME").map(PathBuf::from))
}

fn credentials_profile_in(
    args: &MountArgs,
    home: Option<PathBuf>,
) -> Result<Option<BTreeMap<String, String>>> {
    let path = match &args.credentials_file {
        Some(p) => p.clone(),
        None => match home {
            Some(home) => home.join(".aws/credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // The default file is only a fallback: one that is missing or unreadable (another
        // user's home, mode 0700) is reported, and credentials may still come from elsewhere.
        Err(e) if args.credentials_file.is_none() => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "not reading the default credentials file");
            }
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file = CredentialsFile::parse(&text)
        .with_context(|| format!("reading {} as an AWS credentials file", path.display()))?;
    let chosen = match &args.profile {
        Some(p) => Some(
            file.profile(p)
                .cloned()
                .with_context(|| format!("no profile `{p}` in {}", path.display()))?,
        ),
        None => file
            .profile("default")
            .or_else(|| file.profile(crate::serve::PROFILE))
            .cloned(),
    };
    Ok(chosen)
}

/// The volumes of the local gateway, straight to their backends; writable unless read-only
/// (archives are, unless their admin said otherwise). The mount acts as the administrator: whoever can read
/// the gateway's configuration and data directory holds its backend credentials anyway.
async fn local_volumes(
    args: &MountArgs,
) -> Result<(Vec<MountVolume>, FsConfig, crate::serve::Opened)> {
    let source = crate::serve::Source {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        listen: None,
    };
    let cache = cache_config(args);
    let opened = crate::serve::open_with(&source, false, move |config| {
        // The gateway's disk tier belongs to the gateway: never share its directory.
        config.cache = cache;
    })
    .await?;
    let mut fs = fs_config(args)?;
    fs.part_size = opened.config.limits.upload_part_size;
    fs.upload_concurrency = opened.config.limits.upload_concurrency;
    fs.max_object_bytes = opened.config.limits.max_object_bytes;
    let admin = Principal {
        user: crate::serve::ADMIN_USER.into(),
        admin: true,
        scope: Default::default(),
    };
    let dataplane = &opened.state.dataplane;
    let all = dataplane
        .volumes(Some(&admin), &VolumeQuery::default())
        .await?;
    let mut volumes = Vec::new();
    for (volume, _) in all {
        if !args.volumes.is_empty() && !args.volumes.contains(&volume.id) {
            continue;
        }
        match dataplane.open(Some(&admin), &volume.id, Op::Get).await {
            Ok(h) => volumes.push(MountVolume {
                name: volume.id.clone(),
                // The dataplane's checked handle: every call is held to the volume's rules.
                store: h.object_store(),
                lister: None,
                writes: match h.allow(Op::Put) {
                    _ if args.read_only => Writes::ReadOnly,
                    Ok(()) => Writes::Allowed,
                    Err(archway_dataplane::DataplaneError::ReadOnly { .. }) => Writes::ReadOnly,
                    Err(_) => Writes::Denied,
                },
                // Local files are read where they are.
                origin: None,
            }),
            Err(e) => tracing::warn!(volume = %volume.id, error = %e, "not mounted"),
        }
    }
    for v in &args.volumes {
        if !volumes.iter().any(|m| &m.name == v) {
            bail!("volume `{v}` is not in the catalogue (or its backend is not configured)");
        }
    }
    Ok((volumes, fs, opened))
}

async fn serve_metrics(addr: &str, metrics: MountMetrics) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }),
    );
    tracing::info!(address = %addr, "metrics at /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_and_umasks_parse_or_say_why_not() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("10kb").unwrap(), 10_000);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("5 furlongs").unwrap_err().contains("not a size"));
        assert_eq!(parse_umask("027").unwrap(), 0o27);
        assert!(parse_umask("999").is_err());
    }

    #[test]
    fn an_unreadable_default_credentials_file_is_not_fatal_but_a_named_one_is() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            mount: MountArgs,
        }
        let home = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails, as an unreadable home does.
        std::fs::create_dir_all(home.path().join(".aws/credentials")).unwrap();
        let mut args = Cli::parse_from(["mount", "/mnt"]).mount;
        args.credentials_file = None; // whatever the environment says
        let found = credentials_profile_in(&args, Some(home.path().to_path_buf())).unwrap();
        assert!(found.is_none());
        let named = home.path().join(".aws/credentials");
        let mut args = Cli::parse_from(["mount", "/mnt"]).mount;
        args.credentials_file = Some(named);
        let err = credentials_profile_in(&args, None).unwrap_err();
        assert!(format!("{err:#}").contains("reading"), "{err:#}");
    }
}
