//! The catalogue's web pages (`/ui`) against a real gateway: the way in (a browser at `/`,
//! sign-in with its CSRF value and the failed-authentication limit, a session that ends when
//! its token is revoked), forms refused without the session's CSRF value or from another
//! site, an admin's edits and grants, quick-looks binned to the asked size and following the
//! object's version, and — in headless Chromium, driven by `tests/browser/ui.py` — the pages a
//! scientist walks through, with what a user without a grant does not see. Screenshots of the
//! browser test are kept in `target/tmp/ui-screenshots/`.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use std::collections::HashMap;

use archway_compute::array::{Array, ArrayFormat};
use archway_dataplane::object_store::path::Path as StorePath;
use archway_dataplane::object_store::{ObjectStoreExt, PutPayload};
use common::{Gateway, free_port, records_until, s3_client};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// A browser's part: cookies kept, redirects not followed (the tests look at them).
struct Visitor {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map(|l| l.to_str().unwrap())
            .unwrap_or_default()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| {
            panic!("no csrf field in the page:\n{}", self.body);
        });
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl Visitor {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, resp: reqwest::Response) -> Page {
        for c in resp.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(resp).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_from(path, form, None).await
    }

    async fn post_from(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let resp = req.send().await.unwrap();
        self.keep(resp).await
    }

    /// Signs in with `token`; the answer to the sign-in form.
    async fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/ui/login",
            &[("token", token), ("csrf", &csrf), ("next", "/ui/volumes")],
        )
        .await
    }
}

fn user_token(gw: &Gateway, name: &str) -> String {
    gw.catalog(&["user", "add", name]);
    gw.catalog(&["user", "token", "create", name])["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_at_the_root_is_sent_to_sign_in_and_s3_clients_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser = http
        .get(format!("{}/", gw.url))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 303);
    assert_eq!(browser.headers()[LOCATION], "/ui/");
    // An anonymous S3 ListBuckets (no text/html) still reaches the S3 front.
    let s3 = http.get(format!("{}/", gw.url)).send().await.unwrap();
    assert_eq!(s3.status(), 403);
    assert!(
        s3.text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    // A presigned or signed request is S3's even from a browser.
    let signed = http
        .get(format!("{}/?X-Amz-Algorithm=AWS4-HMAC-SHA256", gw.url))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_ne!(signed.status(), 303);
    // /ui leads to the volumes, which need a session: to the sign-in form, and back after.
    let mut v = Visitor::new(&gw.url);
    assert_eq!(v.get("/ui").await.location(), "/ui/volumes");
    let page = v.get("/ui/volumes/demo?x=1").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location(),
        "/ui/login?next=%2Fui%2Fvolumes%2Fdemo%3Fx%3D1"
    );
    let form = v.get("/ui/login?next=%2Fui%2Fvolumes%2Fdemo").await;
    assert!(form.body.contains("name=\"token\""), "{}", form.body);
    assert!(form.body.contains("value=\"/ui/volumes/demo\""));
    // The stylesheet is in the binary; unknown pages are a page saying so.
    let css = v.get("/ui/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    let missing = v.get("/ui/nowhere").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("id=\"error\""), "{}", missing.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_needs_the_forms_csrf_and_a_working_token_and_ends_when_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let admin = gw.credential("archway_api_token");
    let mut v = Visitor::new(&gw.url);

    // Without the sign-in form's cookie (login CSRF): refused, the token unused.
    let forged = v
        .post("/ui/login", &[("token", &admin), ("csrf", "00ff")])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!v.cookies.contains_key("archway_session"));
    // A wrong token: 401, the form again with the message.
    let wrong = v.sign_in("awt_wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("unknown, revoked or expired"),
        "{}",
        wrong.body
    );
    // From another site: refused.
    let form = v.get("/ui/login").await;
    let csrf = form.csrf();
    let cross = v
        .post_from(
            "/ui/login",
            &[("token", &admin), ("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(cross.status, 403);
    // The right token: a session cookie (sealed: the token is not in it), then the pages.
    let ok = v.sign_in(&admin).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), "/ui/volumes");
    let set: Vec<&str> = ok
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("archway_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(session.contains("Path=/ui"));
    assert!(
        !session.contains("Secure"),
        "Secure on plain HTTP: {session}"
    );
    assert!(
        !session.contains(&admin[4..]),
        "the token is readable in the cookie"
    );
    let page = v.get("/ui/volumes").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"user\">admin<"), "{}", page.body);
    // Behind a proxy that ends TLS, the cookie is Secure.
    let mut proxied = Visitor::new(&gw.url);
    let form = proxied.get("/ui/login").await;
    let csrf = form.csrf();
    let resp = proxied
        .http
        .post(format!("{}/ui/login", gw.url))
        .header("Cookie", proxied.cookie_header())
        .header("X-Forwarded-Proto", "https")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("token", admin.as_str()), ("csrf", csrf.as_str())])
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let secure = proxied.keep(resp).await;
    assert_eq!(secure.status, 303);
    assert!(
        secure.headers.get_all(SET_COOKIE).iter().any(|c| c
            .to_str()
            .unwrap()
            .starts_with("archway_session=")
            && c.to_str().unwrap().ends_with("; Secure")),
        "{:?}",
        secure.headers
    );
    // A changed cookie is no session.
    let mut tampered = Visitor::new(&gw.url);
    let mut value = v.cookies["archway_session"].clone();
    value.replace_range(10..12, if &value[10..12] == "AA" { "BB" } else { "AA" });
    tampered.cookies.insert("archway_session".into(), value);
    assert_eq!(tampered.get("/ui/volumes").await.status, 303);

    // A user's session ends as soon as their token is revoked.
    let olive = user_token(&gw, "olive");
    let mut o = Visitor::new(&gw.url);
    assert_eq!(o.sign_in(&olive).await.status, 303);
    assert_eq!(o.get("/ui/volumes").await.status, 200);
    let tokens = gw.catalog(&["user", "token", "list", "olive"]);
    let id = tokens["tokens"][0]["id"].as_str().unwrap().to_string();
    gw.catalog(&["user", "token", "revoke", "olive", &id]);
    let after = o.get("/ui/volumes").await;
    assert_eq!(after.status, 303);
    assert!(after.location().starts_with("/ui/login"));

    // Sign-out needs the session's CSRF value, then clears the cookie.
    let page = v.get("/ui/volumes").await;
    let csrf = page.csrf();
    assert_eq!(v.post("/ui/logout", &[("csrf", "nope")]).await.status, 403);
    let out = v.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location(), "/ui/login");
    assert!(!v.cookies.contains_key("archway_session"));
    assert_eq!(v.get("/ui/volumes").await.status, 303);

    // Failed sign-ins count towards the source's limit (`server.auth_failure_burst`, 20):
    // then even the right token waits, told for how long.
    let mut m = Visitor::new(&gw.url);
    let mut failures = 0;
    let held = loop {
        let p = m.sign_in("awt_wrong").await;
        if p.status == 429 {
            break p;
        }
        assert_eq!(p.status, 401, "{}", p.body);
        failures += 1;
        assert!(
            failures <= 21,
            "never held off after {failures} failed sign-ins"
        );
    };
    assert!(failures >= 18, "held off after only {failures} failures");
    assert!(
        held.body.contains("Too many failed sign-ins"),
        "{}",
        held.body
    );
    assert!(held.headers.contains_key("retry-after"));
    assert_eq!(m.sign_in(&admin).await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_edit_and_grant_with_forms_that_need_the_sessions_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let admin = gw.credential("archway_api_token");
    let olive = user_token(&gw, "olive");
    let mut a = Visitor::new(&gw.url);
    a.sign_in(&admin).await;
    let mut o = Visitor::new(&gw.url);
    o.sign_in(&olive).await;
    let page = a.get("/ui/volumes/demo").await;
    let csrf = page.csrf();

    // Without the CSRF value, or from another site: refused, nothing changed.
    let edit = [
        ("title", "Demo, renamed"),
        ("description", "Edited on the web pages."),
        ("mission", "Archway demo"),
        ("instrument", ""),
        ("tags", "demo, web"),
        ("license", "CC-BY-4.0"),
    ];
    let mut bad = edit.to_vec();
    bad.push(("csrf", "0000"));
    let refused = a.post("/ui/volumes/demo/edit", &bad).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("csrf"), "{}", refused.body);
    let mut good = edit.to_vec();
    good.push(("csrf", &csrf));
    let cross = a
        .post_from("/ui/volumes/demo/edit", &good, Some("http://evil.example"))
        .await;
    assert_eq!(cross.status, 403);
    assert_eq!(
        gw.catalog(&["volume", "show", "demo"])["title"],
        "Archway demo data"
    );
    // With it: saved — also from the same host over HTTPS (a proxy that ends TLS in front).
    let host = gw.url.trim_start_matches("http://").to_string();
    let saved = a
        .post_from(
            "/ui/volumes/demo/edit",
            &good,
            Some(&format!("https://{host}")),
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.location(), "/ui/volumes/demo?done=saved");
    let v = gw.catalog(&["volume", "show", "demo"]);
    assert_eq!(v["title"], "Demo, renamed");
    assert_eq!(v["instrument"], serde_json::Value::Null);
    assert_eq!(v["tags"], serde_json::json!(["demo", "web"]));
    assert_eq!(v["license"], "CC-BY-4.0");
    assert!(
        a.get("/ui/volumes/demo?done=saved")
            .await
            .body
            .contains("Saved.")
    );

    // A user may not edit, whatever the form says.
    let o_page = o.get("/ui/volumes").await;
    let o_csrf = o_page.csrf();
    let mut theirs = edit.to_vec();
    theirs.push(("csrf", &o_csrf));
    assert_eq!(o.post("/ui/volumes/demo/edit", &theirs).await.status, 403);

    // Olive sees the demo volume only while granted.
    assert!(
        !o.get("/ui/volumes")
            .await
            .body
            .contains("data-volume=\"demo\"")
    );
    let bad_subject = a
        .post(
            "/ui/volumes/demo/grants",
            &[("csrf", &csrf), ("subject", "olive"), ("level", "read")],
        )
        .await;
    assert_eq!(bad_subject.status, 400);
    assert!(
        bad_subject.body.contains("user:NAME"),
        "{}",
        bad_subject.body
    );
    let granted = a
        .post(
            "/ui/volumes/demo/grants",
            &[
                ("csrf", &csrf),
                ("subject", "user:olive"),
                ("level", "read"),
            ],
        )
        .await;
    assert_eq!(granted.location(), "/ui/volumes/demo?done=granted");
    assert!(
        o.get("/ui/volumes")
            .await
            .body
            .contains("data-volume=\"demo\"")
    );
    let page = o.get("/ui/volumes/demo").await;
    assert!(page.body.contains("id=\"access\">read<"), "{}", page.body);
    assert!(
        !page.body.contains("id=\"edit\""),
        "a reader sees the admin's form"
    );
    assert!(a.get("/ui/volumes/demo").await.body.contains("user:olive"));
    let revoked = a
        .post(
            "/ui/volumes/demo/revoke",
            &[("csrf", &csrf), ("subject", "user:olive")],
        )
        .await;
    assert_eq!(revoked.location(), "/ui/volumes/demo?done=revoked");
    assert_eq!(o.get("/ui/volumes/demo").await.status, 404);
}

/// An image of `w` × `h` float64 values (a gradient plus `offset`), as FITS.
fn image(w: u64, h: u64, offset: f64) -> Vec<u8> {
    let values = (0..w * h)
        .map(|i| (i % w) as f64 + (i / w) as f64 * 0.5 + offset)
        .collect();
    Array {
        shape: vec![w, h],
        values,
    }
    .encode(ArrayFormat::Fits, &[])
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[tokio::test(flavor = "multi_thread")]
async fn quick_looks_are_binned_to_the_asked_size_and_follow_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let s3 = s3_client(
        &gw.url,
        "workspace",
        &gw.credential("aws_access_key_id"),
        &gw.credential("aws_secret_access_key"),
    );
    s3.put(
        &StorePath::from("big.fits"),
        PutPayload::from(image(1000, 600, 0.0)),
    )
    .await
    .unwrap();
    let mut v = Visitor::new(&gw.url);
    v.sign_in(&gw.credential("archway_api_token")).await;

    let get = |query: &str| format!("/ui/volumes/workspace/quicklook.png?key=big.fits{query}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let fetch = |path: String, cookie: String| {
        let http = http.clone();
        let url = format!("{}{path}", gw.url);
        async move {
            let r = http.get(url).header("Cookie", cookie).send().await.unwrap();
            let status = r.status();
            let ty = r
                .headers()
                .get("content-type")
                .map(|t| t.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ty, r.bytes().await.unwrap().to_vec())
        }
    };
    let cookie = v.cookie_header();
    // 1000 × 600 within 512 a side: binned by 2 × 2.
    let (status, ty, first) = fetch(get(""), cookie.clone()).await;
    assert_eq!((status.as_u16(), ty.as_str()), (200, "image/png"));
    assert_eq!(png_size(&first), (500, 300));
    let (_, _, small) = fetch(get("&size=100&stretch=percentile"), cookie.clone()).await;
    assert_eq!(png_size(&small), (100, 60));
    // Bounded: a size beyond the limit, an unknown stretch, a missing HDU are refused by name.
    let (status, _, body) = fetch(get("&size=5000"), cookie.clone()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("`size`"));
    let (status, _, body) = fetch(get("&stretch=sqrt"), cookie.clone()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("`stretch`"));
    let (status, _, body) = fetch(get("&hdu=3"), cookie.clone()).await;
    assert_eq!(status.as_u16(), 404, "{}", String::from_utf8_lossy(&body));
    // The demo's source table is no image.
    let (status, _, body) = fetch(
        "/ui/volumes/demo/quicklook.png?key=tables/sources.fits&hdu=1".into(),
        cookie.clone(),
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not an image"));

    // The same version is served from the cache; a new version gets a new picture.
    let (_, _, again) = fetch(get(""), cookie.clone()).await;
    assert_eq!(again, first);
    let mut rows = image(1000, 600, 0.0);
    // Another picture: a dark left half.
    let header = rows.len() - (1000 * 600 * 8usize).div_ceil(2880) * 2880;
    for row in 0..600usize {
        for col in 0..500usize {
            let at = header + (row * 1000 + col) * 8;
            rows[at..at + 8].copy_from_slice(&(-1000.0f64).to_be_bytes());
        }
    }
    s3.put(&StorePath::from("big.fits"), PutPayload::from(rows))
        .await
        .unwrap();
    let (_, _, changed) = fetch(get(""), cookie.clone()).await;
    assert_eq!(png_size(&changed), (500, 300));
    assert_ne!(changed, first, "the picture of the old version was served");

    // The histogram is an SVG of the values.
    let (status, ty, svg) = fetch(
        "/ui/volumes/workspace/histogram.svg?key=big.fits".into(),
        cookie.clone(),
    )
    .await;
    assert_eq!((status.as_u16(), ty.as_str()), (200, "image/svg+xml"));
    assert!(String::from_utf8_lossy(&svg).contains("-1000"));
    // Without a session: no picture.
    let (status, _, _) = fetch(get(""), String::new()).await;
    assert_eq!(status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_work_in_chromium_and_hide_what_a_user_may_not_read() {
    let python = std::env::var("ARCHWAY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "ARCHWAY_TEST_PYTHON is not set: this test drives Chromium with Playwright. Run the \
             tests with scripts/test, or `eval \"$(scripts/test-services)\"` first"
        )
    });
    let chromium = std::env::var("ARCHWAY_TEST_CHROMIUM")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "ARCHWAY_TEST_CHROMIUM is not set: this test needs Debian's chromium. Run the \
                 tests with scripts/test, or `eval \"$(scripts/test-services)\"` first"
            )
        });
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("data"), &[]).await;
    let admin = gw.credential("archway_api_token");
    let outsider = user_token(&gw, "outsider");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/ui.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&gw.url)
        .arg(&admin)
        .arg(&outsider)
        .arg(&shots)
        .env("ARCHWAY_TEST_CHROMIUM", &chromium)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["ok"], true);
    assert_eq!(
        seen["seen"]["quicklook_size"],
        serde_json::json!([128, 128])
    );
    assert_eq!(seen["seen"]["outsider_volumes"], serde_json::json!([]));
    for name in [
        "01-login",
        "05-object-quicklook",
        "06-reduce",
        "09-outsider-refused",
    ] {
        let file = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "no screenshot {}", file.display());
    }
    println!("screenshots: {}", shots.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_leave_audit_records_naming_the_visitor_and_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit/trail.jsonl");
    let gw = Gateway::start_with_env(
        &dir.path().join("data"),
        free_port(),
        &[],
        &[("ARCHWAY_AUDIT__PATH", trail.to_str().unwrap())],
    )
    .await;
    let admin = gw.credential("archway_api_token");
    let mut v = Visitor::new(&gw.url);
    assert_eq!(v.sign_in(&admin).await.status, 303);
    assert_eq!(v.get("/ui/volumes/demo").await.status, 200);
    // STAC and SIA with the admin's bearer token.
    for path in [
        "/stac/collections/demo",
        "/sia/v2/query?POS=CIRCLE+202.47+47.19+1",
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", gw.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let records = records_until(&trail, |r| {
        r.iter().any(|r| r["op"] == "GET /ui/volumes/{id}")
            && r.iter().any(|r| r["op"] == "GET /stac/collections/{id}")
            && r.iter().any(|r| r["op"] == "GET /sia/v2/query")
    })
    .await;
    let page = records
        .iter()
        .find(|r| r["op"] == "GET /ui/volumes/{id}")
        .unwrap();
    assert_eq!(page["front"], "ui", "{page}");
    assert_eq!(page["principal"], "admin", "{page}");
    assert_eq!(page["auth"], "session", "{page}");
    assert_eq!(page["volume"], "demo", "{page}");
    let login = records
        .iter()
        .find(|r| r["op"] == "POST /ui/login")
        .unwrap();
    assert_eq!(
        (login["principal"].as_str(), login["auth"].as_str()),
        (Some("admin"), Some("bearer"))
    );
    let s = records
        .iter()
        .find(|r| r["op"] == "GET /stac/collections/{id}")
        .unwrap();
    assert_eq!(
        (s["front"].as_str(), s["auth"].as_str()),
        (Some("stac"), Some("bearer")),
        "{s}"
    );
    assert_eq!(s["volume"], "demo", "{s}");
    let s = records
        .iter()
        .find(|r| r["op"] == "GET /sia/v2/query")
        .unwrap();
    assert_eq!(
        (s["front"].as_str(), s["principal"].as_str()),
        (Some("sia"), Some("admin")),
        "{s}"
    );
    // No record holds the session cookie or the token.
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(
        !text.contains(&admin[4..]),
        "the token is in the audit trail"
    );
    assert!(
        !text.contains(&v.cookies["archway_session"]),
        "the cookie is in the audit trail"
    );
}
