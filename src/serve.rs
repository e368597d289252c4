//! `archway serve`, and opening a data directory: configuration, catalogue, first-start
//! bootstrap (admin, credentials, demo and workspace volumes), dataplane and the HTTP router.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use archway_catalog::{Catalog, CatalogError, NewVolume, VolumeKind, secret::write_private};
use archway_config::{Config, DEMO_BACKEND, WORKSPACES_BACKEND, absolute};
use archway_dataplane::Dataplane;
use archway_gateway::{AppState, Metrics, ServerConfig};

/// The admin user created on first start.
pub const ADMIN_USER: &str = "admin";
/// The profile in the credentials file.
pub const PROFILE: &str = "archway";

/// Where the gateway's configuration comes from: a file, flags, or the embedded default.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

impl Source {
    /// Loads and validates the configuration, with flags taking precedence over the file and
    /// the environment. Without a file, the embedded default (with the demo volume).
    pub fn load(&self) -> Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(listen) = &self.listen {
            config.server.listen = listen.clone();
            if let Err(e) = config.server.listen_addr() {
                bail!("--listen: {e}");
            }
        }
        Ok(config.with_builtin_backends(self.is_embedded_default()))
    }

    pub fn is_embedded_default(&self) -> bool {
        self.config.is_none()
    }
}

/// An opened data directory: everything a gateway or a local CLI command needs.
pub struct Opened {
    pub config: Config,
    pub state: AppState,
}

/// Opens the catalogue and the dataplane; `bootstrap` also creates what a first start creates.
pub async fn open(source: &Source, bootstrap: bool) -> Result<Opened> {
    open_with(source, bootstrap, |_| {}).await
}

/// [`open`], with a last say over the loaded configuration (as `archway mount` has over the
/// cache, which must not share the gateway's disk tier).
pub async fn open_with(
    source: &Source,
    bootstrap: bool,
    adjust: impl FnOnce(&mut Config),
) -> Result<Opened> {
    let mut config = source.load()?;
    adjust(&mut config);
    let data_dir = absolute(&config.server.data_dir);
    if !bootstrap && !data_dir.join("catalog.db").exists() && config.catalog.url.is_none() {
        bail!(
            "{} holds no Archway catalogue: start `archway serve --data-dir {}` once first, \
             or pass --gateway URL",
            data_dir.display(),
            data_dir.display()
        );
    }
    create_private_dir(&data_dir)?;
    for name in [DEMO_BACKEND, WORKSPACES_BACKEND] {
        let builtin = format!("file://{}", data_dir.join(name).display());
        if config.backends.get(name).is_some_and(|b| b.url == builtin) {
            std::fs::create_dir_all(data_dir.join(name))
                .with_context(|| format!("creating {}", data_dir.join(name).display()))?;
        }
    }
    let catalog = Catalog::open(&config.catalog, &data_dir)
        .await
        .with_context(|| format!("opening the catalogue for {}", data_dir.display()))?;
    let dataplane = Dataplane::new(catalog.clone(), config.dataplane()).await?;
    let audit = if bootstrap {
        archway_dataplane::audit::AuditLog::open(&config.audit).with_context(|| {
            format!(
                "opening the audit trail {} (audit.path)",
                config.audit.path.as_deref().unwrap_or_default()
            )
        })?
    } else {
        archway_dataplane::audit::AuditLog::disabled()
    };
    let state = AppState {
        audit,
        identity: Arc::new(archway_gateway::Identity::new(&config.auth)),
        site_id: Default::default(),
        auth_limit: Arc::new(archway_gateway::auth_limit::AuthLimiter::new(
            config.server.auth_failure_burst,
            config.server.auth_failures_per_minute,
        )),
        ui: archway_gateway::ui::Ui::new(config.server.quicklook_cache_bytes),
        dataplane: Arc::new(dataplane),
        metrics: Arc::new(Metrics::new()),
        server: Arc::new(ServerConfig {
            data_dir: data_dir.clone(),
            ..config.server.clone()
        }),
    };
    if bootstrap {
        first_start(source, &config, &state, &data_dir).await?;
        for volume in &config.volumes {
            let (v, created) = catalog
                .upsert_volume(volume.clone())
                .await
                .with_context(|| {
                    format!("declaring volume `{}` from the configuration", volume.id)
                })?;
            tracing::info!(volume = %v.id, created, "configured volume");
        }
        warn_about_orphans(&state).await?;
        // Abandoned multipart uploads, and keys and tokens expired for a day (temporary keys
        // pile up with every sign-in), go at start and then every hour.
        let dataplane = state.dataplane.clone();
        let expiry = config.limits.upload_expiry;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = dataplane.expire_uploads(expiry).await {
                    tracing::warn!(error = %e, "expiring abandoned uploads failed");
                }
                // What writes a crash interrupted left in file backends (after an hour
                // unmodified, so no replica's write in progress is taken).
                match dataplane
                    .sweep_staging(archway_dataplane::posix::STAGING_MAX_AGE)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(removed = n, "removed staging files of interrupted writes")
                    }
                    Err(e) => tracing::warn!(error = %e, "sweeping staging files failed"),
                }
                match dataplane
                    .catalog()
                    .sweep_expired_credentials(std::time::Duration::from_secs(86_400))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed expired keys and tokens"),
                    Err(e) => tracing::warn!(error = %e, "removing expired keys and tokens failed"),
                }
            }
        });
        // Peer links: each peer's catalogue read again every `peer_refresh_interval`.
        let links = state.clone();
        let every = config.server.peer_refresh_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                archway_gateway::links::refresh_all(&links).await;
            }
        });
        // The workspaces' science index follows what users write.
        let every = config.server.science_refresh_interval;
        if !every.is_zero() {
            let dataplane = state.dataplane.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    archway_gateway::science::refresh_workspaces(&dataplane).await;
                }
            });
        }
        // The demo volume of the embedded default is searchable from the first start (four
        // small files: scanned before serving, so the first search finds them).
        if source.is_embedded_default()
            && let Err(e) = archway_gateway::science::scan_if_new(&state.dataplane, "demo").await
        {
            tracing::warn!(error = %e, "the demo volume was not scanned");
        }
    }
    Ok(Opened { config, state })
}

/// Creates the admin (with credentials written once), the demo volume and the admin's
/// workspace, each only if missing: restarts change nothing.
async fn first_start(
    source: &Source,
    config: &Config,
    state: &AppState,
    data_dir: &Path,
) -> Result<()> {
    let catalog = state.dataplane.catalog();
    let credentials = data_dir.join("credentials");
    match catalog.get_user(ADMIN_USER).await {
        Ok(_) => {}
        Err(CatalogError::NotFound { .. }) => 'first: {
            let endpoint = endpoint_url(config);
            match catalog
                .create_user(ADMIN_USER, "Archway administrator", true)
                .await
            {
                Ok(_) => {}
                // Replicas on one PostgreSQL catalogue started at once: another one made the
                // admin (and makes its credentials and workspace) first.
                Err(CatalogError::AlreadyExists { .. }) => {
                    tracing::info!("another replica made the admin first");
                    break 'first;
                }
                Err(e) => return Err(e.into()),
            }
            let key = catalog
                .create_access_key(ADMIN_USER, "created on first start")
                .await?;
            let token = catalog
                .create_token(ADMIN_USER, "created on first start", None)
                .await?;
            let profile = archway_config::credentials::render_profile(
                PROFILE,
                &[
                    ("aws_access_key_id", &key.key.access_key_id),
                    ("aws_secret_access_key", &key.secret_access_key),
                    ("archway_api_token", &token.secret),
                ],
            )
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", credentials.display()))?;
            let text = format!(
                "# Archway credentials for the `{ADMIN_USER}` user, written once on first start.\n\
                 # Use: AWS_SHARED_CREDENTIALS_FILE={path} aws --profile {PROFILE} --endpoint-url {endpoint} s3 ls\n\
                 # HTTP API: send the token below as `Authorization: Bearer <token>`.\n\
                 {profile}",
                path = credentials.display(),
            );
            write_private(&credentials, text.as_bytes())
                .with_context(|| format!("writing {}", credentials.display()))?;
            // Printed once, and only to a terminal: under a container engine or systemd,
            // standard output is a log, and the log never sees secrets.
            let mut out = std::io::stdout().lock();
            writeln!(out, "Archway: first start in {}", data_dir.display())?;
            if std::io::IsTerminal::is_terminal(&out) {
                writeln!(
                    out,
                    "  admin credentials (shown once, kept in {} mode 0600):",
                    credentials.display()
                )?;
                writeln!(out, "    aws_access_key_id     = {}", key.key.access_key_id)?;
                writeln!(out, "    aws_secret_access_key = {}", key.secret_access_key)?;
                writeln!(out, "    archway_api_token     = {}", token.secret)?;
            } else {
                writeln!(
                    out,
                    "  admin credentials written to {} (mode 0600; not printed: standard \
                     output is not a terminal)",
                    credentials.display()
                )?;
            }
            out.flush()?;

            if let Some((backend, prefix)) = state.dataplane.workspace_location("workspace") {
                if backend == WORKSPACES_BACKEND {
                    std::fs::create_dir_all(data_dir.join(WORKSPACES_BACKEND).join(&prefix))?;
                }
                let ws = NewVolume {
                    id: "workspace".into(),
                    title: "Admin workspace".into(),
                    description: "Writable personal space of the admin user.".into(),
                    backend,
                    prefix,
                    kind: VolumeKind::Workspace,
                    owner: Some(ADMIN_USER.into()),
                    ..Default::default()
                };
                match catalog.create_volume(ws).await {
                    Ok(_) | Err(CatalogError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    if source.is_embedded_default() {
        crate::demo::write_demo_files(&data_dir.join(DEMO_BACKEND))?;
        let demo = NewVolume {
            id: "demo".into(),
            title: "Archway demo data".into(),
            description: "A few small FITS images and a source table written by Archway on \
                          first start, to try listing, reading and reducing."
                .into(),
            mission: Some("Archway demo".into()),
            instrument: Some("DEMOCAM".into()),
            tags: vec![
                "demo".into(),
                "fits".into(),
                "images".into(),
                "catalog".into(),
            ],
            license: Some("CC0-1.0".into()),
            backend: DEMO_BACKEND.into(),
            kind: VolumeKind::Archive,
            ..Default::default()
        };
        match catalog.create_volume(demo).await {
            Ok(_) | Err(CatalogError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Volumes whose backend this gateway does not configure cannot be served: say so at start.
async fn warn_about_orphans(state: &AppState) -> Result<()> {
    let admin = archway_catalog::Principal {
        user: ADMIN_USER.into(),
        admin: true,
        scope: Default::default(),
    };
    let all = state
        .dataplane
        .catalog()
        .list_volumes(Some(&admin), &Default::default())
        .await?;
    for (v, _) in all {
        if !state.dataplane.has_backend(&v.backend) {
            tracing::warn!(volume = %v.id, backend = %v.backend, "volume's backend is not configured here; it cannot be served");
        }
        // Made before its id was reserved (`/stac`, `/sia`...): its bucket is shadowed.
        if archway_catalog::RESERVED_VOLUME_IDS.contains(&v.id.as_str()) {
            tracing::warn!(
                volume = %v.id,
                "volume id `{id}` is now reserved for the gateway's /{id} route: the volume \
                 cannot be reached as an S3 bucket. Rename it: `archway catalog volume add \
                 NEW-ID --backend {backend} --prefix '{prefix}'` (with its other fields), move \
                 its grants (`archway catalog grant add`), then `archway catalog volume remove {id}`",
                id = v.id,
                backend = v.backend,
                prefix = v.prefix,
            );
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Least privilege, checked at every start: a gateway running as root, and a data directory or
/// secret file (the catalogue key, the admin's credentials, TLS key) that other users may read
/// or that others than its owner may change. Warnings, not refusals: a Kubernetes Secret
/// mounted with an `fsGroup` is group-readable by design.
#[allow(clippy::disallowed_methods)] // start-up
fn privilege_warnings(config: &Config, data_dir: &Path) -> Vec<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = Vec::new();
    // The owner of /proc/self is the process's effective user.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        out.push(
            "archway serve runs as root: it needs no privilege, so run it as an unprivileged \
             user that owns the data directory (the container image runs as user 10001, \
             deploy/systemd/archway.service as a dynamic user)"
                .to_string(),
        );
    }
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    if let Some(m) = mode(data_dir)
        && m & 0o007 != 0
    {
        out.push(format!(
            "the data directory {} has mode {m:04o}: other users may enter it; chmod o-rwx it \
             (it holds the catalogue, uploads in progress and the cache)",
            data_dir.display()
        ));
    }
    let mut secrets = vec![
        (
            "catalogue secret key",
            config.catalog.resolved_secret_key_file(data_dir),
        ),
        ("admin credentials", data_dir.join("credentials")),
    ];
    if let Some(tls) = &config.server.tls {
        secrets.push(("TLS key", tls.key.clone()));
    }
    for (what, path) in secrets {
        if let Some(m) = mode(&path)
            && m & 0o027 != 0
        {
            out.push(format!(
                "the {what} {} has mode {m:04o}: others may read or change it; chmod 600 it",
                path.display()
            ));
        }
    }
    out
}

pub fn endpoint_url(config: &Config) -> String {
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", config.server.listen)
}

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn serve(source: Source) -> Result<()> {
    let stop = shutdown_signal();
    let opened = open(&source, true).await?;
    let config = &opened.config;
    let addr = config.server.listen_addr().map_err(anyhow::Error::msg)?;
    let tls = match &config.server.tls {
        Some(t) => Some(archway_gateway::server::tls_acceptor(t)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (server.listen)"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data_dir = absolute(&config.server.data_dir);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Archway gateway listening on {scheme}://{local}")?;
        writeln!(
            out,
            "  catalogue:   {}",
            opened.state.dataplane.catalog().url()
        )?;
        writeln!(
            out,
            "  credentials: {} (profile [{PROFILE}])",
            data_dir.join("credentials").display()
        )?;
        writeln!(
            out,
            "  API:         {scheme}://{local}/api/v1/volumes (Authorization: Bearer <archway_api_token>)"
        )?;
        out.flush()?;
    }
    tracing::info!(address = %local, tls = tls.is_some(), "listening");
    for warning in privilege_warnings(config, &data_dir) {
        tracing::warn!("{warning}");
    }
    let router = archway_gateway::router(opened.state.clone());
    let limits = archway_gateway::server::ConnectionLimits {
        header_read_timeout: config.server.header_read_timeout,
        max_connections: config.server.max_connections,
    };
    archway_gateway::server::serve(listener, router, tls, limits, stop).await;
    opened.state.dataplane.catalog().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Watches SIGINT and SIGTERM from now on — a signal that arrives before the returned future
/// is first polled (while a mount or the listener is still being set up) is not lost, and does
/// not kill the process — and returns a future that ends at the first of them.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM or SIGINT; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
