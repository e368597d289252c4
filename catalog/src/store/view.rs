//! The catalogue in memory: what every request asks of it, answered without a round trip.
//!
//! Authentication (access keys, API tokens) and access decisions (users, groups, grants,
//! volumes, CORS rules) are read on every request. A [`CatalogView`] holds all of them; the
//! [`Catalog`] keeps the current one and replaces it when the catalogue changes:
//!
//! - **Changes made through this handle** mark the view stale when they finish; the next
//!   reader loads a new one first, so a change is seen by the very next request.
//! - **Changes made elsewhere** (another replica, another process on the same SQLite file) bump
//!   the `generation` row of `archway_meta` — database triggers do, on every table the view
//!   holds, so no write path can forget. A watcher task reads that row every
//!   `catalog.refresh_interval` and reloads when it moved; on PostgreSQL the trigger also
//!   sends a `NOTIFY archway_catalog`, which the watcher acts on at once.
//!
//! So the view is at most `refresh_interval` (plus one reload) older than the database, and
//! on PostgreSQL with its notification connection up, as old as one reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AssertSqlSafe;

use super::keys::KeyAuth;
use super::*;
use crate::cors::CorsRule;
use crate::model::*;
use crate::secret;
use crate::{CatalogError, Result};

/// How often a catalogue checks for changes made elsewhere, unless configured.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How often a watcher without notifications tries to listen again (PostgreSQL).
const RELISTEN_EVERY: Duration = Duration::from_secs(30);

/// The PostgreSQL channel the change triggers notify.
pub(super) const CHANNEL: &str = "archway_catalog";

/// Why a signed request's key and session token do not go together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionProblem {
    /// The key expired (a temporary key's session ended, or a key created with a TTL).
    Expired { temporary: bool, at: Timestamp },
    /// A temporary key without its session token.
    Missing,
    /// A temporary key with another session token.
    Wrong,
    /// A long-term key with a session token.
    Unexpected,
}

/// A user as access decisions see them.
#[derive(Clone, Debug)]
struct UserFacts {
    admin: bool,
}

/// An access key: its user, its opened secret (or why it cannot be opened), its scope (or
/// why it cannot be read), when it expires and, for a temporary key, its session token's hash.
struct KeyFacts {
    user: String,
    secret: std::result::Result<String, String>,
    scope: std::result::Result<Scope, String>,
    expires_at: Option<i64>,
    session_token_hash: Option<String>,
}

/// An API token: its user, the hash of its secret, when it expires and its scope.
struct TokenFacts {
    user: String,
    hash: String,
    expires_at: Option<i64>,
    scope: std::result::Result<Scope, String>,
}

/// One consistent picture of the records every request consults.
pub struct CatalogView {
    generation: i64,
    /// Volumes by id; a record that cannot be read is kept as the reason, so it fails alone.
    volumes: HashMap<String, std::result::Result<Arc<Volume>, String>>,
    users: HashMap<String, UserFacts>,
    /// Group names by member.
    groups_of: HashMap<String, Vec<String>>,
    /// Grants by volume id.
    grants: HashMap<String, Vec<(Subject, Access)>>,
    keys: HashMap<String, KeyFacts>,
    tokens: HashMap<String, TokenFacts>,
    cors: HashMap<String, std::result::Result<Arc<Vec<CorsRule>>, String>>,
}

impl std::fmt::Debug for CatalogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogView")
            .field("generation", &self.generation)
            .field("volumes", &self.volumes.len())
            .field("users", &self.users.len())
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl CatalogView {
    /// A view of nothing, replaced on first use.
    pub(super) fn empty() -> Self {
        CatalogView {
            generation: -1,
            volumes: HashMap::new(),
            users: HashMap::new(),
            groups_of: HashMap::new(),
            grants: HashMap::new(),
            keys: HashMap::new(),
            tokens: HashMap::new(),
            cors: HashMap::new(),
        }
    }

    /// The catalogue generation this view was loaded at.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The volume `id`.
    pub fn volume(&self, id: &str) -> Result<Arc<Volume>> {
        match self.volumes.get(id) {
            Some(Ok(v)) => Ok(v.clone()),
            Some(Err(message)) => Err(CatalogError::Corrupt {
                what: format!("volume `{id}`"),
                message: message.clone(),
            }),
            None => Err(CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            }),
        }
    }

    /// The principal for a user name.
    pub fn principal(&self, user: &str) -> Result<Principal> {
        match self.users.get(user) {
            Some(u) => Ok(Principal::full(user, u.admin)),
            None => Err(CatalogError::NotFound {
                kind: "user",
                id: user.to_string(),
            }),
        }
    }

    /// What `principal` (None: anonymous) may do with `volume`, within the scope of the
    /// credential it used; None when nothing.
    pub fn access(&self, principal: Option<&Principal>, volume: &Volume) -> Option<Access> {
        let level = self.user_access(principal, volume);
        match principal {
            Some(p) => p.scope.limit(volume, level),
            None => level,
        }
    }

    /// What the user behind `principal` may do with `volume`, whatever the credential's scope.
    fn user_access(&self, principal: Option<&Principal>, volume: &Volume) -> Option<Access> {
        let granted = match principal {
            Some(p) if !p.admin => {
                let groups = self
                    .groups_of
                    .get(&p.user)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                self.grants
                    .get(&volume.id)
                    .into_iter()
                    .flatten()
                    .filter(|(subject, _)| match subject {
                        Subject::User(u) => *u == p.user,
                        Subject::Group(g) => groups.contains(g),
                    })
                    .map(|(_, level)| *level)
                    .max()
            }
            _ => None,
        };
        super::access::level_for(principal, volume, granted)
    }

    /// The user (with the key's scope), secret and session of access key `id`; None when
    /// there is no such key or it expired.
    pub fn access_key(&self, id: &str) -> Result<Option<KeyAuth>> {
        let Some(key) = self.keys.get(id) else {
            return Ok(None);
        };
        if key.expires_at.is_some_and(|e| e <= Timestamp::now().0) {
            return Ok(None);
        }
        let corrupt = |message: String| CatalogError::Corrupt {
            what: format!("access key {id}"),
            message,
        };
        let secret = key.secret.clone().map_err(corrupt)?;
        let scope = key.scope.clone().map_err(corrupt)?;
        // The key's user is in the view: the foreign key holds in the same snapshot.
        let Ok(mut principal) = self.principal(&key.user) else {
            return Ok(None);
        };
        principal.scope = scope;
        Ok(Some(KeyAuth {
            principal,
            secret,
            session_token_hash: key.session_token_hash.clone(),
        }))
    }

    /// What is wrong with the session of a request signed with access key `id` that carries
    /// the session token `token`, if anything (None also for an unknown key: SigV4 says so).
    pub fn session_problem(&self, id: &str, token: Option<&str>) -> Option<SessionProblem> {
        let key = self.keys.get(id)?;
        let temporary = key.session_token_hash.is_some();
        if let Some(e) = key.expires_at
            && e <= Timestamp::now().0
        {
            return Some(SessionProblem::Expired {
                temporary,
                at: Timestamp(e),
            });
        }
        let matches = KeyAuth {
            principal: Principal::default(),
            secret: String::new(),
            session_token_hash: key.session_token_hash.clone(),
        }
        .session_matches(token);
        match (matches, temporary, token.is_some()) {
            (true, _, _) => None,
            (false, true, false) => Some(SessionProblem::Missing),
            (false, true, true) => Some(SessionProblem::Wrong),
            (false, false, _) => Some(SessionProblem::Unexpected),
        }
    }

    /// The principal (with the token's scope) a bearer token authenticates; None for an
    /// unknown, wrong or expired one, or one whose stored scope cannot be read.
    pub fn token(&self, token: &str) -> Option<Principal> {
        let (id, secret) = secret::split_token(token)?;
        let facts = self.tokens.get(id)?;
        if !secret::constant_time_eq(&facts.hash, &secret::hash_token_secret(secret)) {
            return None;
        }
        if facts.expires_at.is_some_and(|e| e <= Timestamp::now().0) {
            return None;
        }
        let mut principal = self.principal(&facts.user).ok()?;
        principal.scope = facts.scope.clone().ok()?;
        Some(principal)
    }

    /// The CORS rules of `volume`; None when it has none (or does not exist).
    pub fn cors(&self, volume: &str) -> Result<Option<Arc<Vec<CorsRule>>>> {
        match self.cors.get(volume) {
            Some(Ok(rules)) => Ok(Some(rules.clone())),
            Some(Err(message)) => Err(CatalogError::Corrupt {
                what: format!("CORS rules of volume {volume}"),
                message: message.clone(),
            }),
            None => Ok(None),
        }
    }
}

/// The live view of a catalogue handle.
pub(super) struct Live {
    current: std::sync::RwLock<Arc<CatalogView>>,
    /// Bumped when a change made through this handle finishes, or when the watcher sees the
    /// database's generation move.
    marks: AtomicU64,
    /// The value of `marks` read just before the current view was loaded: when it differs
    /// from `marks`, the view may miss a change and is loaded again before use.
    loaded_at_mark: AtomicU64,
    /// One load at a time; readers that find the view behind wait for it.
    reload: tokio::sync::Mutex<()>,
    pub(super) refresh_interval: Duration,
    /// Whether the watcher listens for PostgreSQL's change notifications now.
    listening: Arc<std::sync::atomic::AtomicBool>,
}

impl Live {
    /// A live view that loads on first use.
    pub(super) fn new(refresh_interval: Duration) -> Self {
        Live {
            current: std::sync::RwLock::new(Arc::new(CatalogView::empty())),
            marks: AtomicU64::new(1),
            loaded_at_mark: AtomicU64::new(0),
            reload: tokio::sync::Mutex::new(()),
            refresh_interval,
            listening: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn behind(&self) -> bool {
        self.loaded_at_mark.load(Ordering::Acquire) != self.marks.load(Ordering::Acquire)
    }

    fn mark(&self) {
        self.marks.fetch_add(1, Ordering::AcqRel);
    }

    fn current(&self) -> Arc<CatalogView> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, view: CatalogView, mark: u64) {
        let view = Arc::new(view);
        match self.current.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        self.loaded_at_mark.store(mark, Ordering::Release);
    }
}

/// Marks the view behind when dropped: held by every method that writes, so the mark comes
/// after its transaction ended, whatever the outcome.
pub(super) struct Changing<'a>(&'a Live);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.mark();
    }
}

impl Catalog {
    /// The current view of what every request consults, loading a new one first when this
    /// handle changed the catalogue (or saw it change) since the last.
    pub async fn view(&self) -> Result<Arc<CatalogView>> {
        let live = &self.inner.live;
        if live.behind() {
            let _one = live.reload.lock().await;
            if live.behind() {
                let mark = live.marks.load(Ordering::Acquire);
                let view = self.load_view().await?;
                live.replace(view, mark);
            }
        }
        Ok(live.current())
    }

    /// Whether this handle hears PostgreSQL's change notifications now (always false on
    /// SQLite, which has none: polling every `refresh_interval` is all).
    pub fn listening(&self) -> bool {
        self.inner.live.listening.load(Ordering::Acquire)
    }

    /// Held while a method changes the catalogue (see [`Changing`]).
    pub(super) fn changing(&self) -> Changing<'_> {
        Changing(&self.inner.live)
    }

    /// The generation the triggers keep in `archway_meta`.
    async fn generation(&self) -> Result<i64> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM archway_meta WHERE name = 'generation'")
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(CatalogError::db("read catalogue generation"))?;
        Ok(value.and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    }

    /// Loads the view again if the database's generation moved past it (changes made by
    /// another replica or process); the watcher calls this.
    pub async fn refresh(&self) -> Result<()> {
        let live = &self.inner.live;
        if self.generation().await? != live.current().generation {
            live.mark();
        }
        self.view().await.map(|_| ())
    }

    /// Loads every record the view holds, labelled with the generation read first: a change
    /// that lands while loading moves the generation on, and the next check loads again.
    pub(super) async fn load_view(&self) -> Result<CatalogView> {
        let pool = &self.inner.pool;
        let generation = self.generation().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes v"
        )))
        .fetch_all(pool)
        .await
        .map_err(CatalogError::db("load volumes"))?;
        let mut volumes = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = get(row, "id")?;
            let volume = super::volumes::volume_from_row(row)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            volumes.insert(id, volume);
        }

        let rows = sqlx::query("SELECT name, admin FROM users")
            .fetch_all(pool)
            .await
            .map_err(CatalogError::db("load users"))?;
        let mut users = HashMap::with_capacity(rows.len());
        for row in &rows {
            let admin = get::<i64>(row, "admin")? != 0;
            users.insert(get::<String>(row, "name")?, UserFacts { admin });
        }

        let groups_of = self.memberships(false).await?;

        let rows = sqlx::query("SELECT subject_kind, subject, volume_id, level FROM grants")
            .fetch_all(pool)
            .await
            .map_err(CatalogError::db("load grants"))?;
        let mut grants: HashMap<String, Vec<(Subject, Access)>> = HashMap::new();
        for row in &rows {
            let kind: String = get(row, "subject_kind")?;
            let subject: String = get(row, "subject")?;
            let subject = Subject::parse(&format!("{kind}:{subject}"))?;
            let level = Access::parse(&get::<String>(row, "level")?)?;
            grants
                .entry(get(row, "volume_id")?)
                .or_default()
                .push((subject, level));
        }

        let rows = sqlx::query(
            "SELECT id, user_name, sealed_secret, read_only, volumes, expires_at, \
             session_token_hash FROM access_keys",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError::db("load access keys"))?;
        let mut keys = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: String = get(row, "id")?;
            let sealed: String = get(row, "sealed_secret")?;
            let secret = self
                .inner
                .secrets
                .open(&id, &sealed)
                .and_then(|plain| String::from_utf8(plain).map_err(|_| CatalogError::Crypto))
                .map_err(|e| e.to_string());
            let scope = Scope::from_columns(get(row, "read_only")?, get(row, "volumes")?);
            keys.insert(
                id,
                KeyFacts {
                    user: get(row, "user_name")?,
                    secret,
                    scope,
                    expires_at: get(row, "expires_at")?,
                    session_token_hash: get(row, "session_token_hash")?,
                },
            );
        }

        let rows = sqlx::query(
            "SELECT id, user_name, secret_hash, expires_at, read_only, volumes FROM api_tokens",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError::db("load tokens"))?;
        let mut tokens = HashMap::with_capacity(rows.len());
        for row in &rows {
            tokens.insert(
                get(row, "id")?,
                TokenFacts {
                    user: get(row, "user_name")?,
                    hash: get(row, "secret_hash")?,
                    expires_at: get(row, "expires_at")?,
                    scope: Scope::from_columns(get(row, "read_only")?, get(row, "volumes")?),
                },
            );
        }

        let rows = sqlx::query("SELECT volume_id, rules FROM volume_cors")
            .fetch_all(pool)
            .await
            .map_err(CatalogError::db("load CORS rules"))?;
        let mut cors = HashMap::with_capacity(rows.len());
        for row in &rows {
            let text: String = get(row, "rules")?;
            let rules = serde_json::from_str::<Vec<CorsRule>>(&text)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            cors.insert(get(row, "volume_id")?, rules);
        }

        Ok(CatalogView {
            generation,
            volumes,
            users,
            groups_of,
            grants,
            keys,
            tokens,
            cors,
        })
    }
}

/// Watches for changes made elsewhere until the catalogue is dropped or closed: polls the
/// generation every `interval` and, on PostgreSQL, listens for the triggers' notifications.
pub(super) fn spawn_watcher(catalog: &Catalog, postgres_url: Option<String>) {
    let weak: Weak<Inner> = Arc::downgrade(&catalog.inner);
    let interval = catalog.inner.live.refresh_interval;
    let listening = catalog.inner.live.listening.clone();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut listener = match &postgres_url {
            Some(url) => listen(url).await,
            None => None,
        };
        listening.store(listener.is_some(), Ordering::Release);
        let mut last_listen = tokio::time::Instant::now();
        let mut failing = false;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                got = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await,
                        None => std::future::pending().await,
                    }
                } => match got {
                    Ok(Some(_)) => {}
                    // Lost (the listener reconnects on the next call): polling covers the gap.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, ?interval, "catalogue change notifications stopped; polling");
                        listener = None;
                        listening.store(false, Ordering::Release);
                    }
                },
            }
            let Some(inner) = weak.upgrade() else { return };
            if inner.pool.is_closed() {
                return;
            }
            let catalog = Catalog { inner };
            // Said once when refreshing starts failing and once when it works again.
            match catalog.refresh().await {
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "catalogue view not refreshed; requests are decided from the last one until it is");
                }
                Err(_) => {}
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("catalogue view refreshed again");
                }
                Ok(()) => {}
            }
            // Notifications lost on PostgreSQL: try to get them back now and then.
            if listener.is_none()
                && let Some(url) = &postgres_url
                && last_listen.elapsed() >= RELISTEN_EVERY
            {
                last_listen = tokio::time::Instant::now();
                listener = listen(url).await;
                listening.store(listener.is_some(), Ordering::Release);
            }
        }
    });
}

async fn listen(url: &str) -> Option<sqlx::postgres::PgListener> {
    let mut l = match sqlx::postgres::PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for catalogue changes; polling");
            return None;
        }
    };
    match l.listen(CHANNEL).await {
        Ok(()) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for catalogue changes; polling");
            None
        }
    }
}
