//! Platform identity on the real binary.
//!
//! - An OpenID Connect issuer served by the test over real HTTP (discovery document and key
//!   set), signing tokens with a test RSA key that is rotated mid-test.
//! - boto3's STS client trades a token for temporary S3 credentials at the gateway
//!   (`AssumeRoleWithWebIdentity`), uses them for a GET, is refused without the session token
//!   and after they expire; tokens from an unknown issuer or for another audience are refused.
//! - The HTTP API takes the issuer's tokens as bearer tokens, with the groups claim applied.
//! - Scoped keys and tokens (read-only, limited to volumes, expiring), made with the CLI.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use archway_dataplane::object_store::path::Path as Key;
use archway_dataplane::object_store::{ObjectStoreExt, PutPayload};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{BIN, Gateway, aws, free_port, records_until, s3_client, text};
use serde_json::{Value, json};

fn python() -> String {
    std::env::var("ARCHWAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A signing key of the test issuer.
struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        SigningKey {
            kid: kid.into(),
            pair: KeyPair::generate(KeySize::Rsa2048).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let c = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
               "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)})
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The test's OpenID Connect issuer: `/realms/esa/.well-known/openid-configuration` and the
/// key set it names, served on loopback. `keys` is what the key set holds now.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

async fn start_issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/realms/esa", listener.local_addr().unwrap());
    let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
    let fetches: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let discovery = json!({
        "issuer": url,
        "jwks_uri": format!("{url}/protocol/openid-connect/certs"),
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new()
        .route(
            "/realms/esa/.well-known/openid-configuration",
            axum::routing::get(move || {
                let d = discovery.clone();
                async move { axum::Json(d) }
            }),
        )
        .route(
            "/realms/esa/protocol/openid-connect/certs",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::Json(json!({"keys": *k.lock().unwrap()}))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer { url, keys, fetches }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims for `user` in `groups` from `issuer` for `audience`, valid for five minutes.
fn claims(issuer: &str, audience: &str, user: &str, groups: &[&str]) -> Value {
    json!({"iss": issuer, "aud": audience, "sub": format!("sub-{user}"),
           "preferred_username": user, "groups": groups,
           "iat": now() - 5, "nbf": now() - 5, "exp": now() + 300})
}

/// boto3: `assume_role_with_web_identity` at the gateway; with the credentials, a GET of
/// BUCKET/KEY, the same GET without the session token, and (if WAIT) the GET again after the
/// credentials expired. Prints one JSON line. With MODE `refuse`, prints the STS error code.
const BOTO3: &str = r#"
import boto3, botocore, datetime, hashlib, json, sys, time
from botocore.config import Config
mode, endpoint, token, bucket, key = sys.argv[1:6]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1", config=cfg)
def code(fn):
    try:
        fn()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
if mode == "refuse":
    print(json.dumps({"code": code(lambda: sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::000000000000:role/datalab", RoleSessionName="jupyter",
        WebIdentityToken=token))}))
    sys.exit(0)
r = sts.assume_role_with_web_identity(
    RoleArn="arn:aws:iam::000000000000:role/datalab", RoleSessionName="jupyter-alice",
    WebIdentityToken=token, DurationSeconds=900)
c = r["Credentials"]
def s3(session=True):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=cfg,
        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"] if session else None)
body = s3().get_object(Bucket=bucket, Key=key)["Body"].read()
out = {"access_key_id": c["AccessKeyId"], "arn": r["AssumedRoleUser"]["Arn"],
       "provider": r.get("Provider"), "subject": r.get("SubjectFromWebIdentityToken"),
       "lifetime": (c["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds(),
       "sha256": hashlib.sha256(body).hexdigest(),
       "without_session_token": code(lambda: s3(False).get_object(Bucket=bucket, Key=key))}
if mode == "wait":
    time.sleep(max(0.0, (c["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.5)
    out["after_expiry"] = code(lambda: s3().get_object(Bucket=bucket, Key=key))
print(json.dumps(out))
"#;

fn boto3(mode: &str, url: &str, token: &str, bucket: &str, key: &str) -> Value {
    let out = Command::new(python())
        .args(["-c", BOTO3, mode, url, token, bucket, key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 ({mode}) failed (is boto3 installed? scripts/test-services sets \
         ARCHWAY_TEST_PYTHON):\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A gateway over `dir` configured to trust `issuer`, with the volume `sky` over a folder
/// holding `obs/field.fits`, readable by the group `xmm`, and its audit trail in
/// `dir/audit.jsonl`.
async fn gateway_trusting(dir: &Path, issuer: &str, sts_max: &str) -> (Gateway, Vec<u8>) {
    let files = dir.join("sky");
    std::fs::create_dir_all(files.join("obs")).unwrap();
    let content: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(files.join("obs/field.fits"), &content).unwrap();
    let config = dir.join("archway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[audit]
path = "{audit}"

[auth]
sts_max_duration = "{sts_max}"

[[auth.oidc]]
issuer = "{issuer}"
audience = "archway"
groups_claim = "groups"
create_users = true

[backends.sky]
url = "file://{files}"

[[volumes]]
id = "sky"
title = "Sky survey"
backend = "sky"
kind = "archive"
"#,
            files = files.display(),
            audit = dir.join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let gw = Gateway::start(&dir.join("data"), &["--config", config.to_str().unwrap()]).await;
    gw.catalog(&["group", "add", "xmm"]);
    gw.catalog(&["grant", "add", "group:xmm", "sky", "read"]);
    (gw, content)
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_trades_an_oidc_token_for_temporary_credentials_that_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = start_issuer().await;
    let k1 = SigningKey::new("k1");
    *issuer.keys.lock().unwrap() = vec![k1.jwk()];
    let (gw, content) = gateway_trusting(tmp.path(), &issuer.url, "5s").await;

    // A token for a user Archway has not seen: created on first sign-in, in group xmm.
    let token = k1.sign(&claims(
        &issuer.url,
        "archway",
        "alice",
        &["xmm", "unknown-group"],
    ));
    let got = tokio::task::spawn_blocking({
        let (url, token) = (gw.url.clone(), token.clone());
        move || boto3("wait", &url, &token, "sky", "obs/field.fits")
    })
    .await
    .unwrap();
    use sha2::Digest;
    assert_eq!(
        got["sha256"],
        hex::encode(sha2::Sha256::digest(&content)),
        "{got}"
    );
    assert!(got["access_key_id"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(
        got["arn"],
        "arn:aws:sts::archway:assumed-role/datalab/jupyter-alice"
    );
    assert_eq!(got["provider"], issuer.url.as_str());
    assert_eq!(got["subject"], "sub-alice");
    // DurationSeconds=900 was cut to [auth] sts_max_duration = 5s.
    let lifetime = got["lifetime"].as_f64().unwrap();
    assert!(lifetime <= 5.0 && lifetime > 0.0, "{got}");
    assert_eq!(got["without_session_token"], "InvalidToken", "{got}");
    assert_eq!(got["after_expiry"], "ExpiredToken", "{got}");
    let user = gw.catalog(&["user", "show", "alice"]);
    assert_eq!(user["groups"], json!(["xmm"]), "{user}");

    // Refused: an unknown issuer, another audience, an expired token, a forged signature.
    let evil = SigningKey::new("k1");
    let refusals = [
        k1.sign(&claims("https://sso.evil.example", "archway", "alice", &[])),
        k1.sign(&claims(&issuer.url, "another-client", "alice", &[])),
        k1.sign(&{
            let mut c = claims(&issuer.url, "archway", "alice", &[]);
            c["exp"] = json!(now() - 3600);
            c
        }),
        evil.sign(&claims(&issuer.url, "archway", "alice", &[])),
    ];
    let codes: Vec<Value> = refusals
        .iter()
        .map(|t| boto3("refuse", &gw.url, t, "", "")["code"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![
            json!("InvalidIdentityToken"),
            json!("InvalidIdentityToken"),
            json!("ExpiredTokenException"),
            json!("InvalidIdentityToken"),
        ]
    );
    // A user claim Archway cannot take as a user name.
    let odd = k1.sign(&claims(&issuer.url, "archway", "Alice Smith", &[]));
    assert_eq!(
        boto3("refuse", &gw.url, &odd, "", "")["code"],
        "IDPRejectedClaim"
    );

    // Each refused credential is counted by its reason, though S3 and STS answer them 400.
    let metrics = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "archway_requests_denied_total{front=\"s3\",reason=\"InvalidToken\"} 1",
        "archway_requests_denied_total{front=\"s3\",reason=\"ExpiredToken\"} 1",
        "archway_requests_denied_total{front=\"s3\",reason=\"InvalidIdentityToken\"} 3",
        "archway_requests_denied_total{front=\"s3\",reason=\"ExpiredTokenException\"} 1",
        "archway_requests_denied_total{front=\"s3\",reason=\"IDPRejectedClaim\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }

    // The trail has the exchange as alice through OIDC, her GET with the session key, and the
    // refusals without the session token and after expiry.
    let trail = tmp.path().join("audit.jsonl");
    let find = |records: &[Value], op: &str, auth: &str, status: u64| {
        records
            .iter()
            .find(|r| r["op"] == op && r["auth"] == auth && r["status"] == status)
            .cloned()
    };
    let records = records_until(&trail, |r| {
        r.iter().filter(|r| r["status"] == 400).count() >= 6
            && r.iter().filter(|r| r["status"] == 403).count() >= 1
    })
    .await;
    let exchange = find(&records, "AssumeRoleWithWebIdentity", "oidc", 200).unwrap();
    let refused = records
        .iter()
        .filter(|r| r["op"] == "AssumeRoleWithWebIdentity" && r["status"] == 400)
        .collect::<Vec<_>>();
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|r| r["auth"] == "oidc" && r["principal"].is_null()),
        "{refused:?}"
    );
    assert_eq!(exchange["principal"], "alice", "{exchange}");
    assert_eq!(exchange["front"], "s3", "{exchange}");
    let get = find(&records, "GetObject", "sigv4-session", 200).unwrap();
    assert_eq!(
        (
            &get["principal"],
            &get["volume"],
            &get["key"],
            &get["bytes_out"]
        ),
        (
            &json!("alice"),
            &json!("sky"),
            &json!("obs/field.fits"),
            &json!(content.len())
        ),
        "{get}"
    );
    let written = std::fs::read_to_string(&trail).unwrap();
    assert!(
        !written.contains(&token[token.len() - 40..]),
        "the identity token reached the trail"
    );
    eprintln!("sample audit records:\n{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_takes_oidc_bearer_tokens_across_a_key_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = start_issuer().await;
    let (k1, k2) = (SigningKey::new("k1"), SigningKey::new("k2"));
    *issuer.keys.lock().unwrap() = vec![k1.jwk()];
    let (gw, _) = gateway_trusting(tmp.path(), &issuer.url, "1h").await;
    let http = reqwest::Client::new();
    let volumes = |token: String| {
        let (http, url) = (http.clone(), gw.url.clone());
        async move {
            let r = http
                .get(format!("{url}/api/v1/volumes"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, body) = volumes(k1.sign(&claims(&issuer.url, "archway", "bob", &["xmm"]))).await;
    assert_eq!(status, 200, "{body}");
    assert!(ids(&body).contains(&"sky".to_string()), "{body}");
    // The groups claim decides memberships: without xmm, bob no longer sees sky.
    let (status, body) = volumes(k1.sign(&claims(&issuer.url, "archway", "bob", &[]))).await;
    assert_eq!(status, 200, "{body}");
    assert!(!ids(&body).contains(&"sky".to_string()), "{body}");

    // The issuer rotates its keys: k2 replaces k1. A k2 token fetches the set again.
    let fetched_before = issuer.fetches.load(std::sync::atomic::Ordering::SeqCst);
    *issuer.keys.lock().unwrap() = vec![k2.jwk()];
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = volumes(k2.sign(&claims(&issuer.url, "archway", "bob", &["xmm"]))).await;
    assert_eq!(status, 200, "{body}");
    assert!(ids(&body).contains(&"sky".to_string()), "{body}");
    assert_eq!(
        issuer.fetches.load(std::sync::atomic::Ordering::SeqCst),
        fetched_before + 1
    );
    // k1 is gone from the set: its tokens are refused now.
    let (status, body) = volumes(k1.sign(&claims(&issuer.url, "archway", "bob", &["xmm"]))).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"),
        "{body}"
    );
    let (status, body) =
        volumes(k2.sign(&claims(&issuer.url, "someone-else", "bob", &["xmm"]))).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audience"),
        "{body}"
    );

    // The trail names bob and how he signed in; the refused tokens are recorded as tried
    // OpenID Connect sign-ins of nobody.
    let records = records_until(&tmp.path().join("audit.jsonl"), |r| {
        r.iter()
            .filter(|r| r["front"] == "api" && r["auth"] == "oidc")
            .count()
            >= 5
    })
    .await;
    let oidc: Vec<_> = records
        .iter()
        .filter(|r| r["front"] == "api" && r["auth"] == "oidc")
        .map(|r| (r["principal"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        oidc,
        vec![
            (json!("bob"), json!(200)),
            (json!("bob"), json!(200)),
            (json!("bob"), json!(200)),
            (Value::Null, json!(401)),
            (Value::Null, json!(401)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn archway_mount_reads_with_aws_cli_temporary_credentials_and_an_oidc_token() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = start_issuer().await;
    let k1 = SigningKey::new("k1");
    *issuer.keys.lock().unwrap() = vec![k1.jwk()];
    let (gw, content) = gateway_trusting(tmp.path(), &issuer.url, "1h").await;
    let token = k1.sign(&claims(&issuer.url, "archway", "carol", &["xmm"]));

    let answer = aws(
        &gw.url,
        None,
        &[
            "sts",
            "assume-role-with-web-identity",
            "--role-arn",
            "arn:aws:iam::000000000000:role/datalab",
            "--role-session-name",
            "mount",
            "--web-identity-token",
            &token,
        ],
    );
    let c = &answer["Credentials"];
    let (id, secret, session) = (
        c["AccessKeyId"].as_str().unwrap(),
        c["SecretAccessKey"].as_str().unwrap(),
        c["SessionToken"].as_str().unwrap(),
    );

    // The mount signs with the temporary key and its session token, and asks the catalogue
    // which volumes to show with the OpenID Connect token.
    let mp = tmp.path().join("mnt");
    let mut m = common::mount::Mount::start(
        &mp,
        &[
            "--gateway",
            &gw.url,
            "--access-key-id",
            id,
            "--secret-access-key",
            secret,
            "--session-token",
            session,
            "--token",
            &token,
        ],
    );
    let read = tokio::task::spawn_blocking({
        let f = mp.join("sky/obs/field.fits");
        move || std::fs::read(f)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        read == content,
        "the mount read other bytes; log:\n{}",
        m.log()
    );
    assert!(m.signal("-TERM").success(), "{}", m.log());

    // Without the session token the same key is refused.
    let store = s3_client(&gw.url, "sky", id, secret);
    let err = store
        .get(&Key::from("obs/field.fits"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("InvalidToken"), "{err}");
}

/// `archway catalog ARGS` against `gw` with `token`; the JSON it printed, or the failure.
fn cli(gw: &Gateway, token: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(BIN)
        .args(["catalog", "--gateway", &gw.url, "--token", token, "--json"])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
    } else {
        Err(text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scoped_keys_and_tokens_read_only_limited_to_volumes_and_expiring() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = Gateway::start_on(&tmp.path().join("data"), free_port(), &[]).await;
    let admin = gw.credential("archway_api_token");

    // A read-only key of the admin, limited to the demo volume.
    let key = cli(
        &gw,
        &admin,
        &[
            "user",
            "key",
            "create",
            "admin",
            "--read-only",
            "--volume",
            "demo",
            "--ttl",
            "1h",
        ],
    )
    .unwrap();
    assert_eq!(key["read_only"], true, "{key}");
    assert_eq!(key["volumes"], json!(["demo"]), "{key}");
    assert!(key["expires_at"].is_string(), "{key}");
    let (id, secret) = (
        key["access_key_id"].as_str().unwrap(),
        key["secret_access_key"].as_str().unwrap(),
    );
    let listed = cli(&gw, &admin, &["user", "key", "list", "admin"]).unwrap();
    let shown = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["access_key_id"] == id)
        .unwrap();
    assert_eq!(shown["read_only"], true);
    assert_eq!(shown["volumes"], json!(["demo"]));
    assert!(shown.get("secret_access_key").is_none());

    let demo = s3_client(&gw.url, "demo", id, secret);
    let got = demo.get(&Key::from("images/field1.fits")).await.unwrap();
    assert!(!got.bytes().await.unwrap().is_empty());
    let err = demo
        .put(&Key::from("new.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");
    // The admin's workspace is outside the key's volumes (and not public).
    let ws = s3_client(&gw.url, "workspace", id, secret);
    let err = ws
        .put(&Key::from("x.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");
    // The same user's full key writes there.
    let full = s3_client(
        &gw.url,
        "workspace",
        &gw.credential("aws_access_key_id"),
        &gw.credential("aws_secret_access_key"),
    );
    full.put(&Key::from("x.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    // A read-only token reads the catalogue and changes nothing, nor mints wider credentials.
    let token = cli(
        &gw,
        &admin,
        &[
            "user",
            "token",
            "create",
            "admin",
            "--read-only",
            "--name",
            "viewer",
        ],
    )
    .unwrap();
    assert_eq!(token["read_only"], true, "{token}");
    let viewer = token["secret"].as_str().unwrap();
    let volumes = cli(&gw, viewer, &["volume", "list"]).unwrap();
    assert!(volumes.to_string().contains("demo"));
    let err = cli(&gw, viewer, &["user", "add", "mallory"]).unwrap_err();
    assert!(err.contains("403") || err.contains("admin role"), "{err}");
    let err = cli(&gw, viewer, &["user", "key", "create", "admin"]).unwrap_err();
    assert!(err.contains("limited to volumes"), "{err}");
    let listed = cli(&gw, &admin, &["user", "token", "list", "admin"]).unwrap();
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "viewer" && t["read_only"] == true),
        "{listed}"
    );

    // An expiring key works until its TTL, then is refused.
    let short = cli(
        &gw,
        &admin,
        &["user", "key", "create", "admin", "--ttl", "2s"],
    )
    .unwrap();
    let store = s3_client(
        &gw.url,
        "demo",
        short["access_key_id"].as_str().unwrap(),
        short["secret_access_key"].as_str().unwrap(),
    );
    store.head(&Key::from("images/field1.fits")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = store
        .get(&Key::from("images/field1.fits"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("403") || err.contains("InvalidAccessKeyId"),
        "{err}"
    );

    // Bad scopes are refused and name the problem.
    let err = cli(
        &gw,
        &admin,
        &["user", "key", "create", "admin", "--volume", "Not_A_Bucket"],
    )
    .unwrap_err();
    assert!(err.contains("Not_A_Bucket"), "{err}");
    // A well-formed name of no volume: refused, rather than a key that reaches nothing.
    let err = cli(
        &gw,
        &admin,
        &[
            "user",
            "token",
            "create",
            "admin",
            "--volume",
            "no-such-volume",
        ],
    )
    .unwrap_err();
    assert!(err.contains("no-such-volume"), "{err}");
    let err = cli(
        &gw,
        &admin,
        &["user", "token", "create", "admin", "--ttl", "0s"],
    )
    .unwrap_err();
    assert!(err.contains("ttl") || err.contains("lifetime"), "{err}");
}
