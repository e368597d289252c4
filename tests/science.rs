//! The science index end to end: `archway catalog volume scan` reads the FITS headers of the
//! demo volume through the gateway (ranges through the cache, never whole files), and
//! `GET /api/v1/science` finds its images by sky position and time — for the callers who may
//! read the volume, and for no one else.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests may block: they own their runtimes

mod common;

use common::{Gateway, free_port};
use serde_json::Value;

async fn search(gw: &Gateway, token: &str, query: &str) -> (u16, Value) {
    gw.get_json(&format!("/api/v1/science?{query}"), token)
        .await
}

fn keys(found: &Value) -> Vec<String> {
    found["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["volume"].as_str().unwrap(),
                o["key"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_indexes_the_fits_headers_and_the_index_finds_them_for_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_on(&dir.path().join("data"), free_port(), &[]).await;
    let admin = gw.credential("archway_api_token");

    // The embedded default indexed its demo volume before serving: the first search finds it.
    let (status, found) = search(&gw, &admin, "volume=demo").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["objects"].as_array().unwrap().len(), 3, "{found}");
    // A scan reads only what changed since: nothing, then the one file rewritten.
    let scanned = gw.catalog(&["volume", "scan", "demo"]);
    assert_eq!(scanned["science"]["read"], 0, "{scanned}");
    assert_eq!(scanned["science"]["header_bytes"], 0, "{scanned}");
    let field = gw.data_dir.join("demo/images/field1.fits");
    let bytes_of_field = std::fs::read(&field).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&field, &bytes_of_field).unwrap();
    let scanned = gw.catalog(&["volume", "scan", "demo"]);
    let science = &scanned["science"];
    assert_eq!(science["fits_objects"], 3, "{scanned}");
    assert_eq!(science["read"], 1, "{scanned}");
    assert_eq!(science["with_position"], 2, "{scanned}");
    assert_eq!(science["without_position"], 1, "{scanned}");
    // Headers only: a few blocks of 2880 bytes each, far less than the files hold.
    let header_bytes = science["header_bytes"].as_u64().unwrap();
    let bytes = scanned["scan"]["bytes"].as_u64().unwrap();
    assert!(
        header_bytes % 2880 == 0 && header_bytes < bytes / 4,
        "{scanned}"
    );

    // The STAC collection states the demo's extent: a box around M51 (RA 202.47, longitude
    // -157.53) and the Crab (RA 83.63), and the day both were taken.
    let (status, collection) = gw.get_json("/stac/collections/demo", &admin).await;
    assert_eq!(status, 200, "{collection}");
    let bbox: Vec<f64> =
        serde_json::from_value(collection["extent"]["spatial"]["bbox"][0].clone()).unwrap();
    assert!(
        bbox[0] < -157.53 && bbox[0] > -158.0 && bbox[2] > 83.63 && bbox[2] < 84.0,
        "{collection}"
    );
    assert!(
        bbox[1] < 22.01 && bbox[1] > 21.0 && bbox[3] > 47.19 && bbox[3] < 48.0,
        "{bbox:?}"
    );
    let interval = &collection["extent"]["temporal"]["interval"][0];
    assert!(
        interval[0].as_str().unwrap().starts_with("2026-01-01"),
        "{collection}"
    );

    // A cone on M51 finds the field image, with what its headers say.
    let (status, found) = search(&gw, &admin, "ra=202.47&dec=47.19&radius=0.1").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(keys(&found), ["demo/images/field1.fits"]);
    let o = &found["objects"][0];
    assert_eq!(o["instrument_name"], "DEMOCAM");
    assert_eq!(o["dataproduct_type"], "image");
    assert!((o["s_ra"].as_f64().unwrap() - 202.4696).abs() < 1e-6, "{o}");
    assert!((o["s_fov"].as_f64().unwrap() - 0.1006).abs() < 1e-3, "{o}");
    assert_eq!(o["s_region"].as_array().unwrap().len(), 4);
    // 2026-01-01 is MJD 61041.
    assert_eq!(o["t_min"], 61041.0);

    // A box on the Crab finds the other image; a cone elsewhere finds nothing.
    let (_, found) = search(&gw, &admin, "ra_min=83&ra_max=84&dec_min=21.5&dec_max=22.5").await;
    assert_eq!(keys(&found), ["demo/images/counts.fits"]);
    let (_, found) = search(&gw, &admin, "ra=10&dec=-40&radius=1").await;
    assert!(keys(&found).is_empty(), "{found}");
    // By time: both images were taken on 2026-01-01, the table says when too.
    let (_, found) = search(&gw, &admin, "t_min=61040.5&t_max=61041.5").await;
    assert_eq!(found["objects"].as_array().unwrap().len(), 3, "{found}");
    let (_, found) = search(&gw, &admin, "t_min=50000&t_max=50001").await;
    assert!(keys(&found).is_empty(), "{found}");
    // Pages: one object each, three pages, then none.
    let (_, page) = search(&gw, &admin, "limit=1").await;
    assert_eq!(keys(&page).len(), 1);
    let next = &page["next"];
    let (_, page2) = search(
        &gw,
        &admin,
        &format!(
            "limit=1&after_volume={}&after_key={}",
            next["after_volume"].as_str().unwrap(),
            next["after_key"].as_str().unwrap()
        ),
    )
    .await;
    assert_ne!(keys(&page2), keys(&page));

    // Bad searches name the parameter.
    let (status, answer) = search(&gw, &admin, "ra=10&dec=5").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cone"),
        "{answer}"
    );
    let (status, answer) = search(&gw, &admin, "ra=10&dec=95&radius=1").await;
    assert_eq!(status, 400, "{answer}");

    // A user who may not read the demo volume finds nothing there, even by naming it.
    gw.catalog(&["volume", "update", "demo", "--public-read", "false"]);
    gw.catalog(&["user", "add", "nobody"]);
    let token = gw.catalog(&["user", "token", "create", "nobody"])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, found) = search(&gw, &token, "ra=202.47&dec=47.19&radius=0.1").await;
    assert_eq!(status, 200, "{found}");
    assert!(keys(&found).is_empty(), "{found}");
    let (_, found) = search(&gw, &token, "volumes=demo").await;
    assert!(keys(&found).is_empty(), "{found}");
    // Without a token: 401.
    let resp = reqwest::get(format!("{}/api/v1/science", gw.url))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // A rescan reads nothing unchanged, and forgets an object that is gone.
    std::fs::remove_file(dir.path().join("data/demo/images/counts.fits")).unwrap();
    let again = gw.catalog(&["volume", "scan", "demo"]);
    assert_eq!(again["science"]["read"], 0, "{again}");
    assert_eq!(again["science"]["dropped"], 1, "{again}");
    let (_, found) = search(&gw, &admin, "ra_min=83&ra_max=84&dec_min=21.5&dec_max=22.5").await;
    assert!(keys(&found).is_empty(), "{found}");
}
