//! A federated catalogue with three gateways on loopback: A holds the data; B links A with the
//! credentials of a service user A granted one volume; C links B. `archway catalog peer add`
//! makes the peer's volumes appear as `NAME.VOLUME`, naming the site that holds the data and
//! the link; search spans the sites; reads and reductions through two links reach A's bytes;
//! a refresh adds and removes volumes as the peer does; and nobody reaches through a link
//! what the link's owner was not granted, or what this site did not grant them.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::process::Command;

use archway_dataplane::object_store::ObjectStoreExt;
use archway_dataplane::object_store::path::Path as Key;
use common::{BIN, Gateway, free_port, s3_client, text};
use serde_json::{Value, json};

/// `archway catalog --json ARGS` against `gw` with `token`: the JSON, or the failure.
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

/// Links `peer` from `gw` as `name` with the credentials `(key, secret, token)`.
fn link(gw: &Gateway, name: &str, peer: &Gateway, creds: (&str, &str, &str)) -> Value {
    gw.catalog(&[
        "peer",
        "add",
        name,
        &peer.url,
        "--access-key-id",
        creds.0,
        "--secret-access-key",
        creds.1,
        "--token",
        creds.2,
    ])
}

/// Signs in to `gw`'s web pages with `token` and GETs `path` with the session: the body.
async fn ui_get(gw: &Gateway, token: &str, path: &str) -> Vec<u8> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{}/ui/login", gw.url))
        .send()
        .await
        .unwrap();
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with(name))
            .unwrap()
    };
    let login_cookie = cookie_of(&form, "archway_login=");
    let page = form.text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + 32];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", token), ("csrf", csrf)])
        .finish();
    let signed = http
        .post(format!("{}/ui/login", gw.url))
        .header("Cookie", login_cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let session = cookie_of(&signed, "archway_session=");
    let r = http
        .get(format!("{}{path}", gw.url))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.unwrap().to_vec()
}

fn ids(list: &Value) -> Vec<String> {
    list["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn linked_catalogues_span_sites_and_never_widen_access() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = Gateway::start_on(&d.join("a"), free_port(), &[]).await;
    let b = Gateway::start_on(&d.join("b"), free_port(), &[]).await;
    let c = Gateway::start_on(&d.join("c"), free_port(), &[]).await;

    // At A: a service user for B, granted `demo` only (not the admin's `workspace`).
    a.catalog(&["user", "add", "svc-b"]);
    a.catalog(&["grant", "add", "user:svc-b", "demo", "read"]);
    let key = a.catalog(&["user", "key", "create", "svc-b"]);
    let token = a.catalog(&["user", "token", "create", "svc-b", "--name", "link"]);
    let svc_b = (
        key["access_key_id"].as_str().unwrap().to_string(),
        key["secret_access_key"].as_str().unwrap().to_string(),
        token["secret"].as_str().unwrap().to_string(),
    );

    // B links A: A's `demo` appears as `a.demo`, naming A and the link; A's workspace does not.
    let peer = link(&b, "a", &a, (&svc_b.0, &svc_b.1, &svc_b.2));
    assert_eq!(peer["name"], "a", "{peer}");
    assert!(
        peer["refreshed_at"].is_string() && peer["last_error"].is_null(),
        "{peer}"
    );
    let at_b = b.catalog(&["volume", "list"]);
    assert!(ids(&at_b).contains(&"a.demo".to_string()), "{at_b}");
    assert!(!ids(&at_b).contains(&"a.workspace".to_string()), "{at_b}");
    let linked = b.catalog(&["volume", "show", "a.demo"]);
    assert_eq!(linked["title"], "Archway demo data");
    assert_eq!(linked["extra"]["archway.site"], a.url.as_str());
    assert_eq!(linked["extra"]["archway.link"], "a");
    assert_eq!(linked["read_only"], true);
    // A's count of the volume's objects, and when it counted them, come along.
    let at_a = a.catalog(&["volume", "show", "demo"]);
    assert_eq!(linked["last_scan"], at_a["last_scan"], "{linked}");
    assert_eq!(linked["last_scan"]["objects"], 4, "{linked}");

    // C links B with B's admin: A's volume through B, as `b.a.demo`, still naming A.
    let admin_b = (
        b.credential("aws_access_key_id"),
        b.credential("aws_secret_access_key"),
        b.credential("archway_api_token"),
    );
    link(&c, "b", &b, (&admin_b.0, &admin_b.1, &admin_b.2));
    let found = c.catalog(&["volume", "search", "demo"]);
    let hit = found["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "b.a.demo")
        .unwrap_or_else(|| panic!("no b.a.demo in {found}"))
        .clone();
    assert_eq!(hit["extra"]["archway.site"], a.url.as_str(), "{hit}");
    assert_eq!(hit["extra"]["archway.link"], "b", "{hit}");
    // B's own demo, linked too, names B.
    let own = found["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "b.demo")
        .unwrap_or_else(|| panic!("no b.demo in {found}"))
        .clone();
    assert_eq!(own["extra"]["archway.site"], b.url.as_str(), "{own}");
    // The table form names the site and the link.
    let table = Command::new(BIN)
        .args(["catalog", "--gateway", &c.url, "--token"])
        .arg(c.credential("archway_api_token"))
        .args(["volume", "search", "demo"])
        .output()
        .unwrap();
    let table = text(&table.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("b.a.demo")
            && l.split_whitespace().nth(3) == Some("4")
            && l.contains(&format!("{} (b)", a.url))),
        "{table}"
    );

    // Bytes through two links are A's; a reduction through them runs at A.
    let original = std::fs::read(d.join("a/demo/images/field1.fits")).unwrap();
    let store = s3_client(
        &c.url,
        "b.a.demo",
        &c.credential("aws_access_key_id"),
        &c.credential("aws_secret_access_key"),
    );
    let got = store
        .get(&Key::from("images/field1.fits"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == original, "other bytes through the links");
    let http = reqwest::Client::new();
    let reduced: Value = http
        .post(format!("{}/api/v1/reduce", c.url))
        .bearer_auth(c.credential("archway_api_token"))
        .json(&json!({"volume": "b.a.demo", "key": "images/field1.fits", "op": "mean"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reduced["site"], a.url.as_str(), "{reduced}");
    assert_eq!(reduced["sites"].as_array().unwrap().len(), 2, "{reduced}");

    // Scanned at C, the linked volume joins C's science index (headers read through the
    // links); STAC names the site that holds it; the web pages' quick-look is binned at A.
    let scanned = c.catalog(&["volume", "scan", "b.a.demo"]);
    assert_eq!(scanned["science"]["with_position"], 2, "{scanned}");
    let admin_c = c.credential("archway_api_token");
    let (status, found) = c
        .get_json("/api/v1/science?ra=202.47&dec=47.19&radius=0.1", &admin_c)
        .await;
    assert_eq!(status, 200, "{found}");
    assert!(
        found["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["volume"] == "b.a.demo" && o["key"] == "images/field1.fits"),
        "{found}"
    );
    let (status, collection) = c.get_json("/stac/collections/b.a.demo", &admin_c).await;
    assert_eq!(status, 200, "{collection}");
    assert_eq!(collection["archway:site"], a.url.as_str(), "{collection}");
    assert_eq!(collection["archway:link"], "b", "{collection}");
    let quicklook = ui_get(
        &c,
        &admin_c,
        "/ui/volumes/b.a.demo/quicklook.png?key=images/field1.fits",
    )
    .await;
    assert_eq!(&quicklook[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let a_log = std::fs::read_to_string(&a.stderr).unwrap();
    assert!(
        a_log
            .lines()
            .any(|l| l.contains("reduced") && l.contains("bin")),
        "the quick-look was not binned at A:\n{a_log}"
    );

    // C's users reach a linked volume only with C's grant; writes stay at the data's site.
    c.catalog(&["user", "add", "carol"]);
    let carol = c.catalog(&["user", "token", "create", "carol"]);
    let carol = carol["secret"].as_str().unwrap();
    let err = cli(&c, carol, &["volume", "show", "b.a.demo"]).unwrap_err();
    assert!(err.contains("b.a.demo"), "{err}");
    c.catalog(&["grant", "add", "user:carol", "b.a.demo", "read"]);
    let seen = cli(&c, carol, &["volume", "show", "b.a.demo"]).unwrap();
    assert_eq!(seen["access"], "read", "{seen}");
    let put = store
        .put(&Key::from("nope.txt"), vec![1u8; 4].into())
        .await
        .unwrap_err()
        .to_string();
    assert!(put.contains("403") || put.contains("AccessDenied"), "{put}");

    // Nothing reaches past what A granted the link: no volume can be put on the link's
    // backend by hand, and the link's key itself is refused A's workspace.
    let err = cli(
        &b,
        &admin_b.2,
        &[
            "volume",
            "add",
            "sneaky",
            "--backend",
            "peer.a",
            "--prefix",
            "workspace",
        ],
    )
    .unwrap_err();
    assert!(err.contains("peer.a"), "{err}");
    let direct = s3_client(&a.url, "workspace", &svc_b.0, &svc_b.1);
    let refused = direct
        .list_with_delimiter(None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("403") || refused.contains("AccessDenied"),
        "{refused}"
    );

    // A refresh follows the peer: a volume A grants appears, one it takes away goes.
    a.catalog(&[
        "volume",
        "add",
        "tables",
        "--backend",
        "demo",
        "--prefix",
        "tables",
        "--title",
        "Source tables",
    ]);
    a.catalog(&["grant", "add", "user:svc-b", "tables", "read"]);
    let sync = b.catalog(&["peer", "refresh", "a"]);
    assert_eq!(sync["added"], json!(["a.tables"]), "{sync}");
    assert_eq!(sync["updated"], json!(["a.demo"]), "{sync}");
    a.catalog(&["grant", "remove", "user:svc-b", "tables"]);
    let sync = b.catalog(&["peer", "refresh", "a"]);
    assert_eq!(sync["removed"], json!(["a.tables"]), "{sync}");
    assert!(!ids(&b.catalog(&["volume", "list"])).contains(&"a.tables".to_string()));

    // Bad links are refused by name; an unreachable peer is linked, and says why it is empty.
    let err = cli(
        &b,
        &admin_b.2,
        &[
            "peer",
            "add",
            "Bad_Name",
            &a.url,
            "--access-key-id",
            "k",
            "--secret-access-key",
            "s",
        ],
    )
    .unwrap_err();
    assert!(err.contains("Bad_Name"), "{err}");
    let err = cli(
        &b,
        &admin_b.2,
        &[
            "peer",
            "add",
            "a",
            &a.url,
            "--access-key-id",
            "k",
            "--secret-access-key",
            "s",
        ],
    )
    .unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    let gone = format!("http://127.0.0.1:{}", free_port());
    let dead = cli(
        &b,
        &admin_b.2,
        &[
            "peer",
            "add",
            "gone",
            &gone,
            "--access-key-id",
            "k",
            "--secret-access-key",
            "s",
            "--token",
            "t",
        ],
    )
    .unwrap();
    assert!(
        dead["last_error"].as_str().unwrap().contains(&gone),
        "{dead}"
    );
    let err = cli(&b, &admin_b.2, &["peer", "refresh", "gone"]).unwrap_err();
    assert!(
        err.contains("gone") && err.contains("could not be asked"),
        "{err}"
    );
    // The link's secrets are never shown.
    let listed = b.catalog(&["peer", "list"]).to_string();
    assert!(
        !listed.contains(&svc_b.1) && !listed.contains(&svc_b.2),
        "{listed}"
    );

    // Removing a link removes what came through it.
    c.catalog(&["peer", "remove", "b"]);
    let after = c.catalog(&["volume", "list"]);
    assert!(
        ids(&after).iter().all(|id| !id.starts_with("b.")),
        "{after}"
    );
}
