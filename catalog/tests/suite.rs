#![allow(clippy::unwrap_used)]
//! The catalogue suite: every test runs against SQLite and against a real PostgreSQL server.
//!
//! PostgreSQL comes from `ARCHWAY_TEST_POSTGRES_URL` (an account that may create databases),
//! which `scripts/test` sets after starting a server; each test gets a database of its own.
//! The server is required: without it every test fails, saying how to start one.
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use std::time::Duration;

use archway_catalog::*;

struct TestDb {
    catalog: Catalog,
    config: CatalogConfig,
    dir: tempfile::TempDir,
}

impl TestDb {
    /// Another handle on the same catalogue (as another replica would hold), checking for
    /// changes every `refresh`.
    async fn another(&self, refresh: Duration) -> Catalog {
        let config = CatalogConfig {
            refresh_interval: Some(refresh),
            ..self.config.clone()
        };
        Catalog::open(&config, self.dir.path()).await.unwrap()
    }
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::default();
    let catalog = Catalog::open(&config, dir.path()).await.unwrap();
    TestDb {
        catalog,
        config,
        dir,
    }
}

async fn postgres() -> TestDb {
    let admin_url = std::env::var("ARCHWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "ARCHWAY_TEST_POSTGRES_URL is not set: the catalogue suite needs a PostgreSQL \
             server. Run the tests with scripts/test (which starts one), or start one with \
             `eval \"$(scripts/test-services)\"` and run cargo test in that shell"
        )
    });
    use sqlx::Connection;
    // Unique per process and per test: tests of one process run in parallel.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "archway_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} is not reachable ({e}): start it with scripts/test-services",
                archway_catalog::redact_url(&admin_url)
            )
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig {
        url: Some(url),
        ..Default::default()
    };
    let catalog = Catalog::open(&config, dir.path()).await.unwrap();
    TestDb {
        catalog,
        config,
        dir,
    }
}

/// Runs one suite function against both databases.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::sqlite().await;
                    super::$name(&db.catalog).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::postgres().await;
                    super::$name(&db.catalog).await;
                }
            )*
        }
    };
}

/// Runs one suite function that needs the whole test database against both databases.
macro_rules! both_with_db {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite_db {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::sqlite().await).await;
                }
            )*
        }
        mod on_postgres_db {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::postgres().await).await;
                }
            )*
        }
    };
}

both_with_db!(changes_elsewhere_reach_the_view);

both!(
    volumes_round_trip,
    volume_validation,
    search_and_filters,
    users_keys_tokens,
    groups_and_grants,
    access_rules,
    deletes_clean_up,
    upsert_keeps_scan,
    cors_rules,
    the_view_follows_every_change_at_once,
    scoped_expiring_and_temporary_credentials,
    peer_links_and_their_volumes,
    quotas_hold_under_concurrent_charges,
    one_site_id_per_catalogue,
    the_peer_refresh_lock_is_held_by_one_at_a_time,
    the_science_index_finds_what_overlaps_and_nothing_else,
);

fn new_volume(id: &str) -> NewVolume {
    NewVolume {
        id: id.into(),
        title: format!("Title of {id}"),
        backend: "local".into(),
        ..Default::default()
    }
}

async fn volumes_round_trip(c: &Catalog) {
    let mut nv = new_volume("gaia-dr3");
    nv.title = "Gaia Data Release 3".into();
    nv.description = "Astrometry and photometry of 1.8 billion sources".into();
    nv.mission = Some("Gaia".into());
    nv.instrument = Some("ASTRO".into());
    nv.tags = vec!["astrometry".into(), "catalogue".into()];
    nv.license = Some("CC-BY-SA-3.0-IGO".into());
    nv.calib_level = Some(3);
    nv.prefix = "/gaia/dr3/".into();
    nv.extra
        .insert("doi".into(), serde_json::json!("10.5270/esa-qa4lep3"));
    let v = c.create_volume(nv).await.unwrap();
    assert_eq!(v.prefix, "gaia/dr3");
    assert!(v.read_only, "archives default to read-only");
    assert_eq!(c.get_volume("gaia-dr3").await.unwrap(), v);

    let patch: VolumePatch =
        serde_json::from_str(r#"{"title": "Gaia DR3", "mission": null, "tags": ["gaia"]}"#)
            .unwrap();
    let u = c.update_volume("gaia-dr3", patch).await.unwrap();
    assert_eq!(u.title, "Gaia DR3");
    assert_eq!(u.mission, None);
    assert_eq!(u.tags, vec!["gaia"]);
    assert_eq!(u.instrument.as_deref(), Some("ASTRO"));
    assert!(u.updated_at > v.updated_at);
    assert_eq!(u.created_at, v.created_at);

    let err = c.create_volume(new_volume("gaia-dr3")).await.unwrap_err();
    assert!(matches!(err, CatalogError::AlreadyExists { .. }), "{err}");

    let scan = c.record_scan("gaia-dr3", 12, 3456).await.unwrap();
    assert_eq!(
        c.get_volume("gaia-dr3").await.unwrap().last_scan,
        Some(scan)
    );

    c.delete_volume("gaia-dr3").await.unwrap();
    assert!(matches!(
        c.get_volume("gaia-dr3").await.unwrap_err(),
        CatalogError::NotFound { .. }
    ));
    assert!(matches!(
        c.delete_volume("gaia-dr3").await.unwrap_err(),
        CatalogError::NotFound { .. }
    ));
}

async fn volume_validation(c: &Catalog) {
    let field = |e: CatalogError| match e {
        CatalogError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other}"),
    };
    assert_eq!(
        field(c.create_volume(new_volume("Bad_Name")).await.unwrap_err()),
        "id"
    );
    assert_eq!(
        field(c.create_volume(new_volume("api")).await.unwrap_err()),
        "id"
    );
    let mut nv = new_volume("escape");
    nv.prefix = "a/../../etc".into();
    assert_eq!(field(c.create_volume(nv).await.unwrap_err()), "prefix");
    let mut nv = new_volume("calib");
    nv.calib_level = Some(9);
    assert_eq!(field(c.create_volume(nv).await.unwrap_err()), "calib_level");
    let mut nv = new_volume("owned");
    nv.owner = Some("nobody".into());
    assert_eq!(field(c.create_volume(nv).await.unwrap_err()), "owner");
    let mut nv = new_volume("nobackend");
    nv.backend = String::new();
    assert_eq!(field(c.create_volume(nv).await.unwrap_err()), "backend");
}

async fn search_and_filters(c: &Catalog) {
    let specs = [
        (
            "gaia-dr3",
            "Gaia DR3",
            "Astrometric catalogue",
            "Gaia",
            "ASTRO",
            vec!["astrometry"],
        ),
        (
            "xmm-pps",
            "XMM-Newton pipeline products",
            "X-ray source lists",
            "XMM-Newton",
            "EPIC",
            vec!["x-ray"],
        ),
        (
            "jwst-nircam",
            "JWST NIRCam images",
            "Near infrared imaging of deep fields",
            "JWST",
            "NIRCam",
            vec!["imaging", "infrared"],
        ),
        (
            "hst-acs",
            "HST ACS imaging",
            "Optical, deep fields",
            "HST",
            "ACS",
            vec!["imaging"],
        ),
    ];
    for (id, title, desc, mission, instrument, tags) in specs {
        let mut nv = new_volume(id);
        nv.title = title.into();
        nv.description = desc.into();
        nv.mission = Some(mission.into());
        nv.instrument = Some(instrument.into());
        nv.tags = tags.into_iter().map(String::from).collect();
        c.create_volume(nv).await.unwrap();
    }
    let admin = Principal {
        user: "root".into(),
        admin: true,
        scope: Default::default(),
    };
    let ids = |r: Vec<(Volume, Access)>| r.into_iter().map(|(v, _)| v.id).collect::<Vec<_>>();
    let q = |text: &str| VolumeQuery {
        q: Some(text.into()),
        ..Default::default()
    };

    assert_eq!(
        ids(c
            .list_volumes(Some(&admin), &VolumeQuery::default())
            .await
            .unwrap()),
        vec!["gaia-dr3", "hst-acs", "jwst-nircam", "xmm-pps"]
    );
    // A word in the title, a prefix of a word, a word in the description, tags, mission, instrument.
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("gaia")).await.unwrap()),
        vec!["gaia-dr3"]
    );
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("astrom")).await.unwrap()),
        vec!["gaia-dr3"]
    );
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("nircam")).await.unwrap()),
        vec!["jwst-nircam"]
    );
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("EPIC")).await.unwrap()),
        vec!["xmm-pps"]
    );
    let deep = ids(c
        .list_volumes(Some(&admin), &q("deep fields"))
        .await
        .unwrap());
    assert_eq!(deep.len(), 2);
    assert!(deep.contains(&"hst-acs".to_string()) && deep.contains(&"jwst-nircam".to_string()));
    // Title matches rank above description matches.
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("imaging")).await.unwrap()),
        vec!["hst-acs", "jwst-nircam"]
    );
    assert!(
        c.list_volumes(Some(&admin), &q("\"; DROP TABLE volumes; --"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.list_volumes(Some(&admin), &q("nothing-like-this"))
            .await
            .unwrap()
            .is_empty()
    );

    let f = VolumeQuery {
        mission: Some("jwst".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &f).await.unwrap()),
        vec!["jwst-nircam"]
    );
    let f = VolumeQuery {
        tag: Some("imaging".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &f).await.unwrap()),
        vec!["hst-acs", "jwst-nircam"]
    );
    let f = VolumeQuery {
        q: Some("deep".into()),
        instrument: Some("acs".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &f).await.unwrap()),
        vec!["hst-acs"]
    );
    let f = VolumeQuery {
        limit: Some(2),
        offset: Some(1),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &f).await.unwrap()),
        vec!["hst-acs", "jwst-nircam"]
    );
    // Pages cut after a filter applied in Rust (tags) too.
    let f = VolumeQuery {
        tag: Some("imaging".into()),
        limit: Some(1),
        offset: Some(1),
        ..Default::default()
    };
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &f).await.unwrap()),
        vec!["jwst-nircam"]
    );

    // The index follows updates and deletes.
    let patch = VolumePatch {
        title: Some("Hubble Advanced Camera".into()),
        ..Default::default()
    };
    c.update_volume("hst-acs", patch).await.unwrap();
    assert_eq!(
        ids(c.list_volumes(Some(&admin), &q("hubble")).await.unwrap()),
        vec!["hst-acs"]
    );
    c.delete_volume("hst-acs").await.unwrap();
    assert!(
        c.list_volumes(Some(&admin), &q("hubble"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn users_keys_tokens(c: &Catalog) {
    let u = c.create_user("alice", "Alice A.", false).await.unwrap();
    assert!(!u.admin);
    assert!(matches!(
        c.create_user("alice", "", false).await.unwrap_err(),
        CatalogError::AlreadyExists { .. }
    ));
    assert!(matches!(
        c.create_user("Alice!", "", false).await.unwrap_err(),
        CatalogError::Invalid { field: "name", .. }
    ));
    let u = c
        .update_user(
            "alice",
            &UserPatch {
                admin: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(u.admin);
    assert!(!u.create_workspaces);
    let u = c
        .update_user(
            "alice",
            &UserPatch {
                create_workspaces: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(u.create_workspaces && u.admin);
    assert_eq!(u.display_name, "Alice A.");

    let key = c.create_access_key("alice", "laptop").await.unwrap();
    let (p, secret) = c
        .access_key_secret(&key.key.access_key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.user, "alice");
    assert!(p.admin);
    assert_eq!(secret, key.secret_access_key);
    assert!(
        !format!("{key:?}").contains(&key.secret_access_key),
        "Debug leaks the secret"
    );
    assert_eq!(c.list_access_keys(Some("alice")).await.unwrap().len(), 1);
    assert!(
        c.access_key_secret("AKNOSUCHKEY0000000")
            .await
            .unwrap()
            .is_none()
    );
    let imported = c
        .import_access_key(
            "alice",
            "AKIMPORTED00000001",
            "0123456789abcdef0123",
            "",
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        c.access_key_secret("AKIMPORTED00000001")
            .await
            .unwrap()
            .unwrap()
            .1,
        imported.secret_access_key
    );
    c.delete_access_key(&key.key.access_key_id).await.unwrap();
    assert!(
        c.access_key_secret(&key.key.access_key_id)
            .await
            .unwrap()
            .is_none()
    );

    let t = c.create_token("alice", "ci", None).await.unwrap();
    assert_eq!(
        c.authenticate_token(&t.secret).await.unwrap().unwrap().user,
        "alice"
    );
    let mut forged = t.secret.clone();
    forged.pop();
    forged.push(if t.secret.ends_with('A') { 'B' } else { 'A' });
    assert!(c.authenticate_token(&forged).await.unwrap().is_none());
    assert!(c.authenticate_token("garbage").await.unwrap().is_none());
    let expired = c
        .create_token("alice", "old", Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        c.authenticate_token(&expired.secret)
            .await
            .unwrap()
            .is_none()
    );
    c.delete_token(&t.token.id).await.unwrap();
    assert!(c.authenticate_token(&t.secret).await.unwrap().is_none());
}

async fn groups_and_grants(c: &Catalog) {
    c.create_user("bob", "", false).await.unwrap();
    c.create_group("gaia-team", "DPAC").await.unwrap();
    c.create_volume(new_volume("gaia-dr3")).await.unwrap();
    let g = c.add_member("gaia-team", "bob").await.unwrap();
    assert_eq!(g.members, vec!["bob"]);
    assert_eq!(c.get_user("bob").await.unwrap().groups, vec!["gaia-team"]);
    let grant = c
        .grant(
            &Subject::Group("gaia-team".into()),
            "gaia-dr3",
            Access::Write,
        )
        .await
        .unwrap();
    assert_eq!(grant.level, Access::Write);
    // A second grant to the same subject replaces the level.
    c.grant(
        &Subject::Group("gaia-team".into()),
        "gaia-dr3",
        Access::Read,
    )
    .await
    .unwrap();
    let grants = c.list_grants(Some("gaia-dr3"), None).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].level, Access::Read);
    assert!(matches!(
        c.grant(&Subject::User("nobody".into()), "gaia-dr3", Access::Read)
            .await
            .unwrap_err(),
        CatalogError::NotFound { kind: "user", .. }
    ));
    assert!(matches!(
        c.grant(&Subject::User("bob".into()), "no-such-volume", Access::Read)
            .await
            .unwrap_err(),
        CatalogError::NotFound { kind: "volume", .. }
    ));
    c.revoke(&Subject::Group("gaia-team".into()), "gaia-dr3")
        .await
        .unwrap();
    assert!(c.list_grants(None, None).await.unwrap().is_empty());
    c.remove_member("gaia-team", "bob").await.unwrap();
    assert!(c.get_user("bob").await.unwrap().groups.is_empty());
}

async fn access_rules(c: &Catalog) {
    c.create_user("carol", "", false).await.unwrap();
    c.create_user("dave", "", false).await.unwrap();
    c.create_group("team", "").await.unwrap();
    c.add_member("team", "dave").await.unwrap();
    let private = c.create_volume(new_volume("private")).await.unwrap();
    let mut nv = new_volume("public");
    nv.public_read = true;
    let public = c.create_volume(nv).await.unwrap();
    let mut nv = new_volume("carol-ws");
    nv.kind = VolumeKind::Workspace;
    nv.owner = Some("carol".into());
    let ws = c.create_volume(nv).await.unwrap();
    assert!(!ws.read_only, "workspaces default to writable");
    c.grant(&Subject::Group("team".into()), "private", Access::Read)
        .await
        .unwrap();
    c.grant(&Subject::User("dave".into()), "private", Access::Write)
        .await
        .unwrap();
    c.grant(&Subject::User("dave".into()), "public", Access::Write)
        .await
        .unwrap();

    let carol = c.principal("carol").await.unwrap();
    let dave = c.principal("dave").await.unwrap();
    let admin = Principal {
        user: "root".into(),
        admin: true,
        scope: Default::default(),
    };
    assert_eq!(c.access(Some(&carol), &private).await.unwrap(), None);
    assert_eq!(
        c.access(Some(&carol), &public).await.unwrap(),
        Some(Access::Read)
    );
    assert_eq!(
        c.access(Some(&carol), &ws).await.unwrap(),
        Some(Access::Admin)
    );
    assert_eq!(
        c.access(Some(&dave), &private).await.unwrap(),
        Some(Access::Write)
    );
    assert_eq!(
        c.access(Some(&dave), &public).await.unwrap(),
        Some(Access::Write)
    );
    assert_eq!(c.access(Some(&dave), &ws).await.unwrap(), None);
    assert_eq!(c.access(None, &public).await.unwrap(), Some(Access::Read));
    assert_eq!(c.access(None, &private).await.unwrap(), None);
    assert_eq!(
        c.access(Some(&admin), &private).await.unwrap(),
        Some(Access::Admin)
    );

    let seen = |r: Vec<(Volume, Access)>| r.into_iter().map(|(v, a)| (v.id, a)).collect::<Vec<_>>();
    let all = VolumeQuery::default();
    assert_eq!(
        seen(c.list_volumes(Some(&carol), &all).await.unwrap()),
        vec![
            ("carol-ws".to_string(), Access::Admin),
            ("public".to_string(), Access::Read)
        ]
    );
    assert_eq!(
        seen(c.list_volumes(Some(&dave), &all).await.unwrap()),
        vec![
            ("private".to_string(), Access::Write),
            ("public".to_string(), Access::Write)
        ]
    );
    assert_eq!(
        seen(c.list_volumes(None, &all).await.unwrap()),
        vec![("public".to_string(), Access::Read)]
    );
    assert_eq!(c.list_volumes(Some(&admin), &all).await.unwrap().len(), 3);
}

async fn deletes_clean_up(c: &Catalog) {
    c.create_user("erin", "", false).await.unwrap();
    c.create_group("g1", "").await.unwrap();
    c.add_member("g1", "erin").await.unwrap();
    c.create_volume(new_volume("vol-a")).await.unwrap();
    c.grant(&Subject::User("erin".into()), "vol-a", Access::Read)
        .await
        .unwrap();
    c.grant(&Subject::Group("g1".into()), "vol-a", Access::Read)
        .await
        .unwrap();
    c.create_access_key("erin", "").await.unwrap();
    c.create_token("erin", "", None).await.unwrap();

    let mut nv = new_volume("erin-ws");
    nv.owner = Some("erin".into());
    c.create_volume(nv).await.unwrap();
    let err = c.delete_user("erin").await.unwrap_err();
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("erin-ws"));
    c.delete_volume("erin-ws").await.unwrap();

    c.delete_user("erin").await.unwrap();
    assert!(c.list_access_keys(Some("erin")).await.unwrap().is_empty());
    assert!(c.list_tokens(Some("erin")).await.unwrap().is_empty());
    assert!(c.get_group("g1").await.unwrap().members.is_empty());
    assert_eq!(c.list_grants(Some("vol-a"), None).await.unwrap().len(), 1);
    c.delete_group("g1").await.unwrap();
    assert!(c.list_grants(Some("vol-a"), None).await.unwrap().is_empty());
    c.grant(&Subject::Group("g1".into()), "vol-a", Access::Read)
        .await
        .unwrap_err();
}

async fn cors_rules(c: &Catalog) {
    c.create_volume(new_volume("web")).await.unwrap();
    assert_eq!(c.cors("web").await.unwrap(), None);
    let rules = vec![
        CorsRule {
            id: Some("js9".into()),
            allowed_origins: vec!["https://*.esa.int".into()],
            allowed_methods: vec!["GET".into(), "HEAD".into()],
            allowed_headers: vec!["range".into()],
            expose_headers: vec!["ETag".into(), "Content-Range".into()],
            max_age_seconds: Some(600),
        },
        CorsRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            ..Default::default()
        },
    ];
    c.put_cors("web", &rules).await.unwrap();
    assert_eq!(c.cors("web").await.unwrap().as_deref(), Some(&rules[..]));
    // Replaced whole; bad lists refused without touching what is there.
    c.put_cors("web", &rules[1..]).await.unwrap();
    assert_eq!(c.cors("web").await.unwrap().as_deref(), Some(&rules[1..]));
    let err = c.put_cors("web", &[]).await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Invalid { field: "cors", .. }),
        "{err}"
    );
    assert_eq!(c.cors("web").await.unwrap().as_deref(), Some(&rules[1..]));
    assert!(matches!(
        c.put_cors("missing", &rules).await.unwrap_err(),
        CatalogError::NotFound { .. }
    ));
    c.delete_cors("web").await.unwrap();
    assert_eq!(c.cors("web").await.unwrap(), None);
    c.delete_cors("web").await.unwrap();
    // A removed volume takes its rules along.
    c.put_cors("web", &rules).await.unwrap();
    c.delete_volume("web").await.unwrap();
    c.create_volume(new_volume("web")).await.unwrap();
    assert_eq!(c.cors("web").await.unwrap(), None);
}

async fn upsert_keeps_scan(c: &Catalog) {
    let (v, created) = c.upsert_volume(new_volume("declared")).await.unwrap();
    assert!(created);
    c.record_scan("declared", 3, 30).await.unwrap();
    let mut nv = new_volume("declared");
    nv.title = "New title".into();
    let (u, created) = c.upsert_volume(nv).await.unwrap();
    assert!(!created);
    assert_eq!(u.title, "New title");
    assert_eq!(u.created_at, v.created_at);
    assert_eq!(u.last_scan.map(|s| s.objects), Some(3));
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::default();
    Catalog::open(&config, dir.path())
        .await
        .unwrap()
        .close()
        .await;
    std::fs::write(dir.path().join("secret.key"), hex_key()).unwrap();
    let err = Catalog::open(&config, dir.path()).await.unwrap_err();
    assert!(matches!(err, CatalogError::SecretKey { .. }), "{err}");
    assert!(err.to_string().contains("secret.key"), "{err}");
}

fn hex_key() -> String {
    "ab".repeat(32)
}

#[tokio::test]
async fn reopening_keeps_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::default();
    let c = Catalog::open(&config, dir.path()).await.unwrap();
    c.create_user("frank", "", true).await.unwrap();
    let key = c.create_access_key("frank", "").await.unwrap();
    c.close().await;
    let c = Catalog::open(&config, dir.path()).await.unwrap();
    assert!(c.get_user("frank").await.unwrap().admin);
    assert_eq!(
        c.access_key_secret(&key.key.access_key_id)
            .await
            .unwrap()
            .unwrap()
            .1,
        key.secret_access_key
    );
}

#[tokio::test]
async fn a_version_1_catalogue_is_migrated_and_keeps_its_records() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    {
        // What Archway with schema version 1 left behind.
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display()))
                .await
                .unwrap();
        sqlx::raw_sql(include_str!("../migrations/sqlite/0001_init.sql"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE archway_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO archway_schema VALUES (1, 0);
             INSERT INTO users (name, display_name, admin, created_at) VALUES ('old', 'Old', 1, 0);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let c = Catalog::open(&CatalogConfig::default(), dir.path())
        .await
        .unwrap();
    let old = c.get_user("old").await.unwrap();
    assert!(old.admin && !old.create_workspaces);
    assert_eq!(old.display_name, "Old");
    c.update_user(
        "old",
        &UserPatch {
            create_workspaces: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.close().await;
    // Opening again changes nothing.
    let c = Catalog::open(&CatalogConfig::default(), dir.path())
        .await
        .unwrap();
    assert!(c.get_user("old").await.unwrap().create_workspaces);
}

/// Every change made through a handle is in that handle's view for the very next request.
async fn the_view_follows_every_change_at_once(c: &Catalog) {
    let user = |name: &str| Principal {
        user: name.into(),
        admin: false,
        scope: Default::default(),
    };
    c.create_user("vic", "", false).await.unwrap();
    assert!(!c.principal("vic").await.unwrap().admin);
    c.update_user(
        "vic",
        &UserPatch {
            admin: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(c.principal("vic").await.unwrap().admin);
    c.update_user(
        "vic",
        &UserPatch {
            admin: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!c.principal("vic").await.unwrap().admin);

    let key = c.create_access_key("vic", "").await.unwrap();
    let id = key.key.access_key_id.clone();
    let (who, secret) = c.access_key_secret(&id).await.unwrap().unwrap();
    assert_eq!(
        (who.user.as_str(), secret.as_str()),
        ("vic", key.secret_access_key.as_str())
    );
    c.delete_access_key(&id).await.unwrap();
    assert!(c.access_key_secret(&id).await.unwrap().is_none());

    let token = c.create_token("vic", "t", None).await.unwrap();
    assert_eq!(
        c.authenticate_token(&token.secret).await.unwrap(),
        Some(user("vic"))
    );
    c.delete_token(&token.token.id).await.unwrap();
    assert_eq!(c.authenticate_token(&token.secret).await.unwrap(), None);

    c.create_volume(new_volume("seen")).await.unwrap();
    let v = c.view().await.unwrap().volume("seen").unwrap();
    assert_eq!(c.access(Some(&user("vic")), &v).await.unwrap(), None);
    c.create_group("seers", "").await.unwrap();
    c.grant(&Subject::Group("seers".into()), "seen", Access::Read)
        .await
        .unwrap();
    assert_eq!(c.access(Some(&user("vic")), &v).await.unwrap(), None);
    c.add_member("seers", "vic").await.unwrap();
    assert_eq!(
        c.access(Some(&user("vic")), &v).await.unwrap(),
        Some(Access::Read)
    );
    c.grant(&Subject::User("vic".into()), "seen", Access::Write)
        .await
        .unwrap();
    assert_eq!(
        c.access(Some(&user("vic")), &v).await.unwrap(),
        Some(Access::Write)
    );
    c.revoke(&Subject::User("vic".into()), "seen")
        .await
        .unwrap();
    c.remove_member("seers", "vic").await.unwrap();
    assert_eq!(c.access(Some(&user("vic")), &v).await.unwrap(), None);

    assert_eq!(c.access(None, &v).await.unwrap(), None);
    c.update_volume(
        "seen",
        VolumePatch {
            public_read: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let v = c.view().await.unwrap().volume("seen").unwrap();
    assert_eq!(c.access(None, &v).await.unwrap(), Some(Access::Read));
    c.record_scan("seen", 3, 30).await.unwrap();
    let v = c.view().await.unwrap().volume("seen").unwrap();
    assert_eq!(
        v.last_scan.as_ref().map(|s| (s.objects, s.bytes)),
        Some((3, 30))
    );

    let rules = vec![CorsRule {
        allowed_origins: vec!["https://example.org".into()],
        allowed_methods: vec!["GET".into()],
        ..Default::default()
    }];
    c.put_cors("seen", &rules).await.unwrap();
    assert_eq!(c.cors("seen").await.unwrap(), Some(rules));
    c.delete_cors("seen").await.unwrap();
    assert_eq!(c.cors("seen").await.unwrap(), None);

    c.delete_group("seers").await.unwrap();
    c.delete_volume("seen").await.unwrap();
    assert!(matches!(
        c.view().await.unwrap().volume("seen"),
        Err(CatalogError::NotFound { .. })
    ));
    let key = c.create_access_key("vic", "").await.unwrap();
    c.delete_user("vic").await.unwrap();
    assert!(matches!(
        c.principal("vic").await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(
        c.access_key_secret(&key.key.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Waits up to 10 s for `cond` on `c`'s view; how long it took.
async fn seen_within(c: &Catalog, cond: impl Fn(&CatalogView) -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if cond(&c.view().await.unwrap()) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A change made through one handle (another replica, another process) reaches a second
/// handle's view within its refresh interval; on PostgreSQL, the triggers' notifications
/// bring it without waiting for the interval.
async fn changes_elsewhere_reach_the_view(db: &TestDb) {
    let a = &db.catalog;
    let b = db.another(Duration::from_millis(100)).await;
    assert!(b.view().await.unwrap().principal("wanda").is_err());
    a.create_user("wanda", "", false).await.unwrap();
    let took = seen_within(&b, |v| v.principal("wanda").is_ok()).await;
    assert!(took.is_some(), "a new user never reached the other view");
    a.create_volume(new_volume("elsewhere")).await.unwrap();
    a.grant(&Subject::User("wanda".into()), "elsewhere", Access::Write)
        .await
        .unwrap();
    let wanda = Principal {
        user: "wanda".into(),
        admin: false,
        scope: Default::default(),
    };
    let took = seen_within(&b, |v| {
        v.volume("elsewhere")
            .is_ok_and(|vol| v.access(Some(&wanda), &vol) == Some(Access::Write))
    })
    .await;
    assert!(took.is_some(), "a new grant never reached the other view");
    a.revoke(&Subject::User("wanda".into()), "elsewhere")
        .await
        .unwrap();
    let took = seen_within(&b, |v| {
        v.volume("elsewhere")
            .is_ok_and(|vol| v.access(Some(&wanda), &vol).is_none())
    })
    .await;
    assert!(took.is_some(), "a revoked grant stayed in the other view");

    if a.dialect() == Dialect::Postgres {
        // Polling once an hour: only a notification can bring the change in time.
        let c = db.another(Duration::from_secs(3600)).await;
        c.view().await.unwrap();
        let started = std::time::Instant::now();
        while !c.listening() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the watcher never listened for notifications"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.create_user("xena", "", false).await.unwrap();
        let took = seen_within(&c, |v| v.principal("xena").is_ok()).await;
        assert!(
            took.is_some(),
            "a change never reached a view that only notifications refresh"
        );
    }
}

/// Keys and tokens limited to reading and to volumes, expiring keys, and temporary keys with
/// their session token: stored, listed and enforced the same on both databases.
async fn scoped_expiring_and_temporary_credentials(c: &Catalog) {
    c.create_user("sam", "", false).await.unwrap();
    for id in ["sky", "other", "open"] {
        let mut nv = new_volume(id);
        nv.kind = VolumeKind::Workspace;
        nv.read_only = Some(false);
        nv.owner = Some("sam".into());
        nv.public_read = id == "open";
        c.create_volume(nv).await.unwrap();
    }
    let scope = Scope {
        read_only: true,
        volumes: Some(vec!["sky".into()]),
    };
    let terms = Terms {
        scope: scope.clone(),
        ttl: Some(Duration::from_secs(3600)),
    };
    let key = c.create_access_key_with("sam", "ro", &terms).await.unwrap();
    assert_eq!(key.key.scope, scope);
    assert!(key.key.expires_at.is_some() && !key.key.temporary);
    let listed = c.list_access_keys(Some("sam")).await.unwrap();
    assert_eq!(listed, vec![key.key.clone()]);

    let auth = c
        .access_key_auth(&key.key.access_key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.principal.scope, scope);
    assert!(!auth.principal.acts_as_admin());
    let level = |p: &Principal, id: &str| {
        let (c, p, id) = (c.clone(), p.clone(), id.to_string());
        async move {
            let v = c.get_volume(&id).await.unwrap();
            c.access(Some(&p), &v).await.unwrap()
        }
    };
    // The owner's admin level is cut to read on its volume; elsewhere only public reads.
    assert_eq!(level(&auth.principal, "sky").await, Some(Access::Read));
    assert_eq!(level(&auth.principal, "other").await, None);
    assert_eq!(level(&auth.principal, "open").await, Some(Access::Read));
    let full = c.principal("sam").await.unwrap();
    assert_eq!(level(&full, "other").await, Some(Access::Admin));
    // Listing follows the scope too.
    let seen: Vec<(String, Access)> = c
        .list_volumes(Some(&auth.principal), &VolumeQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|(v, a)| (v.id, a))
        .collect();
    assert_eq!(
        seen,
        vec![("open".into(), Access::Read), ("sky".into(), Access::Read)]
    );

    // Tokens carry scopes the same way.
    let t = c
        .create_token_with(
            "sam",
            "viewer",
            &Terms {
                scope: Scope {
                    read_only: false,
                    volumes: Some(vec!["other".into()]),
                },
                ttl: None,
            },
        )
        .await
        .unwrap();
    let p = c.authenticate_token(&t.secret).await.unwrap().unwrap();
    assert_eq!(level(&p, "other").await, Some(Access::Admin));
    assert_eq!(level(&p, "sky").await, None);
    assert_eq!(c.list_tokens(Some("sam")).await.unwrap()[0].scope, p.scope);

    // A temporary key needs its session token; a long-term key refuses one.
    let (temp, session) = c
        .create_session_key(
            "sam",
            "sts",
            &Terms {
                scope: Scope::default(),
                ttl: Some(Duration::from_millis(300)),
            },
        )
        .await
        .unwrap();
    assert!(temp.key.temporary && temp.key.access_key_id.starts_with("ASIA"));
    let view = c.view().await.unwrap();
    let id = temp.key.access_key_id.as_str();
    assert_eq!(view.session_problem(id, Some(&session)), None);
    assert_eq!(
        view.session_problem(id, None),
        Some(SessionProblem::Missing)
    );
    assert_eq!(
        view.session_problem(id, Some("forged")),
        Some(SessionProblem::Wrong)
    );
    assert_eq!(
        view.session_problem(&key.key.access_key_id, Some(&session)),
        Some(SessionProblem::Unexpected)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        c.view().await.unwrap().session_problem(id, Some(&session)),
        Some(SessionProblem::Expired {
            temporary: true,
            ..
        })
    ));
    assert!(c.access_key_auth(id).await.unwrap().is_none());
    // Expired credentials are swept once past the grace period.
    assert_eq!(
        c.sweep_expired_credentials(Duration::ZERO).await.unwrap(),
        1
    );
    assert!(c.get_access_key(id).await.is_err());

    // Bad terms name the field.
    let bad = Terms {
        scope: Scope {
            read_only: false,
            volumes: Some(vec![]),
        },
        ttl: None,
    };
    assert!(matches!(
        c.create_access_key_with("sam", "", &bad).await.unwrap_err(),
        CatalogError::Invalid {
            field: "volumes",
            ..
        }
    ));
    let bad = Terms {
        ttl: Some(Duration::ZERO),
        ..Default::default()
    };
    assert!(matches!(
        c.create_token_with("sam", "", &bad).await.unwrap_err(),
        CatalogError::Invalid { field: "ttl", .. }
    ));
}

/// Peer links: secrets sealed and opened again, listed without them, refreshes recorded, and
/// removing a link removes the volumes linked through it with their grants.
async fn peer_links_and_their_volumes(c: &Catalog) {
    let new = NewPeer {
        name: "esac".into(),
        url: "https://archway.esac.example/".into(),
        access_key_id: "AKLINK".into(),
        secret_access_key: "s3cr3t".into(),
        token: Some("awt_token".into()),
    };
    let p = c.create_peer(&new).await.unwrap();
    assert_eq!(
        p.url, "https://archway.esac.example",
        "stored without the trailing /"
    );
    assert!(p.token && p.refreshed_at.is_none() && p.last_error.is_none());
    let creds = c.peer_credentials("esac").await.unwrap();
    assert_eq!(
        (creds.secret_access_key.as_str(), creds.token.as_deref()),
        ("s3cr3t", Some("awt_token"))
    );
    assert!(!format!("{creds:?} {new:?}").contains("s3cr3t"));
    assert!(matches!(
        c.create_peer(&new).await,
        Err(CatalogError::AlreadyExists { .. })
    ));
    for (field, bad) in [
        (
            "name",
            NewPeer {
                name: "Esac_2".into(),
                ..new.clone()
            },
        ),
        (
            "url",
            NewPeer {
                name: "x".into(),
                url: "ftp://x".into(),
                ..new.clone()
            },
        ),
        (
            "secret_access_key",
            NewPeer {
                name: "y".into(),
                secret_access_key: String::new(),
                ..new.clone()
            },
        ),
    ] {
        match c.create_peer(&bad).await {
            Err(CatalogError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    c.record_peer_refresh("esac", Some("timed out"))
        .await
        .unwrap();
    let listed = c.list_peers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_error.as_deref(), Some("timed out"));
    assert!(listed[0].refreshed_at.is_some());

    let mut linked = new_volume("esac.gaia");
    linked.backend = peer_backend("esac");
    linked.prefix = "gaia".into();
    c.create_volume(linked).await.unwrap();
    c.create_volume(new_volume("local-one")).await.unwrap();
    c.create_user("ann", "", false).await.unwrap();
    c.grant(&Subject::User("ann".into()), "esac.gaia", Access::Read)
        .await
        .unwrap();
    assert_eq!(c.linked_volume_ids("esac").await.unwrap(), ["esac.gaia"]);
    c.delete_peer("esac").await.unwrap();
    assert!(matches!(
        c.get_volume("esac.gaia").await,
        Err(CatalogError::NotFound { .. })
    ));
    assert!(c.get_volume("local-one").await.is_ok());
    assert!(
        c.list_grants(Some("esac.gaia"), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        c.peer_credentials("esac").await,
        Err(CatalogError::NotFound { .. })
    ));
}

/// The site id is made once and then the same, whoever asks.
async fn one_site_id_per_catalogue(c: &Catalog) {
    let id = c.site_id().await.unwrap();
    assert_eq!(id.len(), 24);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(c.site_id().await.unwrap(), id);
}

/// The periodic peer refresh runs on one replica at a time (PostgreSQL); SQLite has one
/// gateway per file and no lock to take.
async fn the_peer_refresh_lock_is_held_by_one_at_a_time(c: &Catalog) {
    let first = c.try_peer_refresh_lock().await.unwrap().unwrap();
    let second = c.try_peer_refresh_lock().await.unwrap();
    if c.dialect() == Dialect::Postgres {
        assert!(second.is_none(), "taken twice at once");
        first.release().await.unwrap();
        let again = c.try_peer_refresh_lock().await.unwrap();
        assert!(again.is_some(), "not free after release");
        again.unwrap().release().await.unwrap();
    } else {
        assert!(second.is_some());
    }
    // The science refresh has a lock of its own: held with the peer refresh's, both at once.
    let peers = c.try_peer_refresh_lock().await.unwrap().unwrap();
    let science = c.try_science_refresh_lock().await.unwrap().unwrap();
    if c.dialect() == Dialect::Postgres {
        assert!(
            c.try_science_refresh_lock().await.unwrap().is_none(),
            "science lock taken twice"
        );
    }
    science.release().await.unwrap();
    peers.release().await.unwrap();
}

fn workspace(id: &str, owner: &str) -> NewVolume {
    NewVolume {
        id: id.into(),
        backend: "workspaces".into(),
        prefix: id.into(),
        kind: VolumeKind::Workspace,
        owner: Some(owner.into()),
        ..Default::default()
    }
}

async fn quotas_hold_under_concurrent_charges(c: &Catalog) {
    c.create_user("qa", "", false).await.unwrap();
    let mut ws = workspace("qa-ws", "qa");
    ws.quota_objects = Some(10);
    c.create_volume(ws).await.unwrap();
    c.create_volume(workspace("qa-other", "qa")).await.unwrap();
    // Quotas belong to workspaces.
    let archive = NewVolume {
        id: "qa-archive".into(),
        backend: "local".into(),
        quota_bytes: Some(1),
        ..Default::default()
    };
    match c.create_volume(archive).await {
        Err(CatalogError::Invalid { field, message }) => {
            assert_eq!(field, "quota_bytes");
            assert!(message.contains("workspaces"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    c.update_user(
        "qa",
        &UserPatch {
            quota_bytes: Some(Some(1000)),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // 32 writers of 100 bytes race over two workspaces against the user's 1000 bytes.
    let mut writers = Vec::new();
    for i in 0..32 {
        let c = c.clone();
        let ws = if i % 2 == 0 { "qa-ws" } else { "qa-other" };
        writers.push(tokio::spawn(
            async move { c.charge_usage(ws, 100, 1).await },
        ));
    }
    let mut admitted = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(CatalogError::QuotaExceeded {
                scope,
                what,
                limit,
                usage,
            }) => {
                assert_eq!(
                    (scope.to_string().as_str(), what, limit),
                    ("user `qa`", "bytes", 1000)
                );
                assert!(usage <= 1000);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted, 10, "exactly the writes that fit");
    let user = c.get_user("qa").await.unwrap();
    assert_eq!((user.usage_bytes, user.usage_objects), (1000, 10));
    let (a, b) = (
        c.get_volume("qa-ws").await.unwrap(),
        c.get_volume("qa-other").await.unwrap(),
    );
    assert_eq!(
        a.usage_bytes.unwrap() + b.usage_bytes.unwrap(),
        1000,
        "the workspaces' usage adds up to the user's"
    );
    let (counted, bytes, objects) = c.total_workspace_usage().await.unwrap();
    assert!(
        counted >= 2 && bytes >= 1000 && objects >= 10,
        "{counted} {bytes} {objects}"
    );

    // Shrinking is never refused; the freed room is usable at once.
    c.charge_usage("qa-ws", -100, -1).await.unwrap();
    c.charge_usage("qa-other", 100, 1).await.unwrap();
    assert!(matches!(
        c.charge_usage("qa-other", 1, 0).await,
        Err(CatalogError::QuotaExceeded { .. })
    ));

    // The workspace's own object limit: raised without anything restarting.
    c.update_user(
        "qa",
        &UserPatch {
            quota_bytes: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let used = c.get_volume("qa-ws").await.unwrap().usage_objects.unwrap();
    for _ in used..10 {
        c.charge_usage("qa-ws", 1, 1).await.unwrap();
    }
    match c.charge_usage("qa-ws", 1, 1).await {
        Err(CatalogError::QuotaExceeded {
            scope, what, limit, ..
        }) => assert_eq!(
            (scope.to_string().as_str(), what, limit),
            ("workspace `qa-ws`", "objects", 10)
        ),
        other => panic!("{other:?}"),
    }
    let patch = VolumePatch {
        quota_objects: Some(Some(11)),
        ..Default::default()
    };
    c.update_volume("qa-ws", patch).await.unwrap();
    c.charge_usage("qa-ws", 1, 1).await.unwrap();

    // A scan recounts; an owner change and a removal move the user's usage with the volume.
    c.record_scan("qa-ws", 3, 300).await.unwrap();
    let v = c.get_volume("qa-ws").await.unwrap();
    assert_eq!((v.usage_objects, v.usage_bytes), (Some(3), Some(300)));
    let other = c.get_volume("qa-other").await.unwrap().usage_bytes.unwrap();
    assert_eq!(c.get_user("qa").await.unwrap().usage_bytes, 300 + other);
    c.create_user("qb", "", false).await.unwrap();
    let patch = VolumePatch {
        owner: Some(Some("qb".into())),
        ..Default::default()
    };
    c.update_volume("qa-ws", patch).await.unwrap();
    assert_eq!(c.get_user("qa").await.unwrap().usage_bytes, other);
    assert_eq!(c.get_user("qb").await.unwrap().usage_bytes, 300);
    c.delete_volume("qa-ws").await.unwrap();
    assert_eq!(c.get_user("qb").await.unwrap().usage_bytes, 0);
    // Archives are not counted.
    c.create_volume(NewVolume {
        id: "qa-archive".into(),
        backend: "local".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        c.charge_usage("qa-archive", 5, 1).await.unwrap(),
        Usage::default()
    );
    assert_eq!(c.get_volume("qa-archive").await.unwrap().usage_bytes, None);
}

/// Great-circle distance, degrees (the test's own, to check the index's).
fn sep((a1, d1): (f64, f64), (a2, d2): (f64, f64)) -> f64 {
    let (a1, d1, a2, d2) = (
        a1.to_radians(),
        d1.to_radians(),
        a2.to_radians(),
        d2.to_radians(),
    );
    let h = ((d2 - d1) / 2.0).sin().powi(2) + d1.cos() * d2.cos() * ((a2 - a1) / 2.0).sin().powi(2);
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees()
}

fn science(volume: &str, key: &str, ra: f64, dec: f64, fov: f64, t: f64) -> ScienceObject {
    ScienceObject {
        volume: volume.into(),
        key: key.into(),
        etag: Some(format!("\"{key}\"")),
        size: 2880,
        indexed_at: Timestamp::now(),
        dataproduct_type: Some("image".into()),
        calib_level: Some(2),
        obs_id: Some(key.into()),
        target_name: None,
        s_ra: Some(ra),
        s_dec: Some(dec),
        s_fov: Some(fov),
        s_region: Some(vec![[ra, dec]; 4]),
        t_min: Some(t),
        t_max: Some(t + 0.01),
        t_exptime: Some(864.0),
        em_min: None,
        em_max: None,
        instrument_name: Some("CAM".into()),
        facility_name: Some("SCOPE".into()),
        hdus: serde_json::json!([{"index": 0, "kind": "image", "shape": [10, 10]}]),
        notes: vec![],
    }
}

async fn the_science_index_finds_what_overlaps_and_nothing_else(c: &Catalog) {
    for v in ["sky-a", "sky-b"] {
        c.create_volume(new_volume(v)).await.unwrap();
    }
    // A grid over the whole sky, fields of 0.2°, plus objects at RA 0/360, at the poles, wide
    // ones, and one without a position.
    let mut all = Vec::new();
    let mut n = 0;
    for dec10 in (-89..=89).step_by(7) {
        for ra10 in (0..360).step_by(9) {
            let (ra, dec) = (
                ra10 as f64 + 0.37 * (dec10 as f64).abs() % 1.0,
                dec10 as f64 + 0.13,
            );
            let volume = if n % 2 == 0 { "sky-a" } else { "sky-b" };
            all.push(science(
                volume,
                &format!("grid/{n:05}.fits"),
                ra,
                dec,
                0.2,
                60000.0 + n as f64,
            ));
            n += 1;
        }
    }
    all.push(science(
        "sky-a",
        "edge/ra-359.9.fits",
        359.95,
        10.0,
        0.1,
        60000.0,
    ));
    all.push(science(
        "sky-a",
        "edge/ra-0.05.fits",
        0.05,
        10.0,
        0.1,
        60000.0,
    ));
    all.push(science(
        "sky-a",
        "edge/north-pole.fits",
        123.0,
        89.97,
        0.1,
        60000.0,
    ));
    all.push(science(
        "sky-b",
        "wide/all-sky.fits",
        180.0,
        0.0,
        360.0,
        60000.0,
    ));
    all.push(science(
        "sky-b",
        "wide/mosaic.fits",
        40.0,
        -30.0,
        8.0,
        60000.0,
    ));
    let mut nowhere = science("sky-b", "table/events.fits", 0.0, 0.0, 0.0, 60000.0);
    nowhere.s_ra = None;
    nowhere.s_dec = None;
    nowhere.s_fov = None;
    nowhere.s_region = None;
    nowhere.notes = vec!["no image HDU".into()];
    all.push(nowhere);
    c.index_objects(&all).await.unwrap();

    let brute = |region: &dyn Fn(&ScienceObject) -> bool| {
        let mut want: Vec<String> = all
            .iter()
            .filter(|o| o.s_ra.is_some() && region(o))
            .map(|o| format!("{}/{}", o.volume, o.key))
            .collect();
        want.sort();
        want
    };
    let got = |found: Vec<ScienceObject>| {
        found
            .iter()
            .map(|o| format!("{}/{}", o.volume, o.key))
            .collect::<Vec<_>>()
    };
    // Cones: small, across RA 0, at the pole, large.
    for (ra, dec, radius) in [
        (45.2, 14.2, 2.0),
        (0.0, 10.0, 0.2),
        (300.0, 89.9, 0.5),
        (200.0, -40.0, 15.0),
        (40.0, -33.0, 0.5),
    ] {
        let q = ScienceQuery {
            sky: Some(SkyRegion::Cone { ra, dec, radius }),
            limit: 100_000,
            ..Default::default()
        };
        let want = brute(&|o| {
            sep((o.s_ra.unwrap(), o.s_dec.unwrap()), (ra, dec)) <= radius + o.s_fov.unwrap() / 2.0
        });
        let found = got(c.search_science(&q).await.unwrap());
        assert_eq!(found, want, "cone ({ra}, {dec}) r {radius}");
        assert!(
            !found.is_empty(),
            "cone ({ra}, {dec}) r {radius} found nothing to compare"
        );
    }
    // A cone across RA 0 finds both sides; the all-sky map is everywhere.
    let q = ScienceQuery {
        sky: Some(SkyRegion::Cone {
            ra: 0.0,
            dec: 10.0,
            radius: 0.2,
        }),
        limit: 100,
        ..Default::default()
    };
    let found = got(c.search_science(&q).await.unwrap());
    assert!(
        found.contains(&"sky-a/edge/ra-359.9.fits".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"sky-a/edge/ra-0.05.fits".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"sky-b/wide/all-sky.fits".to_string()),
        "{found:?}"
    );
    // A box across RA 0.
    let q = ScienceQuery {
        sky: Some(SkyRegion::Box {
            ra_min: 359.0,
            ra_max: 1.0,
            dec_min: 9.0,
            dec_max: 11.0,
        }),
        limit: 100,
        ..Default::default()
    };
    let found = got(c.search_science(&q).await.unwrap());
    assert!(
        found.contains(&"sky-a/edge/ra-359.9.fits".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"sky-a/edge/ra-0.05.fits".to_string()),
        "{found:?}"
    );
    let want = brute(&|o| {
        let (ra, dec, r) = (o.s_ra.unwrap(), o.s_dec.unwrap(), o.s_fov.unwrap() / 2.0);
        if dec < 9.0 - r || dec > 11.0 + r {
            return false;
        }
        let w = if r >= 90.0 {
            180.0
        } else {
            (r.to_radians().sin() / dec.to_radians().cos())
                .min(1.0)
                .asin()
                .to_degrees()
        };
        // Distance in RA from the box [359, 361], both ways round.
        let off = [(ra - 359.0).rem_euclid(360.0), (1.0 - ra).rem_euclid(360.0)];
        off[0] <= 2.0 + w || off[1] <= 2.0 + w
    });
    assert_eq!(found, want, "box across RA 0");
    // Volumes the caller may read, time, and pages.
    let q = ScienceQuery {
        volumes: Some(vec!["sky-a".into()]),
        time: Some((60010.0, 60020.005)),
        limit: 100,
        ..Default::default()
    };
    let found = c.search_science(&q).await.unwrap();
    assert!(found.iter().all(|o| o.volume == "sky-a"));
    let want: Vec<String> = all
        .iter()
        .filter(|o| {
            o.volume == "sky-a" && o.t_min.unwrap() <= 60020.005 && o.t_max.unwrap() >= 60010.0
        })
        .map(|o| o.key.clone())
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(
        found.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        want
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let q = ScienceQuery {
            volumes: Some(vec!["sky-b".into()]),
            limit: 97,
            after: after.clone(),
            ..Default::default()
        };
        let page = c.search_science(&q).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|o| (o.volume.clone(), o.key.clone()));
        paged.extend(page.into_iter().map(|o| o.key));
    }
    let total_b = all.iter().filter(|o| o.volume == "sky-b").count();
    assert_eq!(
        paged.len(),
        total_b,
        "every sky-b object, once, over the pages"
    );
    // Bad regions are refused by name.
    let bad = ScienceQuery {
        sky: Some(SkyRegion::Cone {
            ra: 0.0,
            dec: 100.0,
            radius: 1.0,
        }),
        limit: 10,
        ..Default::default()
    };
    assert!(matches!(
        c.search_science(&bad).await,
        Err(CatalogError::Invalid { field: "sky", .. })
    ));
    // One object read back whole; a re-index replaces, a prune drops what was not seen again.
    let one = c
        .science_object("sky-b", "table/events.fits")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        one,
        all.iter()
            .find(|o| o.key == "table/events.fits")
            .unwrap()
            .clone()
    );
    let since = Timestamp(Timestamp::now().0 + 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut again = science("sky-a", "edge/ra-0.05.fits", 0.05, 10.0, 0.1, 61000.0);
    again.indexed_at = Timestamp::now();
    c.index_objects(&[again.clone()]).await.unwrap();
    let pruned = c.prune_science("sky-a", since).await.unwrap();
    assert_eq!(
        pruned as usize,
        all.iter().filter(|o| o.volume == "sky-a").count() - 1
    );
    assert_eq!(
        c.science_object("sky-a", "edge/ra-0.05.fits")
            .await
            .unwrap(),
        Some(again)
    );
    // The pass recorded the volume's extent: the one object left, padded by half its field.
    let extents = c
        .science_extents(&["sky-a".into(), "sky-b".into()])
        .await
        .unwrap();
    let a = &extents["sky-a"];
    assert_eq!(a.objects, 1);
    let [w, s, e, n] = a.bbox.unwrap();
    assert!((w - 0.0).abs() < 1e-9 && (e - 0.1).abs() < 1e-9, "{a:?}");
    assert!((s - 9.95).abs() < 1e-9 && (n - 10.05).abs() < 1e-9, "{a:?}");
    assert_eq!((a.t_min, a.t_max), (Some(61000.0), Some(61000.01)));
    assert!(
        !extents.contains_key("sky-b"),
        "sky-b had no pass yet: {extents:?}"
    );
    // RA above 180 is longitude below 0.
    let since = Timestamp(Timestamp::now().0 + 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut far = science("sky-b", "far.fits", 350.0, -5.0, 0.0, 60000.0);
    far.indexed_at = Timestamp::now();
    c.index_objects(&[far]).await.unwrap();
    c.prune_science("sky-b", since).await.unwrap();
    let b = c.science_extents(&["sky-b".into()]).await.unwrap()["sky-b"].clone();
    assert_eq!(b.bbox, Some([-10.0, -5.0, -10.0, -5.0]));
    // Deleting a volume drops its index.
    c.delete_volume("sky-b").await.unwrap();
    assert!(
        c.science_extents(&["sky-b".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.science_object("sky-b", "table/events.fits")
            .await
            .unwrap()
            .is_none()
    );
}
