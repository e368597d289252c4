//! Catalogue operations a caller may ask for, each checked here: the fronts (HTTP API, S3
//! CreateBucket/DeleteBucket, the CLI through the API) make no decision of their own.
//!
//! The rules: changing the catalogue (volumes, grants, users, groups) needs the admin role;
//! a user reads and manages their own keys and tokens; a user with the `create_workspaces`
//! right (or an admin) creates workspace volumes, which they then own; a workspace is removed
//! by whoever has admin access to it, when it is empty; a volume a caller may not read is,
//! to them, a volume that does not exist. Removing a volume removes its record and grants,
//! never its data.

use std::time::Duration;

use crate::catalog::{
    Access, AccessKey, ApiToken, CatalogError, CorsRule, Grant, Group, NewAccessKey, NewApiToken,
    NewPeer, NewVolume, Peer, PeerCredentials, Principal, Subject, Terms, User, UserPatch, Volume,
    VolumeKind, VolumePatch, VolumeQuery,
};
use crate::listing::ListRequest;
use crate::{Dataplane, DataplaneError, Op, Result};

const ADMIN_ROLE: &str = "the admin role";

/// A volume's access as [`Dataplane::volume_acl`] shows it to one caller.
#[derive(Clone, Debug)]
pub struct VolumeAcl {
    pub volume: Volume,
    /// The caller's own access.
    pub caller: Access,
    /// Every grant on the volume, when the caller administers it; else none.
    pub grants: Vec<Grant>,
}

fn not_permitted(
    who: Option<&Principal>,
    action: impl Into<String>,
    requirement: &'static str,
) -> DataplaneError {
    DataplaneError::NotPermitted {
        user: who.map(|p| p.user.clone()),
        action: action.into(),
        requirement,
    }
}

/// The caller, when they hold the admin role through an unscoped credential.
fn admin<'a>(who: Option<&'a Principal>, action: &str) -> Result<&'a Principal> {
    match who {
        Some(p) if p.acts_as_admin() => Ok(p),
        _ => Err(not_permitted(who, action, ADMIN_ROLE)),
    }
}

/// The caller, when they are `user` or an admin (keys and tokens), through an unscoped
/// credential: a scoped one must not mint credentials wider than itself.
fn self_or_admin<'a>(
    who: Option<&'a Principal>,
    user: &str,
    action: &str,
) -> Result<&'a Principal> {
    match who {
        Some(p) if p.acts_as_admin() || (p.user == user && p.scope.is_full()) => Ok(p),
        _ => Err(not_permitted(
            who,
            format!("{action} of `{user}`"),
            "being that user or the admin role, through a credential that is not read-only \
             or limited to volumes",
        )),
    }
}

impl Dataplane {
    fn check_backend(&self, backend: &str) -> Result<()> {
        if self.has_backend(backend) {
            Ok(())
        } else {
            Err(CatalogError::invalid(
                "backend",
                format!("no backend named `{backend}` is configured on this gateway"),
            )
            .into())
        }
    }

    // ----- volumes -----

    /// The volumes `who` may see (public ones for anonymous callers), with their access.
    pub async fn volumes(
        &self,
        who: Option<&Principal>,
        query: &VolumeQuery,
    ) -> Result<Vec<(Volume, Access)>> {
        Ok(self.catalog().list_volumes(who, query).await?)
    }

    /// Every volume the caller may read (at most 10 000: what the catalogue lists at once).
    pub async fn readable_volumes(&self, who: Option<&Principal>) -> Result<Vec<Volume>> {
        let all = VolumeQuery {
            limit: Some(10_000),
            ..Default::default()
        };
        Ok(self
            .volumes(who, &all)
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// What the science index holds for these objects of `volume`, for a caller who may scan
    /// it (a scan's science pass skips what is unchanged).
    pub async fn known_science(
        &self,
        who: Option<&Principal>,
        volume: &str,
        keys: &[String],
    ) -> Result<Vec<crate::catalog::ScienceObject>> {
        self.open(who, volume, Op::Scan).await?;
        Ok(self.catalog().science_objects(volume, keys).await?)
    }

    /// Records science index entries of `volume`, for a caller who may scan it; every entry
    /// must be of that volume.
    pub async fn index_science(
        &self,
        who: Option<&Principal>,
        volume: &str,
        entries: &[crate::catalog::ScienceObject],
    ) -> Result<()> {
        self.open(who, volume, Op::Scan).await?;
        if let Some(other) = entries.iter().find(|e| e.volume != volume) {
            return Err(DataplaneError::InvalidRequest {
                message: format!(
                    "a science index entry of volume `{}` in the index of `{volume}`",
                    other.volume
                ),
            });
        }
        Ok(self.catalog().index_objects(entries).await?)
    }

    /// Drops the science index entries of `volume` not recorded since `since` (objects a scan
    /// no longer found), for a caller who may scan it; how many.
    pub async fn prune_science(
        &self,
        who: Option<&Principal>,
        volume: &str,
        since: crate::catalog::Timestamp,
    ) -> Result<u64> {
        self.open(who, volume, Op::Scan).await?;
        Ok(self.catalog().prune_science(volume, since).await?)
    }

    /// The science index entries that match `query`, among the volumes the caller may read
    /// (a volume named in the query that the caller may not read matches nothing).
    pub async fn search_science(
        &self,
        who: Option<&Principal>,
        query: &crate::catalog::ScienceQuery,
    ) -> Result<Vec<crate::catalog::ScienceObject>> {
        let readable: Vec<String> = self
            .readable_volumes(who)
            .await?
            .into_iter()
            .map(|v| v.id)
            .collect();
        let volumes = match &query.volumes {
            Some(named) => named
                .iter()
                .filter(|v| readable.contains(v))
                .cloned()
                .collect(),
            None => readable,
        };
        let query = crate::catalog::ScienceQuery {
            volumes: Some(volumes),
            ..query.clone()
        };
        Ok(self.catalog().search_science(&query).await?)
    }

    /// The science extents (sky box, time span) of volumes the caller was shown (from
    /// [`Dataplane::volumes`] or [`Dataplane::volume`], which checked their access).
    pub async fn science_extents(
        &self,
        shown: &[crate::catalog::Volume],
    ) -> Result<std::collections::HashMap<String, crate::catalog::ScienceExtent>> {
        let ids: Vec<String> = shown.iter().map(|v| v.id.clone()).collect();
        Ok(self.catalog().science_extents(&ids).await?)
    }

    /// The science index entry of one object, for a caller who may read its volume.
    pub async fn science_object(
        &self,
        who: Option<&Principal>,
        volume: &str,
        key: &str,
    ) -> Result<Option<crate::catalog::ScienceObject>> {
        self.volume(who, volume).await?;
        Ok(self.catalog().science_object(volume, key).await?)
    }

    /// One volume and the caller's access; a volume the caller may not see does not exist.
    pub async fn volume(&self, who: Option<&Principal>, id: &str) -> Result<(Volume, Access)> {
        let missing = || DataplaneError::NoSuchVolume {
            volume: id.to_string(),
        };
        let volume = match self.catalog().get_volume(id).await {
            Ok(v) => v,
            Err(CatalogError::NotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        match self.catalog().access(who, &volume).await? {
            Some(access) => Ok((volume, access)),
            None => Err(missing()),
        }
    }

    pub async fn create_volume(&self, who: Option<&Principal>, new: NewVolume) -> Result<Volume> {
        admin(who, "creating a volume")?;
        self.check_backend(&new.backend)?;
        Ok(self.catalog().create_volume(new).await?)
    }

    /// Creates the volume or replaces its description whole; true when it was created.
    pub async fn put_volume(
        &self,
        who: Option<&Principal>,
        new: NewVolume,
    ) -> Result<(Volume, bool)> {
        admin(who, "creating or replacing a volume")?;
        self.check_backend(&new.backend)?;
        Ok(self.catalog().upsert_volume(new).await?)
    }

    pub async fn update_volume(
        &self,
        who: Option<&Principal>,
        id: &str,
        patch: VolumePatch,
    ) -> Result<Volume> {
        admin(who, "changing a volume")?;
        if let Some(b) = &patch.backend {
            self.check_backend(b)?;
        }
        Ok(self.catalog().update_volume(id, patch).await?)
    }

    /// Removes the catalogue record (and its grants); the data in the backend stays.
    pub async fn remove_volume(&self, who: Option<&Principal>, id: &str) -> Result<()> {
        admin(who, "removing a volume")?;
        Ok(self.catalog().delete_volume(id).await?)
    }

    /// A new workspace volume owned by its creator (S3 CreateBucket), in the workspace
    /// backend: for admins and users with the `create_workspaces` right.
    pub async fn create_workspace(&self, who: &Principal, id: &str) -> Result<Volume> {
        match self.catalog().get_volume(id).await {
            Ok(v) => {
                return Err(DataplaneError::VolumeExists {
                    volume: id.to_string(),
                    yours: who.acts_as_admin() || v.owner.as_deref() == Some(who.user.as_str()),
                });
            }
            Err(CatalogError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let allowed = who.scope.is_full()
            && (who.admin || self.catalog().get_user(&who.user).await?.create_workspaces);
        if !allowed {
            return Err(not_permitted(
                Some(who),
                "creating workspace volumes",
                "the admin role or the create_workspaces right, through a credential that is \
                 not read-only or limited to volumes",
            ));
        }
        crate::catalog::validate_volume_id(id)?;
        let (backend, prefix) = self
            .workspace_location(id)
            .ok_or(DataplaneError::NoWorkspaceBackend)?;
        let new = NewVolume {
            id: id.to_string(),
            title: id.to_string(),
            description: format!("Workspace created through S3 by {}", who.user),
            backend,
            prefix,
            kind: VolumeKind::Workspace,
            owner: Some(who.user.clone()),
            quota_bytes: self.config().workspaces.default_quota_bytes,
            quota_objects: self.config().workspaces.default_quota_objects,
            ..Default::default()
        };
        match self.catalog().create_volume(new).await {
            Ok(v) => {
                tracing::info!(volume = %id, by = %who.user, "workspace created");
                Ok(v)
            }
            Err(CatalogError::AlreadyExists { .. }) => Err(DataplaneError::VolumeExists {
                volume: id.to_string(),
                yours: false,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an empty workspace's record (S3 DeleteBucket): for whoever has admin access to
    /// it. Archives are never removed this way.
    pub async fn remove_workspace(&self, who: Option<&Principal>, id: &str) -> Result<()> {
        let h = self.open(who, id, Op::List).await?;
        if h.volume().kind != VolumeKind::Workspace {
            return Err(DataplaneError::NotAWorkspace {
                volume: id.to_string(),
            });
        }
        if h.access() < Access::Admin {
            return Err(not_permitted(
                who,
                format!("removing workspace `{id}`"),
                "admin access to it",
            ));
        }
        let probe = ListRequest {
            max_keys: Some(1),
            ..Default::default()
        };
        if !h.list(&probe).await?.objects.is_empty() {
            return Err(DataplaneError::VolumeNotEmpty {
                volume: id.to_string(),
            });
        }
        self.catalog().delete_volume(id).await?;
        tracing::info!(volume = %id, "workspace removed");
        Ok(())
    }

    // ----- access as an S3 ACL shows it -----

    /// Who may do what with a volume, as far as the caller may know: its owner, whether it is
    /// public, the caller's own access, and — for those who administer the volume — every
    /// grant on it.
    pub async fn volume_acl(&self, who: Option<&Principal>, id: &str) -> Result<VolumeAcl> {
        let (volume, access) = self.volume(who, id).await?;
        let grants = if access == Access::Admin {
            self.catalog().list_grants(Some(id), None).await?
        } else {
            Vec::new()
        };
        Ok(VolumeAcl {
            volume,
            caller: access,
            grants,
        })
    }

    /// Makes a volume readable without credentials, or no longer: for those who administer it
    /// (its owner, the admin role, an admin grant).
    pub async fn set_public_read(
        &self,
        who: Option<&Principal>,
        id: &str,
        public: bool,
    ) -> Result<Volume> {
        let action = if public {
            "making public"
        } else {
            "making private"
        };
        self.administers(who, id, action).await?;
        let patch = VolumePatch {
            public_read: Some(public),
            ..Default::default()
        };
        Ok(self.catalog().update_volume(id, patch).await?)
    }

    // ----- CORS rules -----

    /// A volume's CORS rules, for those who may see the volume; None when it has none.
    pub async fn cors(&self, who: Option<&Principal>, id: &str) -> Result<Option<Vec<CorsRule>>> {
        self.volume(who, id).await?;
        Ok(self.catalog().cors(id).await?)
    }

    /// The CORS rules a browser's request to `id` is answered with. CORS is no access rule
    /// (browsers enforce it; access is checked on the request itself), so anyone may ask:
    /// a preflight carries no credentials.
    pub async fn cors_for_browsers(&self, id: &str) -> Result<Option<Vec<CorsRule>>> {
        Ok(self.catalog().cors(id).await?)
    }

    /// Replaces a volume's CORS rules: for those who administer it.
    pub async fn put_cors(
        &self,
        who: Option<&Principal>,
        id: &str,
        rules: &[CorsRule],
    ) -> Result<()> {
        self.administers(who, id, "setting the CORS rules of")
            .await?;
        Ok(self.catalog().put_cors(id, rules).await?)
    }

    /// Removes a volume's CORS rules: for those who administer it.
    pub async fn delete_cors(&self, who: Option<&Principal>, id: &str) -> Result<()> {
        self.administers(who, id, "removing the CORS rules of")
            .await?;
        Ok(self.catalog().delete_cors(id).await?)
    }

    /// Succeeds when `who` administers volume `id` (its owner, the admin role, an admin grant).
    async fn administers(&self, who: Option<&Principal>, id: &str, action: &str) -> Result<()> {
        let (_, access) = self.volume(who, id).await?;
        if access == Access::Admin {
            Ok(())
        } else {
            Err(not_permitted(
                who,
                format!("{action} volume `{id}`"),
                "admin access to the volume",
            ))
        }
    }

    // ----- grants -----

    /// Grants on a volume, to a subject, or all: admins only.
    pub async fn grants(
        &self,
        who: Option<&Principal>,
        volume: Option<&str>,
        subject: Option<&Subject>,
    ) -> Result<Vec<Grant>> {
        admin(who, "listing grants")?;
        if let Some(v) = volume {
            self.catalog().get_volume(v).await?;
        }
        Ok(self.catalog().list_grants(volume, subject).await?)
    }

    pub async fn grant(
        &self,
        who: Option<&Principal>,
        subject: &Subject,
        volume: &str,
        level: Access,
    ) -> Result<Grant> {
        admin(who, "granting access")?;
        Ok(self.catalog().grant(subject, volume, level).await?)
    }

    pub async fn revoke(
        &self,
        who: Option<&Principal>,
        subject: &Subject,
        volume: &str,
    ) -> Result<()> {
        admin(who, "revoking access")?;
        Ok(self.catalog().revoke(subject, volume).await?)
    }

    // ----- users -----

    pub async fn users(&self, who: Option<&Principal>) -> Result<Vec<User>> {
        admin(who, "listing users")?;
        Ok(self.catalog().list_users().await?)
    }

    pub async fn user(&self, who: Option<&Principal>, name: &str) -> Result<User> {
        self_or_admin(who, name, "reading the record")?;
        Ok(self.catalog().get_user(name).await?)
    }

    pub async fn create_user(
        &self,
        who: Option<&Principal>,
        name: &str,
        display_name: &str,
        is_admin: bool,
    ) -> Result<User> {
        admin(who, "creating a user")?;
        Ok(self
            .catalog()
            .create_user(name, display_name, is_admin)
            .await?)
    }

    pub async fn update_user(
        &self,
        who: Option<&Principal>,
        name: &str,
        patch: &UserPatch,
    ) -> Result<User> {
        admin(who, "changing a user")?;
        Ok(self.catalog().update_user(name, patch).await?)
    }

    /// Removes a user, their keys, tokens and grants; an admin may not remove themselves.
    pub async fn remove_user(&self, who: Option<&Principal>, name: &str) -> Result<()> {
        let caller = admin(who, "removing a user")?;
        if caller.user == name {
            return Err(CatalogError::Conflict {
                message: "an admin may not remove themselves".into(),
            }
            .into());
        }
        Ok(self.catalog().delete_user(name).await?)
    }

    // ----- sign-in through an identity provider -----

    /// The caller a front verified through an identity provider (an OpenID Connect token from
    /// `provider`): the user `name`, created now when missing if `create`, with their group
    /// memberships set to the groups among `groups` (when the provider lists them) that
    /// exist in Archway. Which volumes they may use is decided as for any other user.
    pub async fn sign_in(
        &self,
        name: &str,
        create: bool,
        groups: Option<&[String]>,
        provider: &str,
    ) -> Result<Principal> {
        let catalog = self.catalog();
        match catalog.principal(name).await {
            Ok(_) => {}
            Err(CatalogError::NotFound { .. }) if create => {
                if let Err(e) = crate::catalog::validate_name("name", name) {
                    return Err(CatalogError::invalid(
                        "user_claim",
                        format!(
                            "the identity token names user `{name}`, which Archway cannot take: {e}"
                        ),
                    )
                    .into());
                }
                match catalog.create_user(name, "", false).await {
                    Ok(_) => {
                        tracing::info!(user = %name, %provider, "user created on first sign-in")
                    }
                    // Another request (or replica) created them first.
                    Err(CatalogError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(CatalogError::NotFound { .. }) => {
                return Err(not_permitted(
                    None,
                    format!("signing in as `{name}` through {provider}"),
                    "an Archway user of that name (an admin creates it, or the issuer's \
                     create_users creates it on first sign-in)",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(groups) = groups {
            let user = catalog.get_user(name).await?;
            let existing: std::collections::HashSet<String> = catalog
                .list_groups()
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect();
            let wanted: std::collections::HashSet<&str> = groups
                .iter()
                .map(String::as_str)
                .filter(|g| existing.contains(*g))
                .collect();
            for g in &wanted {
                if !user.groups.iter().any(|have| have == g) {
                    catalog.add_member(g, name).await?;
                }
            }
            for have in &user.groups {
                if !wanted.contains(have.as_str()) {
                    match catalog.remove_member(have, name).await {
                        Ok(_) | Err(CatalogError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(catalog.principal(name).await?)
    }

    // ----- access keys -----

    pub async fn access_keys(&self, who: Option<&Principal>, user: &str) -> Result<Vec<AccessKey>> {
        self_or_admin(who, user, "listing the access keys")?;
        self.catalog().get_user(user).await?;
        Ok(self.catalog().list_access_keys(Some(user)).await?)
    }

    /// A new key pair for `user`, limited by `terms`; `import` brings an existing pair
    /// (admins only).
    pub async fn create_access_key(
        &self,
        who: Option<&Principal>,
        user: &str,
        description: &str,
        terms: &Terms,
        import: Option<(&str, &str)>,
    ) -> Result<NewAccessKey> {
        self_or_admin(who, user, "creating access keys")?;
        self.check_scope_volumes(who, terms).await?;
        match import {
            None => Ok(self
                .catalog()
                .create_access_key_with(user, description, terms)
                .await?),
            Some((id, secret)) => {
                admin(who, "importing a key pair")?;
                Ok(self
                    .catalog()
                    .import_access_key(user, id, secret, description, terms)
                    .await?)
            }
        }
    }

    /// Temporary S3 credentials for the caller (STS `AssumeRoleWithWebIdentity`, once the
    /// front has verified the caller's identity token): a key, secret and session token with
    /// the caller's rights, ending after `lifetime`. Returns the key and the session token.
    pub async fn create_session_key(
        &self,
        who: &Principal,
        description: &str,
        lifetime: Duration,
    ) -> Result<(NewAccessKey, String)> {
        let terms = Terms {
            scope: who.scope.clone(),
            ttl: Some(lifetime),
        };
        Ok(self
            .catalog()
            .create_session_key(&who.user, description, &terms)
            .await?)
    }

    pub async fn revoke_access_key(
        &self,
        who: Option<&Principal>,
        user: &str,
        id: &str,
    ) -> Result<()> {
        self_or_admin(who, user, "revoking access keys")?;
        let key = self.catalog().get_access_key(id).await?;
        if key.user != user {
            return Err(CatalogError::NotFound {
                kind: "access key",
                id: id.to_string(),
            }
            .into());
        }
        Ok(self.catalog().delete_access_key(id).await?)
    }

    // ----- API tokens -----

    pub async fn tokens(&self, who: Option<&Principal>, user: &str) -> Result<Vec<ApiToken>> {
        self_or_admin(who, user, "listing the API tokens")?;
        self.catalog().get_user(user).await?;
        Ok(self.catalog().list_tokens(Some(user)).await?)
    }

    pub async fn create_token(
        &self,
        who: Option<&Principal>,
        user: &str,
        name: &str,
        terms: &Terms,
    ) -> Result<NewApiToken> {
        self_or_admin(who, user, "creating API tokens")?;
        self.check_scope_volumes(who, terms).await?;
        Ok(self.catalog().create_token_with(user, name, terms).await?)
    }

    /// A credential may only be limited to volumes the caller can see: a misspelt volume
    /// would otherwise make a key that silently reaches nothing.
    async fn check_scope_volumes(&self, who: Option<&Principal>, terms: &Terms) -> Result<()> {
        terms.scope.validate()?;
        for v in terms.scope.volumes.iter().flatten() {
            self.volume(who, v).await?;
        }
        Ok(())
    }

    pub async fn revoke_token(&self, who: Option<&Principal>, user: &str, id: &str) -> Result<()> {
        self_or_admin(who, user, "revoking API tokens")?;
        let owned = self
            .catalog()
            .list_tokens(Some(user))
            .await?
            .iter()
            .any(|t| t.id == id);
        if !owned {
            return Err(CatalogError::NotFound {
                kind: "token",
                id: id.to_string(),
            }
            .into());
        }
        Ok(self.catalog().delete_token(id).await?)
    }

    // ----- groups -----

    pub async fn groups(&self, who: Option<&Principal>) -> Result<Vec<Group>> {
        admin(who, "listing groups")?;
        Ok(self.catalog().list_groups().await?)
    }

    pub async fn group(&self, who: Option<&Principal>, name: &str) -> Result<Group> {
        admin(who, "reading a group")?;
        Ok(self.catalog().get_group(name).await?)
    }

    pub async fn create_group(
        &self,
        who: Option<&Principal>,
        name: &str,
        description: &str,
    ) -> Result<Group> {
        admin(who, "creating a group")?;
        Ok(self.catalog().create_group(name, description).await?)
    }

    pub async fn remove_group(&self, who: Option<&Principal>, name: &str) -> Result<()> {
        admin(who, "removing a group")?;
        Ok(self.catalog().delete_group(name).await?)
    }

    pub async fn add_member(
        &self,
        who: Option<&Principal>,
        group: &str,
        user: &str,
    ) -> Result<Group> {
        admin(who, "changing a group")?;
        Ok(self.catalog().add_member(group, user).await?)
    }

    pub async fn remove_member(
        &self,
        who: Option<&Principal>,
        group: &str,
        user: &str,
    ) -> Result<Group> {
        admin(who, "changing a group")?;
        Ok(self.catalog().remove_member(group, user).await?)
    }
}

/// What a refresh of a peer link did to the volumes linked through it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerSync {
    /// Volumes linked for the first time.
    pub added: Vec<String>,
    /// Linked volumes whose description was brought in line with the peer's.
    pub updated: Vec<String>,
    /// Linked volumes the peer no longer offers, removed here.
    pub removed: Vec<String>,
    /// The peer's volumes not linked, and why (an id that would be too long or invalid, an
    /// id taken here by a volume of another origin).
    pub skipped: Vec<String>,
}

/// The `extra` keys a linked volume carries: the gateway that holds its data, and the link
/// it came through.
pub const SITE_KEY: &str = "archway.site";
pub const LINK_KEY: &str = "archway.link";

/// The gateway that holds a linked volume's data and the link it came through; None for a
/// volume of this gateway.
pub fn linked_site(v: &Volume) -> Option<(&str, &str)> {
    let text = |k: &str| v.extra.get(k).and_then(|x| x.as_str());
    Some((text(SITE_KEY)?, text(LINK_KEY)?))
}

// ----- Peer links (a federated catalogue) -----

impl Dataplane {
    /// Links a peer gateway (admins). Its volumes appear once it is refreshed.
    pub async fn add_peer(&self, who: Option<&Principal>, new: &NewPeer) -> Result<Peer> {
        admin(who, "linking a peer gateway")?;
        let peer = self.catalog().create_peer(new).await?;
        self.forget_peer(&peer.name);
        Ok(peer)
    }

    pub async fn peers(&self, who: Option<&Principal>) -> Result<Vec<Peer>> {
        admin(who, "listing the peer links")?;
        Ok(self.catalog().list_peers().await?)
    }

    pub async fn peer(&self, who: Option<&Principal>, name: &str) -> Result<Peer> {
        admin(who, "reading a peer link")?;
        Ok(self.catalog().get_peer(name).await?)
    }

    /// The link's URL and credentials, for the front that asks the peer for its volumes.
    pub async fn peer_credentials(
        &self,
        who: Option<&Principal>,
        name: &str,
    ) -> Result<PeerCredentials> {
        admin(who, "refreshing a peer link")?;
        Ok(self.catalog().peer_credentials(name).await?)
    }

    /// Removes the link and the volumes linked through it (their grants with them).
    pub async fn remove_peer(&self, who: Option<&Principal>, name: &str) -> Result<()> {
        admin(who, "removing a peer link")?;
        self.catalog().delete_peer(name).await?;
        self.forget_peer(name);
        Ok(())
    }

    /// Brings the volumes linked from peer `name` in line with `offered` — the peer's volumes
    /// its link's credentials may read, as the peer listed them — or records `failure` (the
    /// linked volumes are kept while the peer cannot be asked).
    pub async fn sync_peer(
        &self,
        who: Option<&Principal>,
        name: &str,
        offered: std::result::Result<Vec<Volume>, String>,
    ) -> Result<PeerSync> {
        admin(who, "refreshing a peer link")?;
        let link = self.catalog().get_peer(name).await?;
        let offered = match offered {
            Ok(v) => v,
            Err(failure) => {
                self.catalog()
                    .record_peer_refresh(name, Some(&failure))
                    .await?;
                return Err(DataplaneError::Backend {
                    backend: archway_catalog::peer_backend(name),
                    message: format!(
                        "the peer gateway {} could not be asked: {failure}",
                        link.url
                    ),
                });
            }
        };
        let backend = archway_catalog::peer_backend(name);
        let mut report = PeerSync::default();
        let mut linked = std::collections::BTreeSet::new();
        for remote in offered {
            let id = format!("{name}.{}", remote.id);
            if let Err(e) = archway_catalog::validate_volume_id(&id) {
                tracing::warn!(peer = name, volume = %remote.id, error = %e, "peer volume not linked");
                report.skipped.push(format!("{}: {e}", remote.id));
                continue;
            }
            match self.catalog().get_volume(&id).await {
                Ok(v) if v.backend != backend => {
                    report.skipped.push(format!(
                        "{}: `{id}` is a volume of this gateway, not linked from `{name}`",
                        remote.id
                    ));
                    continue;
                }
                Ok(_) => {}
                Err(CatalogError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let scan = remote.last_scan;
            let mut extra = remote.extra.clone();
            // The site is the one that holds the data: the peer's own, or further along.
            let site = remote
                .extra
                .get(SITE_KEY)
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| link.url.clone());
            extra.insert(SITE_KEY.into(), serde_json::Value::String(site));
            extra.insert(LINK_KEY.into(), serde_json::Value::String(name.to_string()));
            let new = NewVolume {
                id: id.clone(),
                title: remote.title,
                description: remote.description,
                mission: remote.mission,
                instrument: remote.instrument,
                tags: remote.tags,
                license: remote.license,
                dataproduct_type: remote.dataproduct_type,
                calib_level: remote.calib_level,
                backend: backend.clone(),
                prefix: remote.id.clone(),
                kind: VolumeKind::Archive,
                // Read through the link only: writes stay with the site that holds the data.
                read_only: Some(true),
                public_read: false,
                owner: None,
                extra,
                quota_bytes: None,
                quota_objects: None,
            };
            let (_, created) = self.catalog().upsert_volume(new).await?;
            // What the peer counted at its last scan (a scan here counts through the link).
            if let Some(scan) = &scan {
                self.catalog().mirror_scan(&id, scan).await?;
            }
            if created {
                report.added.push(id.clone());
            } else {
                report.updated.push(id.clone());
            }
            linked.insert(id);
        }
        for id in self.catalog().linked_volume_ids(name).await? {
            if !linked.contains(&id) {
                match self.catalog().delete_volume(&id).await {
                    Ok(()) | Err(CatalogError::NotFound { .. }) => report.removed.push(id),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.catalog().record_peer_refresh(name, None).await?;
        Ok(report)
    }
}
