//! `archway catalog …`: the catalogue from the command line, through the HTTP API of a remote
//! gateway or, in process, of a local data directory.

use anyhow::{Context, Result, bail};
use archway_catalog::{NewVolume, Principal, VolumeKind, VolumePatch};
use archway_gateway::api::{
    GrantBody, NewGroup, NewKey, NewToken, NewUser, ScanEvent, UserPatch, VolumeList, VolumeView,
};
use archway_gateway::client::{ApiClient, segment};
use clap::{Args, Subcommand};
use futures::StreamExt;
use http::Method;
use serde_json::Value;

use crate::serve::{self, Source};

/// A secret from the command line or the environment, kept out of `Debug` output.
fn secret(s: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(s.into())
}

#[derive(Args, Debug)]
pub struct Target {
    /// A running gateway to talk to, e.g. http://127.0.0.1:9000 (else: the local data directory).
    #[arg(long, env = "ARCHWAY_GATEWAY", global = true)]
    pub gateway: Option<String>,
    /// API token for --gateway. With `archway catalog`, give it before the subcommand
    /// (`catalog peer add` has a `--token` of its own: the link's token at the peer).
    #[arg(long, env = "ARCHWAY_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<secrecy::SecretString>,
    /// Local data directory (without --gateway).
    #[arg(long, global = true)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Configuration file of the local gateway (without --gateway).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

// Parsed once per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Volumes: what they are, where they live.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Users, their S3 access keys and API tokens.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups of users.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Who may read, write or administer which volume.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Links to peer gateways, whose volumes appear here as NAME.VOLUME.
    #[command(subcommand)]
    Peer(PeerCommand),
}

#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Link the peer gateway at URL as NAME, with credentials of a user there: its volumes
    /// that user may read appear here as NAME.VOLUME (read at once, then periodically).
    Add {
        name: String,
        url: String,
        /// The S3 access key this gateway signs with at the peer.
        #[arg(long, env = "ARCHWAY_PEER_ACCESS_KEY_ID", hide_env_values = true)]
        access_key_id: String,
        #[arg(long, env = "ARCHWAY_PEER_SECRET_ACCESS_KEY", hide_env_values = true, value_parser = secret)]
        secret_access_key: secrecy::SecretString,
        /// An API token at the peer: needed to read its catalogue and to forward reductions.
        #[arg(long, env = "ARCHWAY_PEER_TOKEN", hide_env_values = true, value_parser = secret)]
        token: Option<secrecy::SecretString>,
    },
    /// The links, with when each was last read and how.
    List,
    /// One link.
    Show { name: String },
    /// Read the peer's catalogue now: volumes added, brought in line, removed, skipped.
    Refresh { name: String },
    /// Remove the link and the volumes linked through it (with their grants).
    Remove { name: String },
}

#[derive(Args, Debug, Default)]
pub struct VolumeFields {
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Mission or collection (ObsCore obs_collection).
    #[arg(long)]
    pub mission: Option<String>,
    /// Instrument (ObsCore instrument_name).
    #[arg(long)]
    pub instrument: Option<String>,
    /// A tag; repeat for several (replaces all tags on update).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long)]
    pub license: Option<String>,
    #[arg(long)]
    pub dataproduct_type: Option<String>,
    #[arg(long)]
    pub calib_level: Option<i64>,
    /// Backend name from the gateway's configuration.
    #[arg(long)]
    pub backend: Option<String>,
    /// Path inside the backend.
    #[arg(long)]
    pub prefix: Option<String>,
    /// archive or workspace.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub read_only: Option<bool>,
    #[arg(long)]
    pub public_read: Option<bool>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Free-form metadata as a JSON object.
    #[arg(long)]
    pub extra: Option<String>,
    /// A workspace's quota in bytes: a size such as `10GiB` or `500MB`, or `none`.
    #[arg(long, value_parser = quota_bytes, value_name = "SIZE|none")]
    pub quota_bytes: Option<Limit>,
    /// A workspace's quota in objects: a count, or `none`.
    #[arg(long, value_parser = quota_objects, value_name = "N|none")]
    pub quota_objects: Option<Limit>,
}

/// A quota from the command line: `none` (no limit) or a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

fn quota_bytes(s: &str) -> Result<Limit, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    crate::mount::parse_size(s).map(|n| Limit(Some(n)))
}

fn quota_objects(s: &str) -> Result<Limit, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    s.trim()
        .parse::<u64>()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("`{s}` is neither a number of objects nor `none`"))
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Register a volume over a backend.
    Add {
        id: String,
        #[command(flatten)]
        fields: VolumeFields,
    },
    /// List the volumes you may see.
    List {
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show one volume.
    Show { id: String },
    /// Change some fields of a volume.
    Update {
        id: String,
        #[command(flatten)]
        fields: VolumeFields,
    },
    /// Remove a volume from the catalogue (its data stays in the backend).
    Remove { id: String },
    /// Walk a volume and record its object count and size.
    Scan { id: String },
    /// Full-text search over title, description, tags, mission and instrument.
    Search {
        query: String,
        #[arg(long)]
        mission: Option<String>,
        #[arg(long)]
        instrument: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    List,
    Show {
        name: String,
    },
    Update {
        name: String,
        #[arg(long)]
        admin: Option<bool>,
        #[arg(long)]
        display_name: Option<String>,
        /// May create workspace volumes (S3 CreateBucket).
        #[arg(long)]
        create_workspaces: Option<bool>,
        /// The user's quota in bytes over every workspace they own: `10GiB`, `none`.
        #[arg(long, value_parser = quota_bytes, value_name = "SIZE|none")]
        quota_bytes: Option<Limit>,
        /// The user's quota in objects over every workspace they own: a count, `none`.
        #[arg(long, value_parser = quota_objects, value_name = "N|none")]
        quota_objects: Option<Limit>,
    },
    Remove {
        name: String,
    },
    /// S3 access keys of a user.
    #[command(subcommand)]
    Key(KeyCommand),
    /// HTTP API tokens of a user.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create an access key; the secret is printed once.
    Create {
        user: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Lifetime, e.g. 30d (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
    },
    List {
        user: String,
    },
    Revoke {
        user: String,
        access_key_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; it is printed once.
    Create {
        user: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Lifetime, e.g. 30d (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    List {
        user: String,
    },
    Revoke {
        user: String,
        id: String,
    },
}

/// What a new key or token is limited to, within its user's rights.
#[derive(clap::Args, Debug, Default)]
pub struct ScopeArgs {
    /// Limit it to reading: writes, deletes and catalogue changes are refused.
    #[arg(long)]
    read_only: bool,
    /// Limit it to this volume (repeat for more); elsewhere it reads public volumes only.
    #[arg(long = "volume", value_name = "VOLUME")]
    volumes: Vec<String>,
}

impl ScopeArgs {
    fn volumes(&self) -> Option<Vec<String>> {
        (!self.volumes.is_empty()).then(|| self.volumes.clone())
    }
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Add a user to a group.
    AddMember {
        group: String,
        user: String,
    },
    /// Remove a user from a group.
    RemoveMember {
        group: String,
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Grant LEVEL (read, write, admin) on VOLUME to SUBJECT (user:NAME or group:NAME).
    Add {
        subject: String,
        volume: String,
        level: String,
    },
    /// List grants, optionally of one volume or subject.
    List {
        #[arg(long)]
        volume: Option<String>,
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke SUBJECT's grant on VOLUME.
    Remove { subject: String, volume: String },
}

const NO_BODY: Option<&()> = None;

pub async fn run(target: Target, command: CatalogCommand) -> Result<()> {
    let client = connect(&target).await?;
    let json = target.json;
    match command {
        CatalogCommand::Volume(cmd) => volume(&client, cmd, json).await,
        CatalogCommand::User(cmd) => user(&client, cmd).await,
        CatalogCommand::Group(cmd) => group(&client, cmd).await,
        CatalogCommand::Grant(cmd) => grant(&client, cmd).await,
        CatalogCommand::Peer(cmd) => peer(&client, cmd).await,
    }
}

async fn peer(client: &ApiClient, cmd: PeerCommand) -> Result<()> {
    let path = |name: &str| format!("/api/v1/peers/{}", segment(name));
    match cmd {
        PeerCommand::Add {
            name,
            url,
            access_key_id,
            secret_access_key,
            token,
        } => {
            use secrecy::ExposeSecret;
            let body = archway_catalog::NewPeer {
                name,
                url,
                access_key_id,
                secret_access_key: secret_access_key.expose_secret().to_string(),
                token: token.map(|t| t.expose_secret().to_string()),
            };
            let peer: Value = client
                .json(Method::POST, "/api/v1/peers", Some(&body))
                .await?;
            if let Some(e) = peer["last_error"].as_str() {
                eprintln!(
                    "linked `{}`, but its catalogue could not be read: {e}",
                    peer["name"].as_str().unwrap_or_default()
                );
            }
            print(&peer)
        }
        PeerCommand::List => print(
            &client
                .json::<Value>(Method::GET, "/api/v1/peers", NO_BODY)
                .await?,
        ),
        PeerCommand::Show { name } => print(
            &client
                .json::<Value>(Method::GET, &path(&name), NO_BODY)
                .await?,
        ),
        PeerCommand::Refresh { name } => print(
            &client
                .json::<Value>(Method::POST, &format!("{}/refresh", path(&name)), NO_BODY)
                .await?,
        ),
        PeerCommand::Remove { name } => {
            client.call(Method::DELETE, &path(&name), NO_BODY).await?;
            eprintln!("removed peer link `{name}` and the volumes linked through it");
            Ok(())
        }
    }
}

pub(crate) async fn connect(target: &Target) -> Result<ApiClient> {
    if let Some(url) = &target.gateway {
        if target.data_dir.is_some() || target.config.is_some() {
            bail!(
                "--gateway talks to a running gateway; --data-dir and --config are for local use"
            );
        }
        return Ok(ApiClient::remote(url, target.token.clone())?);
    }
    let source = Source {
        config: target.config.clone(),
        data_dir: target.data_dir.clone(),
        listen: None,
    };
    let opened = serve::open(&source, false).await?;
    let identity = Principal {
        user: "local".into(),
        admin: true,
        scope: Default::default(),
    };
    Ok(ApiClient::local(
        archway_gateway::router(opened.state),
        identity,
    ))
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn print_volumes(list: &VolumeList, json: bool) -> Result<()> {
    if json {
        return print(list);
    }
    println!(
        "{:<24} {:<9} {:<6} {:<10} {:<28} TITLE",
        "ID", "KIND", "ACCESS", "OBJECTS", "SITE (LINK)"
    );
    for v in &list.volumes {
        let objects = v
            .volume
            .last_scan
            .map(|s| s.objects.to_string())
            .unwrap_or_else(|| "-".into());
        // Volumes linked from a peer name the gateway that holds the data, and the link.
        let site = match archway_dataplane::linked_site(&v.volume) {
            Some((site, link)) => format!("{site} ({link})"),
            None => "here".to_string(),
        };
        println!(
            "{:<24} {:<9} {:<6} {:<10} {:<28} {}",
            v.volume.id,
            v.volume.kind.as_str(),
            v.access.as_str(),
            objects,
            site,
            v.volume.title
        );
    }
    Ok(())
}

fn parse_kind(kind: Option<&str>) -> Result<Option<VolumeKind>> {
    kind.map(|k| VolumeKind::parse(k).map_err(anyhow::Error::from))
        .transpose()
}

fn parse_extra(extra: Option<&str>) -> Result<Option<serde_json::Map<String, Value>>> {
    match extra {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<Value>(text).context("--extra is not JSON")? {
            Value::Object(map) => Ok(Some(map)),
            _ => bail!("--extra must be a JSON object"),
        },
    }
}

async fn volume(client: &ApiClient, cmd: VolumeCommand, json: bool) -> Result<()> {
    match cmd {
        VolumeCommand::Add { id, fields: f } => {
            let Some(backend) = f.backend.clone() else {
                bail!(
                    "--backend is required: the name of a backend in the gateway's configuration"
                );
            };
            let new = NewVolume {
                id,
                title: f.title.unwrap_or_default(),
                description: f.description.unwrap_or_default(),
                mission: f.mission,
                instrument: f.instrument,
                tags: f.tags,
                license: f.license,
                dataproduct_type: f.dataproduct_type,
                calib_level: f.calib_level,
                backend,
                prefix: f.prefix.unwrap_or_default(),
                kind: parse_kind(f.kind.as_deref())?.unwrap_or_default(),
                read_only: f.read_only,
                public_read: f.public_read.unwrap_or(false),
                owner: f.owner,
                extra: parse_extra(f.extra.as_deref())?.unwrap_or_default(),
                quota_bytes: f.quota_bytes.and_then(|l| l.0),
                quota_objects: f.quota_objects.and_then(|l| l.0),
            };
            let v: VolumeView = client
                .json(Method::POST, "/api/v1/volumes", Some(&new))
                .await?;
            print(&v)
        }
        VolumeCommand::List { kind } => {
            let path = format!(
                "/api/v1/volumes{}",
                query_string(&[("kind", kind.as_deref())])
            );
            let list: VolumeList = client.json(Method::GET, &path, NO_BODY).await?;
            print_volumes(&list, json)
        }
        VolumeCommand::Search {
            query,
            mission,
            instrument,
            tag,
            kind,
        } => {
            let path = format!(
                "/api/v1/volumes{}",
                query_string(&[
                    ("q", Some(&query)),
                    ("mission", mission.as_deref()),
                    ("instrument", instrument.as_deref()),
                    ("tag", tag.as_deref()),
                    ("kind", kind.as_deref()),
                ])
            );
            let list: VolumeList = client.json(Method::GET, &path, NO_BODY).await?;
            print_volumes(&list, json)
        }
        VolumeCommand::Show { id } => {
            let v: VolumeView = client
                .json(
                    Method::GET,
                    &format!("/api/v1/volumes/{}", segment(&id)),
                    NO_BODY,
                )
                .await?;
            print(&v)
        }
        VolumeCommand::Update { id, fields: f } => {
            let patch = VolumePatch {
                title: f.title,
                description: f.description,
                mission: f.mission.map(Some),
                instrument: f.instrument.map(Some),
                tags: (!f.tags.is_empty()).then_some(f.tags),
                license: f.license.map(Some),
                dataproduct_type: f.dataproduct_type.map(Some),
                calib_level: f.calib_level.map(Some),
                backend: f.backend,
                prefix: f.prefix,
                kind: parse_kind(f.kind.as_deref())?,
                read_only: f.read_only,
                public_read: f.public_read,
                owner: f.owner.map(Some),
                extra: parse_extra(f.extra.as_deref())?,
                quota_bytes: f.quota_bytes.map(|l| l.0),
                quota_objects: f.quota_objects.map(|l| l.0),
            };
            if patch.is_empty() {
                bail!("nothing to update: give at least one field, e.g. --title");
            }
            let v: VolumeView = client
                .json(
                    Method::PATCH,
                    &format!("/api/v1/volumes/{}", segment(&id)),
                    Some(&patch),
                )
                .await?;
            print(&v)
        }
        VolumeCommand::Remove { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/volumes/{}", segment(&id)),
                    NO_BODY,
                )
                .await?;
            eprintln!("removed volume `{id}` from the catalogue (its data is untouched)");
            Ok(())
        }
        VolumeCommand::Scan { id } => scan(client, &id).await,
    }
}

async fn scan(client: &ApiClient, id: &str) -> Result<()> {
    let (_, mut body) = client
        .send(
            Method::POST,
            &format!("/api/v1/volumes/{}/scan", segment(id)),
            NO_BODY,
        )
        .await?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} scanning {prefix}: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(id.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: ScanEvent =
                serde_json::from_slice(&line).context("reading scan progress")?;
            match event {
                ScanEvent::Progress { objects, bytes } => {
                    bar.set_message(format!("{objects} objects, {}", human_bytes(bytes)));
                }
                ScanEvent::Indexing { objects, bytes } => {
                    bar.set_message(format!(
                        "{objects} objects, {}; reading FITS headers",
                        human_bytes(bytes)
                    ));
                }
                ScanEvent::Done { scan, science } => {
                    bar.finish_and_clear();
                    print(&serde_json::json!({"volume": id, "scan": scan, "science": science}))?;
                    return Ok(());
                }
                ScanEvent::Error { code, message } => {
                    bar.finish_and_clear();
                    bail!("scan of `{id}` failed: {message} ({code})");
                }
            }
        }
    }
    bar.finish_and_clear();
    bail!("the gateway ended the scan of `{id}` without a result")
}

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

async fn user(client: &ApiClient, cmd: UserCommand) -> Result<()> {
    let user_path = |name: &str| format!("/api/v1/users/{}", segment(name));
    match cmd {
        UserCommand::Add {
            name,
            admin,
            display_name,
        } => {
            let body = NewUser {
                name,
                display_name,
                admin,
            };
            print(
                &client
                    .json::<Value>(Method::POST, "/api/v1/users", Some(&body))
                    .await?,
            )
        }
        UserCommand::List => print(
            &client
                .json::<Value>(Method::GET, "/api/v1/users", NO_BODY)
                .await?,
        ),
        UserCommand::Show { name } => print(
            &client
                .json::<Value>(Method::GET, &user_path(&name), NO_BODY)
                .await?,
        ),
        UserCommand::Update {
            name,
            admin,
            display_name,
            create_workspaces,
            quota_bytes,
            quota_objects,
        } => {
            let body = UserPatch {
                display_name,
                admin,
                create_workspaces,
                quota_bytes: quota_bytes.map(|l| l.0),
                quota_objects: quota_objects.map(|l| l.0),
            };
            print(
                &client
                    .json::<Value>(Method::PATCH, &user_path(&name), Some(&body))
                    .await?,
            )
        }
        UserCommand::Remove { name } => {
            client
                .call(Method::DELETE, &user_path(&name), NO_BODY)
                .await?;
            eprintln!("removed user `{name}` with their keys, tokens, memberships and grants");
            Ok(())
        }
        UserCommand::Key(KeyCommand::Create {
            user,
            description,
            scope,
            ttl,
        }) => {
            let body = NewKey {
                description,
                read_only: scope.read_only,
                volumes: scope.volumes(),
                ttl,
                ..Default::default()
            };
            let path = format!("{}/keys", user_path(&user));
            print(
                &client
                    .json::<Value>(Method::POST, &path, Some(&body))
                    .await?,
            )
        }
        UserCommand::Key(KeyCommand::List { user }) => {
            let path = format!("{}/keys", user_path(&user));
            print(&client.json::<Value>(Method::GET, &path, NO_BODY).await?)
        }
        UserCommand::Key(KeyCommand::Revoke {
            user,
            access_key_id,
        }) => {
            let path = format!("{}/keys/{}", user_path(&user), segment(&access_key_id));
            client.call(Method::DELETE, &path, NO_BODY).await?;
            eprintln!("revoked access key {access_key_id}");
            Ok(())
        }
        UserCommand::Token(TokenCommand::Create {
            user,
            name,
            ttl,
            scope,
        }) => {
            let body = NewToken {
                name,
                ttl,
                read_only: scope.read_only,
                volumes: scope.volumes(),
            };
            let path = format!("{}/tokens", user_path(&user));
            print(
                &client
                    .json::<Value>(Method::POST, &path, Some(&body))
                    .await?,
            )
        }
        UserCommand::Token(TokenCommand::List { user }) => {
            let path = format!("{}/tokens", user_path(&user));
            print(&client.json::<Value>(Method::GET, &path, NO_BODY).await?)
        }
        UserCommand::Token(TokenCommand::Revoke { user, id }) => {
            let path = format!("{}/tokens/{}", user_path(&user), segment(&id));
            client.call(Method::DELETE, &path, NO_BODY).await?;
            eprintln!("revoked token {id}");
            Ok(())
        }
    }
}

async fn group(client: &ApiClient, cmd: GroupCommand) -> Result<()> {
    let group_path = |name: &str| format!("/api/v1/groups/{}", segment(name));
    match cmd {
        GroupCommand::Add { name, description } => {
            let body = NewGroup { name, description };
            print(
                &client
                    .json::<Value>(Method::POST, "/api/v1/groups", Some(&body))
                    .await?,
            )
        }
        GroupCommand::List => print(
            &client
                .json::<Value>(Method::GET, "/api/v1/groups", NO_BODY)
                .await?,
        ),
        GroupCommand::Show { name } => print(
            &client
                .json::<Value>(Method::GET, &group_path(&name), NO_BODY)
                .await?,
        ),
        GroupCommand::Remove { name } => {
            client
                .call(Method::DELETE, &group_path(&name), NO_BODY)
                .await?;
            eprintln!("removed group `{name}` and its grants");
            Ok(())
        }
        GroupCommand::AddMember { group, user } => {
            let path = format!("{}/members/{}", group_path(&group), segment(&user));
            print(&client.json::<Value>(Method::PUT, &path, NO_BODY).await?)
        }
        GroupCommand::RemoveMember { group, user } => {
            let path = format!("{}/members/{}", group_path(&group), segment(&user));
            print(&client.json::<Value>(Method::DELETE, &path, NO_BODY).await?)
        }
    }
}

async fn grant(client: &ApiClient, cmd: GrantCommand) -> Result<()> {
    match cmd {
        GrantCommand::Add {
            subject,
            volume,
            level,
        } => {
            let level = archway_catalog::Access::parse(&level)?;
            let path = format!(
                "/api/v1/volumes/{}/grants/{}",
                segment(&volume),
                segment(&subject)
            );
            print(
                &client
                    .json::<Value>(Method::PUT, &path, Some(&GrantBody { level }))
                    .await?,
            )
        }
        GrantCommand::List { volume, subject } => {
            let path = format!(
                "/api/v1/grants{}",
                query_string(&[
                    ("volume", volume.as_deref()),
                    ("subject", subject.as_deref())
                ])
            );
            print(&client.json::<Value>(Method::GET, &path, NO_BODY).await?)
        }
        GrantCommand::Remove { subject, volume } => {
            let path = format!(
                "/api/v1/volumes/{}/grants/{}",
                segment(&volume),
                segment(&subject)
            );
            client.call(Method::DELETE, &path, NO_BODY).await?;
            eprintln!("revoked {subject} on {volume}");
            Ok(())
        }
    }
}
