//! S3 ACLs as views of the catalogue: GetBucketAcl/GetObjectAcl render a volume's owner,
//! publicity and grants; PutBucketAcl takes the canned ACLs the catalogue can express. Objects
//! have their volume's access (as in S3 buckets with ACLs disabled, the default since 2023).

use s3s::dto::{
    BucketCannedACL, Grant, Grantee, ObjectCannedACL, Owner, Permission, Type as GranteeType,
};
use s3s::{S3Result, s3_error};

use archway_catalog::{Access, Principal, Subject};
use archway_dataplane::VolumeAcl;

/// S3's group for everyone, signed or not.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

fn user(id: &str) -> Grantee {
    Grantee {
        display_name: Some(id.to_string()),
        email_address: None,
        id: Some(id.to_string()),
        type_: GranteeType::from_static(GranteeType::CANONICAL_USER),
        uri: None,
    }
}

fn group(uri: String) -> Grantee {
    Grantee {
        display_name: None,
        email_address: None,
        id: None,
        type_: GranteeType::from_static(GranteeType::GROUP),
        uri: Some(uri),
    }
}

/// The S3 permissions of an access level.
fn permissions(level: Access) -> &'static [&'static str] {
    match level {
        Access::Read => &[Permission::READ],
        Access::Write => &[Permission::READ, Permission::WRITE],
        Access::Admin => &[Permission::FULL_CONTROL],
    }
}

fn grants_of(grantee: Grantee, level: Access) -> impl Iterator<Item = Grant> {
    permissions(level).iter().map(move |p| Grant {
        grantee: Some(grantee.clone()),
        permission: Some(Permission::from_static(p)),
    })
}

/// A volume's access as an S3 owner and grant list: the owner (FULL_CONTROL), everyone
/// (READ) when the volume is public, and every grant (users as canonical ids, groups as
/// `urn:archway:group:NAME`) — or, for a caller who does not administer the volume, only
/// the caller's own access.
pub fn policy(acl: &VolumeAcl, who: Option<&Principal>) -> (Owner, Vec<Grant>) {
    let owner_id = acl
        .volume
        .owner
        .clone()
        .unwrap_or_else(|| "archway".to_string());
    let owner = Owner {
        display_name: Some(owner_id.clone()),
        id: Some(owner_id.clone()),
    };
    let mut grants: Vec<Grant> = grants_of(user(&owner_id), Access::Admin).collect();
    if acl.volume.public_read {
        grants.extend(grants_of(group(ALL_USERS.to_string()), Access::Read));
    }
    if acl.caller == Access::Admin {
        for g in &acl.grants {
            let grantee = match &g.subject {
                Subject::User(u) if *u == owner_id => continue,
                Subject::User(u) => user(u),
                Subject::Group(name) => group(format!("urn:archway:group:{name}")),
            };
            grants.extend(grants_of(grantee, g.level));
        }
    } else if let Some(p) = who
        && p.user != owner_id
    {
        grants.extend(grants_of(user(&p.user), acl.caller));
    }
    (owner, grants)
}

/// What the catalogue can set through PutBucketAcl: the canned ACLs `private` and
/// `public-read` (the volume's `public_read`). Grants and other canned ACLs are refused.
pub fn canned_public(
    acl: Option<&BucketCannedACL>,
    has_policy: bool,
    has_grants: bool,
) -> S3Result<bool> {
    if has_policy || has_grants {
        return Err(s3_error!(
            NotImplemented,
            "Archway keeps who may read and write a volume in its catalogue: through S3 only \
             the canned ACLs `private` and `public-read` can be set (grants: `archway catalog \
             grant`)"
        ));
    }
    match acl.map(BucketCannedACL::as_str) {
        Some(BucketCannedACL::PRIVATE) => Ok(false),
        Some(BucketCannedACL::PUBLIC_READ) => Ok(true),
        Some(other) => Err(s3_error!(
            NotImplemented,
            "the canned ACL `{other}` cannot be expressed by Archway's catalogue: use \
             `private` or `public-read`"
        )),
        None => Err(s3_error!(
            InvalidArgument,
            "PutBucketAcl needs a canned ACL (x-amz-acl: private or public-read)"
        )),
    }
}

/// An object ACL given with a write: objects have their volume's access, so only the ACLs
/// that say nothing else are taken (as S3 does for buckets whose ACLs are disabled).
pub fn object_acl(acl: Option<&ObjectCannedACL>) -> S3Result<()> {
    match acl.map(ObjectCannedACL::as_str) {
        None
        | Some(
            ObjectCannedACL::PRIVATE
            | ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL
            | ObjectCannedACL::BUCKET_OWNER_READ,
        ) => Ok(()),
        Some(other) => Err(s3_error!(
            AccessControlListNotSupported,
            "objects have their volume's access, not ACLs of their own (`{other}` asked): a \
             volume is made public with PutBucketAcl public-read by whoever administers it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archway_catalog::{Grant as CatalogGrant, Volume};

    fn acl(caller: Access, public: bool, grants: Vec<CatalogGrant>) -> VolumeAcl {
        let volume: Volume = serde_json::from_value(serde_json::json!({
            "id": "w", "title": "w", "description": "", "mission": null, "instrument": null,
            "tags": [], "license": null, "dataproduct_type": null, "calib_level": null,
            "kind": "workspace", "backend": "b", "prefix": "w", "read_only": false,
            "owner": "alice", "public_read": public, "extra": {}, "last_scan": null,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .expect("a volume");
        VolumeAcl {
            volume,
            caller,
            grants,
        }
    }

    fn shown(grants: &[Grant]) -> Vec<(String, String)> {
        grants
            .iter()
            .map(|g| {
                let who = g.grantee.as_ref().expect("grantee");
                (
                    who.id.clone().or(who.uri.clone()).unwrap_or_default(),
                    g.permission
                        .as_ref()
                        .expect("permission")
                        .as_str()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn administrators_see_every_grant_others_their_own() {
        let grant = |subject, level| CatalogGrant {
            subject,
            volume: "w".into(),
            level,
            created_at: serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z"))
                .expect("a time"),
        };
        let grants = vec![
            grant(Subject::User("bob".into()), Access::Write),
            grant(Subject::Group("team".into()), Access::Read),
        ];
        let alice = Principal {
            user: "alice".into(),
            admin: false,
            scope: Default::default(),
        };
        let (owner, all) = policy(&acl(Access::Admin, true, grants), Some(&alice));
        assert_eq!(owner.id.as_deref(), Some("alice"));
        assert_eq!(
            shown(&all),
            [
                ("alice", "FULL_CONTROL"),
                (ALL_USERS, "READ"),
                ("bob", "READ"),
                ("bob", "WRITE"),
                ("urn:archway:group:team", "READ"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let carol = Principal {
            user: "carol".into(),
            admin: false,
            scope: Default::default(),
        };
        let (_, own) = policy(&acl(Access::Read, false, Vec::new()), Some(&carol));
        assert_eq!(
            shown(&own),
            [("alice", "FULL_CONTROL"), ("carol", "READ")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn only_what_the_catalogue_can_express_is_taken() {
        let canned = |s: &'static str| BucketCannedACL::from_static(s);
        assert!(!canned_public(Some(&canned("private")), false, false).expect("private"));
        assert!(canned_public(Some(&canned("public-read")), false, false).expect("public"));
        for bad in ["public-read-write", "authenticated-read"] {
            let e = canned_public(Some(&canned(bad)), false, false).expect_err(bad);
            assert_eq!(*e.code(), s3s::S3ErrorCode::NotImplemented);
        }
        assert!(canned_public(None, true, false).is_err());
        assert!(canned_public(None, false, true).is_err());
        assert!(canned_public(None, false, false).is_err());
        let obj = |s: &'static str| ObjectCannedACL::from_static(s);
        assert!(object_acl(None).is_ok());
        assert!(object_acl(Some(&obj("bucket-owner-full-control"))).is_ok());
        let e = object_acl(Some(&obj("public-read"))).expect_err("public-read object");
        assert_eq!(*e.code(), s3s::S3ErrorCode::AccessControlListNotSupported);
    }
}
