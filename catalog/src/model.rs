//! The records the catalogue keeps, and the rules a valid record obeys.
//!
//! Field names follow the issue's vocabulary (`mission`, `instrument`, `tags`, `license`) and
//! accept the STAC / IVOA ObsCore spellings as aliases on input (`obs_collection`,
//! `instrument_name`, `keywords`, `licence`), so a volume renders as a STAC Collection later
//! without a schema change: `doc/catalog.md` has the mapping.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CatalogError;

/// Top-level names the gateway routes itself; a volume may not take one of them as its id,
/// or its bucket would be shadowed by (or shadow) an API route.
pub const RESERVED_VOLUME_IDS: &[&str] = &[
    "api", "healthz", "metrics", "ui", "static", "admin", "stac", "sia",
];

/// Milliseconds since the Unix epoch, rendered as RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-12-01T07:03:37.123Z")]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self(ms)
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64)
    }
}

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never an error (serializers panic on one): instants RFC 3339 cannot write are
        // written at its last one.
        let at = Timestamp(self.0.min(LAST_RFC3339_MS));
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(at.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)?;
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?
            .as_millis();
        Ok(Self(ms as i64))
    }
}

/// What a principal may do with a volume. Ordered: each level includes the ones before it.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            "admin" => Ok(Access::Admin),
            other => Err(CatalogError::invalid(
                "level",
                format!("`{other}` is not an access level (read, write or admin)"),
            )),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An archive is curated data, read-only by default; a workspace is personal or team space.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    #[default]
    Archive,
    Workspace,
}

impl VolumeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Archive => "archive",
            VolumeKind::Workspace => "workspace",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "archive" => Ok(VolumeKind::Archive),
            "workspace" => Ok(VolumeKind::Workspace),
            other => Err(CatalogError::invalid(
                "kind",
                format!("`{other}` is not a volume kind (archive or workspace)"),
            )),
        }
    }
}

/// The result of walking a volume: how many objects and bytes it held, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanSummary {
    pub objects: u64,
    pub bytes: u64,
    pub scanned_at: Timestamp,
}

/// A data volume: where it lives (backend + prefix), what it is, and who owns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Volume {
    pub id: String,
    pub title: String,
    pub description: String,
    pub mission: Option<String>,
    pub instrument: Option<String>,
    pub tags: Vec<String>,
    pub license: Option<String>,
    pub dataproduct_type: Option<String>,
    pub calib_level: Option<i64>,
    pub backend: String,
    pub prefix: String,
    pub kind: VolumeKind,
    pub read_only: bool,
    pub public_read: bool,
    pub owner: Option<String>,
    /// Free-form metadata (STAC `providers`, `extent`, …): always a JSON object.
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_scan: Option<ScanSummary>,
    /// A workspace's limit in bytes (None: no limit of its own).
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    /// A workspace's limit in objects (None: no limit of its own).
    #[serde(default)]
    pub quota_objects: Option<u64>,
    /// What a workspace holds, as its writes and deletes counted it (None for other kinds).
    #[serde(default)]
    pub usage_bytes: Option<u64>,
    #[serde(default)]
    pub usage_objects: Option<u64>,
}

/// The body of a volume creation: everything but the times and the scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewVolume {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "obs_collection")]
    pub mission: Option<String>,
    #[serde(default, alias = "instrument_name")]
    pub instrument: Option<String>,
    #[serde(default, alias = "keywords")]
    pub tags: Vec<String>,
    #[serde(default, alias = "licence")]
    pub license: Option<String>,
    #[serde(default)]
    pub dataproduct_type: Option<String>,
    #[serde(default)]
    pub calib_level: Option<i64>,
    pub backend: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub kind: VolumeKind,
    /// Defaults to true for archives and false for workspaces.
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub public_read: bool,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A workspace's limits (none when absent).
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub quota_objects: Option<u64>,
}

/// A partial update: absent fields stay; `null` clears an optional field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        alias = "obs_collection",
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub mission: Option<Option<String>>,
    #[serde(
        default,
        alias = "instrument_name",
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub instrument: Option<Option<String>>,
    #[serde(default, alias = "keywords", skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(
        default,
        alias = "licence",
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub license: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub dataproduct_type: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub calib_level: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VolumeKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_read: Option<bool>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// A workspace's limit in bytes; `null` removes it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota_bytes: Option<Option<u64>>,
    /// A workspace's limit in objects; `null` removes it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota_objects: Option<Option<u64>>,
}

impl VolumePatch {
    pub fn is_empty(&self) -> bool {
        *self == VolumePatch::default()
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Search and filters over the volumes a principal may see.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeQuery {
    /// Full-text query over title, description, tags, mission and instrument: every word must
    /// match (as a word prefix, case-insensitively).
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub mission: Option<String>,
    #[serde(default)]
    pub instrument: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub kind: Option<VolumeKind>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: Option<u32>,
}

/// A user; `admin` may change the catalogue and reach every volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub display_name: String,
    pub admin: bool,
    /// May create workspace volumes (S3 CreateBucket) without the admin role.
    #[serde(default)]
    pub create_workspaces: bool,
    pub groups: Vec<String>,
    pub created_at: Timestamp,
    /// Limits over every workspace the user owns (None: no limit).
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub quota_objects: Option<u64>,
    /// What the workspaces the user owns hold.
    #[serde(default)]
    pub usage_bytes: u64,
    #[serde(default)]
    pub usage_objects: u64,
}

/// A partial update of a user: absent fields stay; `null` removes a quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// May create workspace volumes through S3 CreateBucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_workspaces: Option<bool>,
    /// The limit in bytes over the user's workspaces; `null` removes it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota_bytes: Option<Option<u64>>,
    /// The limit in objects over the user's workspaces; `null` removes it.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota_objects: Option<Option<u64>>,
}

/// An S3 access key: its id is public, its secret is shown once and stored encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessKey {
    pub access_key_id: String,
    pub user: String,
    pub description: String,
    pub created_at: Timestamp,
    /// What the key is limited to, beyond its user's rights.
    #[serde(flatten)]
    pub scope: Scope,
    /// When the key stops working (None: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// A temporary key (from `AssumeRoleWithWebIdentity`): its requests must carry the
    /// session token it was issued with.
    #[serde(default)]
    pub temporary: bool,
}

/// A freshly created access key with its secret, returned once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAccessKey {
    #[serde(flatten)]
    pub key: AccessKey,
    pub secret_access_key: String,
}

impl fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("key", &self.key)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A link to a peer gateway: its volumes that the link's credentials may read appear here as
/// volumes `NAME.VOLUME` (backend `peer.NAME`). The secrets are never shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Peer {
    pub name: String,
    /// The peer gateway's URL (its S3 front and HTTP API).
    pub url: String,
    /// The access key this gateway signs with at the peer.
    pub access_key_id: String,
    /// Whether the link has an API token for the peer (needed to list its catalogue and to
    /// forward reductions).
    pub token: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the peer's volumes were last read (None: never yet).
    #[serde(default)]
    pub refreshed_at: Option<Timestamp>,
    /// Why the last refresh failed (None: it did not).
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A new link to a peer gateway.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPeer {
    pub name: String,
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub token: Option<String>,
}

impl fmt::Debug for NewPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPeer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The backend name of the volumes linked from peer `name`: never a configured backend's
/// (those have no '.').
pub fn peer_backend(name: &str) -> String {
    format!("peer.{name}")
}

/// A peer link's name: it begins the ids of its volumes (`NAME.VOLUME`), so 1 to 24 lowercase
/// letters, digits and '-', beginning and ending with a letter or digit.
pub fn validate_peer_name(name: &str) -> Result<(), CatalogError> {
    let ok = (1..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            "name",
            format!(
                "`{name}` is not a valid peer name: 1 to 24 lowercase letters, digits or '-', \
                 beginning and ending with a letter or digit (it begins its volumes' ids)"
            ),
        ))
    }
}

/// An HTTP API bearer token: only a hash of its secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// What the token is limited to, beyond its user's rights.
    #[serde(flatten)]
    pub scope: Scope,
}

/// A freshly created token with its secret form, returned once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewApiToken {
    #[serde(flatten)]
    pub token: ApiToken,
    pub secret: String,
}

impl fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiToken")
            .field("token", &self.token)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub members: Vec<String>,
    pub created_at: Timestamp,
}

/// Who a grant is for.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Subject {
    User(String),
    Group(String),
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::User(_) => "user",
            Subject::Group(_) => "group",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Subject::User(n) | Subject::Group(n) => n,
        }
    }

    /// Parses `user:NAME` or `group:NAME`.
    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        match s.split_once(':') {
            Some(("user", name)) => Ok(Subject::User(name.to_string())),
            Some(("group", name)) => Ok(Subject::Group(name.to_string())),
            _ => Err(CatalogError::invalid(
                "subject",
                format!("`{s}` is not a subject: write user:NAME or group:NAME"),
            )),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub subject: Subject,
    pub volume: String,
    pub level: Access,
    pub created_at: Timestamp,
}

/// An authenticated caller, as the dataplane and the fronts see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user: String,
    /// The user's admin role. Catalogue-wide changes need it *and* a full scope
    /// ([`Principal::acts_as_admin`]).
    pub admin: bool,
    /// What the credential the caller used is limited to (full for an unscoped one).
    #[serde(default, skip_serializing_if = "Scope::is_full")]
    pub scope: Scope,
}

impl Principal {
    /// A caller with the user's full rights.
    pub fn full(user: impl Into<String>, admin: bool) -> Self {
        Principal {
            user: user.into(),
            admin,
            scope: Scope::default(),
        }
    }

    /// The gateway itself, for the work it does of its own accord — the periodic sweeps, the
    /// peer links' and the science index's refreshes, the first start — as an administrator
    /// that no credential names. One identity for all of it, so its records read alike.
    pub fn gateway() -> Self {
        Self::full("archway", true)
    }

    /// Whether the caller may make catalogue-wide changes: the admin role, through a
    /// credential that is not limited to reading or to some volumes.
    pub fn acts_as_admin(&self) -> bool {
        self.admin && self.scope.is_full()
    }
}

/// What a credential (access key, API token) is limited to, within its user's rights. A
/// scope only ever takes rights away: outside its volumes a credential is worth what an
/// anonymous caller is (public volumes can be read), and read-only caps every level at read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// Reading only: writes, deletes and catalogue changes are refused.
    #[serde(default)]
    pub read_only: bool,
    /// Only these volumes (absent: every volume the user may reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
}

impl Scope {
    /// Whether the scope limits nothing.
    pub fn is_full(&self) -> bool {
        !self.read_only && self.volumes.is_none()
    }

    /// Whether the scope reaches `volume` at all.
    pub fn covers(&self, volume: &str) -> bool {
        self.volumes
            .as_ref()
            .is_none_or(|v| v.iter().any(|id| id == volume))
    }

    /// `level` (the user's on `volume`) as this scope leaves it.
    pub fn limit(&self, volume: &Volume, level: Option<Access>) -> Option<Access> {
        let level = if self.covers(&volume.id) {
            level
        } else {
            volume.public_read.then_some(Access::Read)
        };
        if self.read_only {
            level.map(|l| l.min(Access::Read))
        } else {
            level
        }
    }

    /// Checks the volume ids of a new scope (a stored scope is not checked again: a volume
    /// removed later simply matches nothing).
    pub fn validate(&self) -> Result<(), CatalogError> {
        if let Some(volumes) = &self.volumes {
            if volumes.is_empty() {
                return Err(CatalogError::invalid(
                    "volumes",
                    "a scope limited to volumes must name at least one",
                ));
            }
            for v in volumes {
                validate_volume_id(v)?;
            }
        }
        Ok(())
    }

    /// The scope as stored: (read_only, JSON list of volumes or NULL).
    pub fn to_columns(&self) -> (i64, Option<String>) {
        (
            i64::from(self.read_only),
            self.volumes
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())),
        )
    }

    /// The scope from its stored columns.
    pub fn from_columns(read_only: i64, volumes: Option<String>) -> Result<Self, String> {
        let volumes = match volumes {
            Some(text) => Some(
                serde_json::from_str::<Vec<String>>(&text)
                    .map_err(|e| format!("stored scope volumes `{text}`: {e}"))?,
            ),
            None => None,
        };
        Ok(Scope {
            read_only: read_only != 0,
            volumes,
        })
    }
}

/// Checks a volume id: a valid S3 bucket name (the DNS-compatible rules) that is not reserved.
pub fn validate_volume_id(id: &str) -> Result<(), CatalogError> {
    let bad = |why: &str| {
        Err(CatalogError::invalid(
            "id",
            format!("volume id `{id}` {why}"),
        ))
    };
    if id.len() < 3 || id.len() > 63 {
        return bad("must be 3 to 63 characters long (it is an S3 bucket name)");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("may contain only lowercase letters, digits, '-' and '.'");
    }
    let first = id.as_bytes()[0];
    let last = id.as_bytes()[id.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must begin and end with a letter or digit");
    }
    if id.contains("..") || id.contains(".-") || id.contains("-.") {
        return bad("may not contain '..', '.-' or '-.'");
    }
    if id.split('.').count() == 4 && id.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("may not look like an IP address");
    }
    if id.starts_with("xn--") || id.starts_with("sthree-") || id.ends_with("-s3alias") {
        return bad("uses a prefix or suffix that S3 reserves");
    }
    if RESERVED_VOLUME_IDS.contains(&id) {
        return bad("is reserved for a gateway route");
    }
    Ok(())
}

/// Checks a user or group name: lowercase, DNS-label-like, up to 64 characters.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), CatalogError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            field,
            format!(
                "`{name}` is not a valid name: 1 to 64 lowercase letters, digits, '-', '_' or '.', \
                 beginning with a letter or digit"
            ),
        ))
    }
}

/// Normalises a volume prefix inside its backend: no leading or trailing '/', no empty, `.` or
/// `..` segments, so a volume can never reach outside its prefix.
pub fn normalize_prefix(prefix: &str) -> Result<String, CatalogError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(CatalogError::invalid(
                "prefix",
                format!("prefix `{prefix}` has an empty, '.' or '..' segment"),
            ));
        }
        if segment.chars().any(|c| c.is_control()) {
            return Err(CatalogError::invalid(
                "prefix",
                format!("prefix `{prefix}` contains a control character"),
            ));
        }
    }
    Ok(trimmed.to_string())
}

pub(crate) fn validate_descriptive(
    title: &str,
    description: &str,
    tags: &[String],
    calib_level: Option<i64>,
) -> Result<(), CatalogError> {
    if title.chars().count() > 256 {
        return Err(CatalogError::invalid(
            "title",
            "title is longer than 256 characters",
        ));
    }
    if description.len() > 64 * 1024 {
        return Err(CatalogError::invalid(
            "description",
            "description is longer than 64 KiB",
        ));
    }
    if tags.len() > 64 {
        return Err(CatalogError::invalid("tags", "more than 64 tags"));
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.trim().is_empty() || tag.chars().count() > 64 {
            return Err(CatalogError::invalid(
                "tags",
                format!("tags[{i}] must be 1 to 64 characters and not blank"),
            ));
        }
    }
    if let Some(level) = calib_level
        && !(0..=4).contains(&level)
    {
        return Err(CatalogError::invalid(
            "calib_level",
            format!("calib_level {level} is outside ObsCore's 0..=4"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timestamp_writes_out_as_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(i64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
        assert!(serde_json::to_string(&Timestamp(i64::MAX)).is_ok());
    }

    #[test]
    fn volume_ids_follow_bucket_rules() {
        for ok in ["demo", "gaia-dr3", "jwst.nircam", "a1b"] {
            assert!(validate_volume_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Gaia",
            "-gaia",
            "gaia-",
            "ga..ia",
            "192.168.1.1",
            "api",
            "healthz",
            "xn--abc",
            "has_underscore",
            &"x".repeat(64),
        ] {
            assert!(validate_volume_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_cannot_escape() {
        assert_eq!(normalize_prefix("/a/b/").unwrap(), "a/b");
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert!(normalize_prefix("a/../b").is_err());
        assert!(normalize_prefix("a//b").is_err());
        assert!(normalize_prefix("./a").is_err());
    }

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let p: VolumePatch = serde_json::from_str(r#"{"mission": null}"#).unwrap();
        assert_eq!(p.mission, Some(None));
        assert_eq!(p.instrument, None);
        let p: VolumePatch = serde_json::from_str(r#"{"licence": "CC-BY-4.0"}"#).unwrap();
        assert_eq!(p.license, Some(Some("CC-BY-4.0".into())));
    }

    #[test]
    fn subjects_parse() {
        assert_eq!(
            Subject::parse("group:gaia-team").unwrap(),
            Subject::Group("gaia-team".into())
        );
        assert!(Subject::parse("team:x").is_err());
    }
}
