//! The access matrix: one table of who may do what, checked through every front.
//!
//! Principals (the admin, a volume's owner, a user with a read grant, a user with a write
//! grant, a member of a group with grants, an anonymous caller; and scoped credentials: the
//! owner's read-only key and token, the write-grant user's key and token limited to one
//! volume, the owner's expired key and token) × volumes (an archive, a public archive, the
//! owner's workspace, someone else's workspace, a read-only workspace, a workspace whose
//! quota is used up) × operations (hostile ones among them: a key with a `..` segment or a
//! control character, a presigned URL altered after signing), each run through every front
//! that offers it — S3 (signed with the
//! principal's key, unsigned for the anonymous caller), the HTTP API (with the principal's
//! token, none for the anonymous caller) and a real FUSE mount of the gateway per principal
//! (an anonymous mount for the anonymous caller; for the admin also a mount in local mode,
//! straight to the backends through the dataplane) — and each front must give the answer in
//! [`TABLE`]. The fronts make no access decision of their own, so a difference here is a
//! front deciding by itself. Later features extend this one table.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::signer::Signer;
use archway_dataplane::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use archway_dataplane::{BackendConfig, Secret};
use common::Gateway;
use common::mount::Mount;
use common::sigv4;
use serde_json::{Value, json};

/// What a front answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Done.
    Allowed,
    /// Refused: no access to the volume, or not enough.
    Denied,
    /// Refused because the volume is read-only, whoever asks.
    ReadOnly,
    /// Refused because the write would pass a quota (S3 `QuotaExceeded`, FUSE EDQUOT).
    Quota,
    /// Refused because the key is not one (S3 `InvalidArgument`, FUSE EINVAL).
    Invalid,
}
use Outcome::{Allowed, Denied, Invalid, Quota, ReadOnly};

/// The operations, in the order of the table's columns.
const OPS: [&str; 14] = [
    "list",
    "get",
    "head",
    "put",
    "copy-in",
    "copy-out",
    "delete",
    "multipart",
    "reduce",
    "mount-read",
    "mount-write",
    "catalogue-change",
    "bad-key",
    "tampered",
];

/// Who may do what. `Y` allowed, `D` denied, `R` refused because the volume is read-only, `Q`
/// refused by a quota, `I` refused because the key is invalid.
/// `copy-in` copies a public object into the volume; `copy-out` copies one of the volume's
/// objects into the principal's user's own scratch workspace (the anonymous caller has none);
/// `catalogue-change` changes the volume's description; `bad-key` writes the keys
/// `bad/../escape-P.txt` and `ctl\x01-P.txt` (S3, signed as S3 canonicalizes them, sent as
/// they are; a mount creates the second): refused as invalid for every caller that
/// authenticates (and the anonymous one) before any access is decided — such a key names
/// nothing in any volume — and nothing is written anywhere (a mount that does not show the
/// volume has no folder to create it in: ENOENT); `tampered` is a GET of
/// `seed.txt` presigned with the principal's key whose path was then changed to another object
/// (for the anonymous caller, a made-up signature): always refused.
///
/// The volumes: `mx-archive` an archive that its mission team (write grant) may write;
/// `mx-public` a public, read-only archive; `mx-olive` olive's workspace; `mx-oscar` oscar's
/// workspace, shared with nobody; `mx-frozen` olive's workspace, marked read-only; `mx-full`
/// olive's workspace with a quota of 1 byte. Grants: rita read and wes write on mx-archive,
/// mx-olive and mx-frozen, wes write on mx-full; group `team` (gus) read on mx-archive and
/// write on mx-olive and mx-frozen. Scoped credentials: `olive-ro` olive's read-only key and
/// token; `wes-olive` wes's key and token limited to mx-olive (elsewhere public reads only);
/// `olive-exp` olive's key and token, expired (its mount is refused at start).
#[rustfmt::skip]
const TABLE: &[(&str, &str, &str)] = &[
    //                            list get head put cp-in cp-out del mpu reduce m-read m-write catalogue bad-key tampered
    ("admin",     "mx-archive",  "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       Y         I       D"),
    ("admin",     "mx-public",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       Y         I       D"),
    ("admin",     "mx-olive",    "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       Y         I       D"),
    ("admin",     "mx-oscar",    "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       Y         I       D"),
    ("admin",     "mx-frozen",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       Y         I       D"),
    ("admin",     "mx-full",     "Y    Y   Y    Q   Q     Y      Y   Q   Y      Y      Q       Y         I       D"),
    ("olive",     "mx-archive",  "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive",     "mx-public",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("olive",     "mx-olive",    "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       D         I       D"),
    ("olive",     "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive",     "mx-frozen",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("olive",     "mx-full",     "Y    Y   Y    Q   Q     Y      Y   Q   Y      Y      Q       D         I       D"),
    ("rita",      "mx-archive",  "Y    Y   Y    D   D     Y      D   D   Y      Y      D       D         I       D"),
    ("rita",      "mx-public",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("rita",      "mx-olive",    "Y    Y   Y    D   D     Y      D   D   Y      Y      D       D         I       D"),
    ("rita",      "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("rita",      "mx-frozen",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("rita",      "mx-full",     "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("wes",       "mx-archive",  "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       D         I       D"),
    ("wes",       "mx-public",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("wes",       "mx-olive",    "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       D         I       D"),
    ("wes",       "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("wes",       "mx-frozen",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("wes",       "mx-full",     "Y    Y   Y    Q   Q     Y      Y   Q   Y      Y      Q       D         I       D"),
    ("gus",       "mx-archive",  "Y    Y   Y    D   D     Y      D   D   Y      Y      D       D         I       D"),
    ("gus",       "mx-public",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("gus",       "mx-olive",    "Y    Y   Y    Y   Y     Y      Y   Y   Y      Y      Y       D         I       D"),
    ("gus",       "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("gus",       "mx-frozen",   "Y    Y   Y    R   R     Y      R   R   Y      Y      R       D         I       D"),
    ("gus",       "mx-full",     "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("anon",      "mx-archive",  "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("anon",      "mx-public",   "Y    Y   Y    R   R     D      R   R   Y      Y      R       D         I       D"),
    ("anon",      "mx-olive",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("anon",      "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("anon",      "mx-frozen",   "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("anon",      "mx-full",     "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive-ro",  "mx-archive",  "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive-ro",  "mx-public",   "Y    Y   Y    R   R     D      R   R   Y      Y      R       D         I       D"),
    ("olive-ro",  "mx-olive",    "Y    Y   Y    D   D     D      D   D   Y      Y      D       D         I       D"),
    ("olive-ro",  "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive-ro",  "mx-frozen",   "Y    Y   Y    R   R     D      R   R   Y      Y      R       D         I       D"),
    ("olive-ro",  "mx-full",     "Y    Y   Y    D   D     D      D   D   Y      Y      D       D         I       D"),
    ("wes-olive", "mx-archive",  "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("wes-olive", "mx-public",   "Y    Y   Y    R   R     D      R   R   Y      Y      R       D         I       D"),
    ("wes-olive", "mx-olive",    "Y    Y   Y    Y   Y     D      Y   Y   Y      Y      Y       D         I       D"),
    ("wes-olive", "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("wes-olive", "mx-frozen",   "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("wes-olive", "mx-full",     "D    D   D    D   D     D      D   D   D      D      D       D         I       D"),
    ("olive-exp", "mx-archive",  "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
    ("olive-exp", "mx-public",   "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
    ("olive-exp", "mx-olive",    "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
    ("olive-exp", "mx-oscar",    "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
    ("olive-exp", "mx-frozen",   "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
    ("olive-exp", "mx-full",     "D    D   D    D   D     D      D   D   D      D      D       D         D       D"),
];

const PRINCIPALS: [&str; 9] = [
    "admin",
    "olive",
    "rita",
    "wes",
    "gus",
    "anon",
    "olive-ro",
    "wes-olive",
    "olive-exp",
];
const VOLUMES: [&str; 6] = [
    "mx-archive",
    "mx-public",
    "mx-olive",
    "mx-oscar",
    "mx-frozen",
    "mx-full",
];

/// The user a principal's credentials belong to (`olive-ro` is olive's); none for `anon`.
fn user_of(principal: &str) -> &str {
    principal.split('-').next().unwrap_or(principal)
}

/// A principal's credentials (none for the anonymous caller).
#[derive(Clone, Debug, Default)]
struct Credentials {
    key: Option<(String, String)>,
    token: Option<String>,
}

/// The gateway, its principals, and a mount per principal.
struct World {
    gw: Gateway,
    creds: BTreeMap<&'static str, Credentials>,
    mounts: BTreeMap<&'static str, (Mount, PathBuf)>,
    /// The admin's mount in local mode (the data directory, through the dataplane).
    local: (Mount, PathBuf),
    /// Principals whose mount was refused at start, and why.
    refused_mounts: BTreeMap<&'static str, String>,
    http: reqwest::Client,
    data: PathBuf,
}

/// The backend folder holding a volume's files, and its catalogue arguments.
fn layout(data: &Path, volume: &str) -> (PathBuf, Vec<String>) {
    let args = |backend: &str, prefix: &str, more: &[&str]| {
        let mut v = vec![
            "volume".to_string(),
            "add".into(),
            volume.into(),
            "--backend".into(),
            backend.into(),
            "--prefix".into(),
            prefix.into(),
        ];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    match volume {
        "mx-archive" => (
            data.join("demo/matrix/archive"),
            args("demo", "matrix/archive", &["--read-only", "false"]),
        ),
        "mx-public" => (
            data.join("demo/matrix/public"),
            args("demo", "matrix/public", &["--public-read", "true"]),
        ),
        "mx-olive" | "mx-oscar" | "mx-frozen" | "mx-full" => {
            let owner = if volume == "mx-oscar" {
                "oscar"
            } else {
                "olive"
            };
            let read_only = if volume == "mx-frozen" {
                "true"
            } else {
                "false"
            };
            let mut more = vec![
                "--kind",
                "workspace",
                "--owner",
                owner,
                "--read-only",
                read_only,
            ];
            if volume == "mx-full" {
                // Used up by any write (the seeds below are put behind the gateway's back).
                more.extend(["--quota-bytes", "1"]);
            }
            (
                data.join("workspaces").join(volume),
                args("workspaces", volume, &more),
            )
        }
        _ => unreachable!("{volume}"),
    }
}

/// Starts a mount with credentials that must not mount (expired): it must exit, failing, and
/// say why; its message.
fn refused_mount(gw: &Gateway, c: &Credentials, mountpoint: &Path) -> String {
    std::fs::create_dir_all(mountpoint).unwrap();
    let (id, secret) = c.key.clone().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .arg("mount")
        .arg(mountpoint)
        .args([
            "--gateway",
            &gw.url,
            "--access-key-id",
            &id,
            "--secret-access-key",
            &secret,
        ])
        .args(["--token", c.token.as_deref().unwrap(), "--foreground"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a mount with expired credentials did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let message = common::text(&out.stderr);
    assert!(!out.status.success(), "{message}");
    assert!(
        !common::mount::is_mounted(mountpoint),
        "nothing mounted: {message}"
    );
    message
}

impl World {
    async fn new(dir: &Path) -> World {
        let data = dir.join("data");
        // The table's refused signatures (tampered URLs, expired keys) are many failed
        // authentications from one address: the limiter (tests/hostile.rs) is opened wide.
        let gw = Gateway::start_with_env(
            &data,
            common::free_port(),
            &[],
            &[("ARCHWAY_SERVER__AUTH_FAILURE_BURST", "1000000")],
        )
        .await;
        let cli = |args: &[&str]| gw.catalog(args);
        let fits = std::fs::read(data.join("demo/images/field1.fits")).unwrap();
        let mut creds = BTreeMap::new();
        creds.insert(
            "admin",
            Credentials {
                key: Some((
                    gw.credential("aws_access_key_id"),
                    gw.credential("aws_secret_access_key"),
                )),
                token: Some(gw.credential("archway_api_token")),
            },
        );
        for user in ["olive", "oscar", "rita", "wes", "gus"] {
            cli(&["user", "add", user]);
            let key = cli(&["user", "key", "create", user]);
            let token = cli(&["user", "token", "create", user]);
            if user != "oscar" {
                creds.insert(
                    user,
                    Credentials {
                        key: Some((
                            key["access_key_id"].as_str().unwrap().to_string(),
                            key["secret_access_key"].as_str().unwrap().to_string(),
                        )),
                        token: Some(token["secret"].as_str().unwrap().to_string()),
                    },
                );
            }
        }
        creds.insert("anon", Credentials::default());
        cli(&["group", "add", "team"]);
        cli(&["group", "add-member", "team", "gus"]);
        for volume in VOLUMES {
            let (folder, args) = layout(&data, volume);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("seed.txt"), b"seed\n").unwrap();
            std::fs::write(folder.join("seed.fits"), &fits).unwrap();
            for p in PRINCIPALS {
                std::fs::write(folder.join(format!("victim-{p}.txt")), b"delete me\n").unwrap();
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args);
        }
        for (subject, volume, level) in [
            ("user:rita", "mx-archive", "read"),
            ("user:rita", "mx-olive", "read"),
            ("user:rita", "mx-frozen", "read"),
            ("user:wes", "mx-archive", "write"),
            ("user:wes", "mx-olive", "write"),
            ("user:wes", "mx-frozen", "write"),
            ("group:team", "mx-archive", "read"),
            ("group:team", "mx-olive", "write"),
            ("group:team", "mx-frozen", "write"),
            ("user:wes", "mx-full", "write"),
        ] {
            cli(&["grant", "add", subject, volume, level]);
        }
        // Scoped credentials: read-only, limited to one volume, expired (one second to live).
        for (principal, user, scope) in [
            ("olive-ro", "olive", &["--read-only"][..]),
            ("wes-olive", "wes", &["--volume", "mx-olive"][..]),
            ("olive-exp", "olive", &["--ttl", "1s"][..]),
        ] {
            let mut key_args = vec!["user", "key", "create", user];
            key_args.extend_from_slice(scope);
            let key = cli(&key_args);
            let mut token_args = vec!["user", "token", "create", user];
            token_args.extend_from_slice(scope);
            let token = cli(&token_args);
            creds.insert(
                principal,
                Credentials {
                    key: Some((
                        key["access_key_id"].as_str().unwrap().to_string(),
                        key["secret_access_key"].as_str().unwrap().to_string(),
                    )),
                    token: Some(token["secret"].as_str().unwrap().to_string()),
                },
            );
        }
        let expired_at = std::time::Instant::now() + Duration::from_secs(2);
        // Each named principal's own scratch workspace, where copy-out copies to.
        for p in ["admin", "olive", "rita", "wes", "gus"] {
            let id = format!("mx-scratch-{p}");
            cli(&[
                "volume",
                "add",
                &id,
                "--backend",
                "workspaces",
                "--prefix",
                &id,
                "--kind",
                "workspace",
                "--owner",
                p,
            ]);
        }
        // A mount per principal: with the catalogue (token) for users, anonymous for anon.
        let mut mounts = BTreeMap::new();
        let mut refused_mounts = BTreeMap::new();
        for p in PRINCIPALS {
            let mp = dir.join(format!("mnt-{p}"));
            if p == "olive-exp" {
                std::thread::sleep(expired_at.saturating_duration_since(std::time::Instant::now()));
                refused_mounts.insert(p, refused_mount(&gw, &creds[p], &mp));
                continue;
            }
            let c: &Credentials = &creds[p];
            let mut args: Vec<String> = vec![
                "--gateway".into(),
                gw.url.clone(),
                "--attr-ttl".into(),
                "0s".into(),
                "--entry-ttl".into(),
                "0s".into(),
            ];
            match (&c.key, &c.token) {
                (Some((id, secret)), Some(token)) => args.extend([
                    "--access-key-id".into(),
                    id.clone(),
                    "--secret-access-key".into(),
                    secret.clone(),
                    "--token".into(),
                    token.clone(),
                ]),
                _ => {
                    args.push("--anonymous".into());
                    for v in VOLUMES {
                        args.extend(["--volume".into(), v.into()]);
                    }
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let m = Mount::start(&mp, &args);
            mounts.insert(p, (m, mp));
        }
        let local_mp = dir.join("mnt-local");
        let local = Mount::start(
            &local_mp,
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--attr-ttl",
                "0s",
                "--entry-ttl",
                "0s",
            ],
        );
        World {
            gw,
            creds,
            mounts,
            local: (local, local_mp),
            refused_mounts,
            http: reqwest::Client::new(),
            data,
        }
    }

    /// The S3 front as `principal` sees `bucket`: object_store's S3 client, SigV4-signed with
    /// the principal's key (unsigned for the anonymous caller).
    fn s3(&self, principal: &str, bucket: &str) -> Arc<dyn ObjectStore> {
        let c = &self.creds[principal];
        let backend = BackendConfig {
            url: format!("archway+{}", self.gw.url),
            access_key_id: c.key.as_ref().map(|(id, _)| id.clone()),
            secret_access_key: c.key.as_ref().map(|(_, s)| Secret(s.clone())),
            anonymous: c.key.is_none(),
            max_retries: Some(0),
            ..Default::default()
        };
        archway_dataplane::gateway_volume(&backend, bucket)
            .unwrap()
            .store
    }

    /// S3 CopyObject from `from` (bucket, key) to `to`, as `principal`: a PUT with
    /// `x-amz-copy-source`, presigned with the principal's key by object_store's signer.
    async fn s3_copy(&self, principal: &str, from: (&str, &str), to: (&str, &str)) -> Outcome {
        let c = &self.creds[principal];
        let url = match &c.key {
            Some((id, secret)) => {
                let signer = archway_dataplane::object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(&self.gw.url)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_bucket_name(to.0)
                    .with_access_key_id(id)
                    .with_secret_access_key(secret)
                    .build()
                    .unwrap();
                signer
                    .signed_url(
                        http::Method::PUT,
                        &Key::from(to.1),
                        Duration::from_secs(300),
                    )
                    .await
                    .unwrap()
                    .to_string()
            }
            None => format!("{}/{}/{}", self.gw.url, to.0, to.1),
        };
        let resp = self
            .http
            .put(url)
            .header("x-amz-copy-source", format!("/{}/{}", from.0, from.1))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        match status {
            200 => Allowed,
            403 if body.contains("read-only") => ReadOnly,
            403 if body.contains("<Code>QuotaExceeded</Code>") => Quota,
            403 => Denied,
            other => panic!("CopyObject {from:?} -> {to:?} as {principal}: {other} {body}"),
        }
    }

    /// An HTTP API call as `principal` (its token; none for the anonymous caller).
    async fn api(&self, principal: &str, method: http::Method, path: &str, body: Value) -> u16 {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gw.url))
            .json(&body);
        if let Some(t) = &self.creds[principal].token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        // Streamed answers (batch reductions) are read to their end.
        let _ = resp.bytes().await;
        status
    }

    /// Each mount `principal` has, with the volume's folder in it.
    fn mount_dirs(&self, principal: &str, volume: &str) -> Vec<(&'static str, PathBuf)> {
        let Some((_, mountpoint)) = self.mounts.get(principal) else {
            return Vec::new();
        };
        let mut dirs = vec![("fuse", mountpoint.join(volume))];
        if principal == "admin" {
            dirs.push(("fuse-local", self.local.1.join(volume)));
        }
        dirs
    }
}

impl World {
    /// A mount refused at start answers every mount operation with that refusal.
    fn refused_mount(&self, principal: &str) -> Option<(&'static str, Outcome)> {
        self.refused_mounts.get(principal).map(|_| ("fuse", Denied))
    }

    /// An S3 PUT of `key` (any bytes) into `bucket` as `principal`, presigned as S3
    /// canonicalizes the key (unsigned for the anonymous caller) and sent as it is.
    async fn raw_put(&self, principal: &str, bucket: &str, key: &str) -> Outcome {
        let host = self.gw.url.trim_start_matches("http://");
        let target = match &self.creds[principal].key {
            Some((id, secret)) => sigv4::presign("PUT", host, bucket, key, (id, secret), 300),
            None => format!("/{bucket}/{}", sigv4::uri_encode(key, false)),
        };
        let (status, body) = sigv4::raw_request(&self.gw.url, "PUT", &target, b"hostile\n").await;
        match status {
            200 => Allowed,
            400 if body.contains("<Code>InvalidArgument</Code>") => Invalid,
            403 if body.contains("<Code>QuotaExceeded</Code>") => Quota,
            403 if body.contains("read-only") => ReadOnly,
            401 | 403 => Denied,
            other => panic!("PUT {key:?} into {bucket} as {principal}: {other} {body}"),
        }
    }
}

/// An S3 answer as an outcome; anything but success or a refusal fails the test.
fn s3_outcome<T>(what: &str, r: archway_dataplane::object_store::Result<T>) -> Outcome {
    match r {
        Ok(_) => Allowed,
        Err(
            e @ (archway_dataplane::object_store::Error::PermissionDenied { .. }
            | archway_dataplane::object_store::Error::Unauthenticated { .. }),
        ) => {
            let text = format!("{e}");
            if text.contains("read-only") {
                ReadOnly
            } else if text.contains("<Code>QuotaExceeded</Code>") {
                Quota
            } else {
                Denied
            }
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// An HTTP status as an outcome.
fn http_outcome(what: &str, status: u16) -> Outcome {
    match status {
        200..=299 => Allowed,
        401 | 403 => Denied,
        other => panic!("{what}: HTTP {other}"),
    }
}

/// A filesystem call's result as an outcome: EROFS is read-only, EDQUOT a quota, EINVAL an
/// invalid name; EACCES (the gateway refused) and ENOENT (the mount does not show a volume
/// its user may not read) are denials.
fn fs_outcome<T>(what: &str, r: std::io::Result<T>) -> Outcome {
    match r {
        Ok(_) => Allowed,
        Err(e) => match e.raw_os_error() {
            Some(libc::EROFS) => ReadOnly,
            Some(libc::EDQUOT) => Quota,
            Some(libc::EINVAL) => Invalid,
            Some(libc::EACCES) | Some(libc::ENOENT) => Denied,
            _ => panic!("{what}: {e}"),
        },
    }
}

/// Runs `op` on `volume` as `principal` through every front that offers it; the answers.
async fn run(w: &World, principal: &str, volume: &str, op: &str) -> Vec<(&'static str, Outcome)> {
    let s3 = w.s3(principal, volume);
    let what = format!("{op} on {volume} as {principal}");
    let payload = || PutPayload::from_static(b"written by the access matrix\n");
    let mut out = Vec::new();
    match op {
        "list" => {
            out.push(("s3", s3_outcome(&what, s3.list_with_delimiter(None).await)));
            let batch = json!({"volume": volume, "prefix": "", "glob": "*.fits", "op": "count"});
            let status = w
                .api(principal, http::Method::POST, "/api/v1/reduce/batch", batch)
                .await;
            out.push(("http", http_outcome(&what, status)));
            for (front, dir) in w.mount_dirs(principal, volume) {
                let listed = std::fs::read_dir(&dir).and_then(|d| d.collect::<Result<Vec<_>, _>>());
                out.push((front, fs_outcome(&what, listed)));
            }
            out.extend(w.refused_mount(principal));
        }
        "get" => {
            let got = match s3.get(&Key::from("seed.txt")).await {
                Ok(r) => r.bytes().await.map(|b| assert_eq!(&b[..], b"seed\n")),
                Err(e) => Err(e),
            };
            out.push(("s3", s3_outcome(&what, got)));
        }
        "head" => {
            out.push((
                "s3",
                s3_outcome(&what, s3.head(&Key::from("seed.txt")).await),
            ));
        }
        "put" => {
            let key = Key::from(format!("put-{principal}.txt"));
            out.push(("s3", s3_outcome(&what, s3.put(&key, payload()).await)));
        }
        "copy-in" => {
            let to = format!("copy-in-{principal}.txt");
            out.push((
                "s3",
                w.s3_copy(principal, ("mx-public", "seed.txt"), (volume, &to))
                    .await,
            ));
        }
        "copy-out" => {
            let scratch = format!("mx-scratch-{}", user_of(principal));
            let dst = if principal == "anon" {
                // The anonymous caller has no workspace; a volume it cannot write.
                "mx-scratch-admin".to_string()
            } else {
                scratch
            };
            let to = format!("copy-out-{volume}.txt");
            out.push((
                "s3",
                w.s3_copy(principal, (volume, "seed.txt"), (&dst, &to))
                    .await,
            ));
        }
        "delete" => {
            let key = Key::from(format!("victim-{principal}.txt"));
            out.push(("s3", s3_outcome(&what, s3.delete(&key).await)));
        }
        "multipart" => {
            let key = Key::from(format!("multipart-{principal}.bin"));
            let r = async {
                let mut upload = s3.put_multipart(&key).await?;
                upload.put_part(payload()).await?;
                upload.complete().await
            }
            .await;
            out.push(("s3", s3_outcome(&what, r)));
        }
        "reduce" => {
            let body = json!({"volume": volume, "key": "seed.fits", "op": "mean"});
            let status = w
                .api(principal, http::Method::POST, "/api/v1/reduce", body)
                .await;
            out.push(("http", http_outcome(&what, status)));
        }
        "mount-read" => {
            for (front, dir) in w.mount_dirs(principal, volume) {
                let file = dir.join("seed.txt");
                let read = std::fs::metadata(&file).and_then(|_| std::fs::read(&file));
                if let Ok(bytes) = &read {
                    assert_eq!(&bytes[..], b"seed\n", "{what}");
                }
                out.push((front, fs_outcome(&what, read)));
            }
            out.extend(w.refused_mount(principal));
        }
        "mount-write" => {
            for (front, dir) in w.mount_dirs(principal, volume) {
                let file = dir.join(format!("mount-{principal}-{front}.txt"));
                let written = (|| {
                    use std::io::Write;
                    let mut f = std::fs::File::create(&file)?;
                    f.write_all(b"written through the mount\n")?;
                    // Uploaded on flush: the gateway's answer reaches the writer here.
                    f.sync_all()?;
                    drop(f);
                    std::fs::remove_file(&file)
                })();
                out.push((front, fs_outcome(&what, written)));
            }
            out.extend(w.refused_mount(principal));
        }
        "catalogue-change" => {
            let body = json!({"description": format!("changed by {principal}")});
            let path = format!("/api/v1/volumes/{volume}");
            let status = w.api(principal, http::Method::PATCH, &path, body).await;
            out.push(("http", http_outcome(&what, status)));
        }
        "bad-key" => {
            let mut seen = Vec::new();
            for key in [
                format!("bad/../escape-{principal}.txt"),
                format!("ctl\u{1}-{principal}.txt"),
            ] {
                seen.push(w.raw_put(principal, volume, &key).await);
            }
            assert!(seen.iter().all(|o| *o == seen[0]), "{what}: {seen:?}");
            out.push(("s3", seen[0]));
            for (front, dir) in w.mount_dirs(principal, volume) {
                let file = dir.join(format!("ctl\u{1}-{principal}-{front}.txt"));
                out.push((
                    front,
                    fs_outcome(&what, std::fs::write(&file, b"hostile\n")),
                ));
            }
            out.extend(w.refused_mount(principal));
        }
        "tampered" => {
            let host = w.gw.url.trim_start_matches("http://");
            let made_up = ("AKIAMADEUP0000000000".to_string(), "made-up".to_string());
            let (id, secret) = w.creds[principal].key.clone().unwrap_or(made_up);
            let signed = sigv4::presign("GET", host, volume, "seed.txt", (&id, &secret), 300);
            // Signed for seed.txt, sent for another object.
            let target = signed.replacen("/seed.txt?", &format!("/victim-{principal}.txt?"), 1);
            assert_ne!(target, signed);
            let (status, body) = sigv4::raw_request(&w.gw.url, "GET", &target, b"").await;
            let seen = match status {
                200 => Allowed,
                401 | 403 => Denied,
                other => panic!("{what}: {other} {body}"),
            };
            out.push(("s3", seen));
        }
        other => unreachable!("{other}"),
    }
    out
}

/// The table's letter as an outcome.
fn expected(letter: &str) -> Outcome {
    match letter {
        "Y" => Allowed,
        "D" => Denied,
        "R" => ReadOnly,
        "Q" => Quota,
        "I" => Invalid,
        other => panic!("`{other}` in the table"),
    }
}

/// Whether a front's answer agrees with the table. A front says "read-only" when it can:
/// S3 and the HTTP API always, a mount when it has the catalogue (the anonymous mount only
/// hears the gateway's refusal, EACCES). A mount that does not show the volume (`hidden`:
/// the principal may not list it) cannot name a file in it at all.
fn agrees(front: &str, principal: &str, hidden: bool, want: Outcome, seen: Outcome) -> bool {
    match (want, seen) {
        (w, s) if w == s => true,
        (ReadOnly, Denied) => front == "fuse" && principal == "anon",
        (Invalid, Denied) => front.starts_with("fuse") && hidden,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_front_gives_the_tables_answer() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(dir.path()).await;
    // The table covers every principal, volume and operation exactly once.
    assert_eq!(TABLE.len(), PRINCIPALS.len() * VOLUMES.len());
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (principal, volume, row) in TABLE {
        let letters: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(letters.len(), OPS.len(), "row {principal} {volume}");
        let hidden = letters[0] == "D";
        for (op, letter) in OPS.iter().zip(&letters) {
            let want = expected(letter);
            let answers = run(&world, principal, volume, op).await;
            assert!(!answers.is_empty(), "{op}: no front ran it");
            for (front, seen) in answers {
                checked += 1;
                if !agrees(front, principal, hidden, want, seen) {
                    mismatches.push(format!(
                        "{principal:<6} {volume:<11} {op:<16} {front:<5} table {want:?}, front {seen:?}"
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} answers differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The hostile writes left nothing, in their volume or out of it.
    let mut stack = vec![world.data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(
                !name.starts_with("escape-") && !name.contains('\u{1}'),
                "a hostile key was written: {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    // The expired credentials' mount said why it was refused.
    let refused = &world.refused_mounts["olive-exp"];
    assert!(refused.contains("expired"), "{refused}");
}
