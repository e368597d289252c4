//! The STAC API (1.0.0) at `/stac`: the science index as SpatioTemporal Asset Catalog items,
//! for pystac-client and the platforms that browse with it. A thin front: volumes and items
//! come from the dataplane, which keeps every caller to what they may read (a bearer API
//! token; without one, public volumes).
//!
//! - `GET /stac`: the landing page; `GET /stac/conformance`.
//! - `GET /stac/collections`, `GET /stac/collections/{id}`: one collection per volume.
//! - `GET /stac/collections/{id}/items`, `.../items/{key}`: an item per indexed object.
//! - `GET` and `POST /stac/search`: `ids`, `collections`, `bbox`, `datetime`, `limit`, pages
//!   by `next` links (`token`).
//!
//! The sky as GeoJSON: longitude = RA (degrees, wrapped to −180..180), latitude = Dec; a
//! footprint across RA 180 (longitude ±180) is split into a MultiPolygon and its bbox has
//! west > east, as GeoJSON (RFC 7946) has it. Items need a time (STAC's `datetime`): objects
//! whose headers give none are in the index (`/api/v1/science`) but not served here.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use archway_catalog::{ScienceExtent, ScienceObject, ScienceQuery, SkyRegion, Volume};
use archway_compute::obscore::{iso_to_mjd, mjd_to_iso};

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::state::AppState;

const STAC_VERSION: &str = "1.0.0";
const CONFORMS_TO: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
];
const GEOJSON: &str = "application/geo+json";
/// Every time there is: items without one are not STAC items.
const ALL_TIME: (f64, f64) = (-1.0e12, 1.0e12);

/// The STAC routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/stac", get(landing))
        .route("/stac/", get(landing))
        .route("/stac/conformance", get(conformance))
        .route("/stac/collections", get(collections))
        .route("/stac/collections/{id}", get(collection))
        .route("/stac/collections/{id}/items", get(items))
        .route("/stac/collections/{id}/items/{*key}", get(item))
        .route("/stac/search", get(search_get).post(search_post))
}

/// The gateway's address as the client reached it: what links are built on.
pub(crate) fn base(state: &AppState, headers: &HeaderMap) -> String {
    let scheme = if state.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.server.listen.clone());
    format!("{scheme}://{host}")
}

fn link(rel: &str, href: String, kind: &str) -> Value {
    json!({"rel": rel, "href": href, "type": kind})
}

fn geojson(value: Value) -> Response {
    ([(axum::http::header::CONTENT_TYPE, GEOJSON)], Json(value)).into_response()
}

async fn landing(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let b = base(&state, &headers);
    Json(json!({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "archway",
        "title": "Archway data volumes",
        "description": "The FITS objects of this gateway's data volumes, from their headers \
                        (the science index): where on the sky, when, with what.",
        "conformsTo": CONFORMS_TO,
        "links": [
            link("self", format!("{b}/stac"), "application/json"),
            link("root", format!("{b}/stac"), "application/json"),
            link("conformance", format!("{b}/stac/conformance"), "application/json"),
            link("data", format!("{b}/stac/collections"), "application/json"),
            {"rel": "search", "href": format!("{b}/stac/search"), "type": GEOJSON, "method": "GET"},
            {"rel": "search", "href": format!("{b}/stac/search"), "type": GEOJSON, "method": "POST"},
        ],
    }))
}

async fn conformance() -> Json<Value> {
    Json(json!({ "conformsTo": CONFORMS_TO }))
}

/// Where `archway mount MOUNT_ROOT` shows a volume, as the catalogue's fronts tell users.
pub(crate) const MOUNT_ROOT: &str = "/mnt/archway";

/// A collection's extent: the science index's (sky box and time span of the indexed
/// objects), else the whole sky and all time.
fn extent_of(e: Option<&ScienceExtent>) -> Value {
    let bbox = e
        .and_then(|e| e.bbox)
        .map_or(json!([-180.0, -90.0, 180.0, 90.0]), |b| json!(b));
    let when = |t: Option<f64>| t.and_then(mjd_to_iso).map_or(Value::Null, Value::String);
    json!({
        "spatial": {"bbox": [bbox]},
        "temporal": {"interval": [[when(e.and_then(|e| e.t_min)), when(e.and_then(|e| e.t_max))]]},
    })
}

fn collection_of(b: &str, v: &Volume, extent: Option<&ScienceExtent>) -> Value {
    let id = &v.id;
    let mut keywords = v.tags.clone();
    keywords.extend(v.mission.clone());
    keywords.extend(v.instrument.clone());
    let mut collection = json!({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": id,
        "title": v.title,
        "description": if v.description.is_empty() { v.title.clone() } else { v.description.clone() },
        "license": v.license.clone().unwrap_or_else(|| "other".into()),
        "keywords": keywords,
        "extent": extent_of(extent),
        "summaries": {
            "instruments": v.instrument.iter().collect::<Vec<_>>(),
            "dataproduct_type": v.dataproduct_type.iter().collect::<Vec<_>>(),
        },
        "archway:kind": v.kind.as_str(),
        "archway:bucket": format!("s3://{id}"),
        "archway:mount_path": format!("{MOUNT_ROOT}/{id}"),
        "archway:reduce": format!("{b}/api/v1/reduce"),
        "links": [
            link("self", format!("{b}/stac/collections/{id}"), "application/json"),
            link("root", format!("{b}/stac"), "application/json"),
            link("parent", format!("{b}/stac"), "application/json"),
            link("items", format!("{b}/stac/collections/{id}/items"), GEOJSON),
            {"rel": "alternate", "href": format!("{b}/{id}/"), "type": "application/xml",
             "title": "the volume as an S3 bucket (path style; signed, or public)"},
            {"rel": "service", "href": format!("{b}/api/v1/reduce"), "type": "application/json",
             "title": "reduce an object where it is stored (POST /api/v1/reduce)"},
        ],
    });
    // A volume linked from a peer gateway names the site that holds its data and the link.
    if let Some((site, link)) = archway_dataplane::linked_site(v) {
        collection["archway:site"] = json!(site);
        collection["archway:link"] = json!(link);
    }
    collection
}

async fn collections(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let b = base(&state, &headers);
    let volumes = state.dataplane.readable_volumes(caller.who()).await?;
    let extents = state.dataplane.science_extents(&volumes).await?;
    Ok(Json(json!({
        "collections": volumes
            .iter()
            .map(|v| collection_of(&b, v, extents.get(&v.id)))
            .collect::<Vec<_>>(),
        "links": [
            link("self", format!("{b}/stac/collections"), "application/json"),
            link("root", format!("{b}/stac"), "application/json"),
            link("parent", format!("{b}/stac"), "application/json"),
        ],
    })))
}

async fn collection(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (volume, _) = state.dataplane.volume(caller.who(), &id).await?;
    let extents = state
        .dataplane
        .science_extents(std::slice::from_ref(&volume))
        .await?;
    Ok(Json(collection_of(
        &base(&state, &headers),
        &volume,
        extents.get(&volume.id),
    )))
}

/// The item search's parameters, from a query string or a POST body.
/// Extensions this search does not implement (`fields`, say) are ignored, as STAC asks; the
/// ones that would change which items match (`intersects`, `filter`, `query`, `sortby`) are
/// refused by name rather than ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    collections: Option<Vec<String>>,
    #[serde(default)]
    bbox: Option<Vec<f64>>,
    #[serde(default)]
    datetime: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    token: Option<String>,
    /// Not supported: refused by name rather than ignored.
    #[serde(default)]
    intersects: Option<Value>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    query: Option<Value>,
    #[serde(default)]
    sortby: Option<Value>,
}

/// The same, as a query string gives them (lists comma-separated).
#[derive(Clone, Debug, Default, Deserialize)]
struct SearchParams {
    ids: Option<String>,
    collections: Option<String>,
    bbox: Option<String>,
    datetime: Option<String>,
    limit: Option<usize>,
    token: Option<String>,
    intersects: Option<String>,
    filter: Option<String>,
    query: Option<String>,
    sortby: Option<String>,
}

fn list(s: &Option<String>) -> Option<Vec<String>> {
    s.as_ref().map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    })
}

impl SearchParams {
    fn body(&self) -> Result<SearchBody, ApiError> {
        let bbox = match &self.bbox {
            None => None,
            Some(b) => Some(
                b.split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        ApiError::bad_request(
                            Some("bbox".into()),
                            format!("bbox `{b}` is not four numbers"),
                        )
                    })?,
            ),
        };
        Ok(SearchBody {
            ids: list(&self.ids),
            collections: list(&self.collections),
            bbox,
            datetime: self.datetime.clone(),
            limit: self.limit,
            token: self.token.clone(),
            intersects: self.intersects.clone().map(Value::String),
            filter: self.filter.clone().map(Value::String),
            query: self.query.clone().map(Value::String),
            sortby: self.sortby.clone().map(Value::String),
        })
    }
}

/// A `datetime` parameter (an instant, or `start/end` with `..` or nothing for an open end)
/// as an MJD interval.
fn interval(text: &str) -> Result<(f64, f64), ApiError> {
    let bad = || {
        ApiError::bad_request(
            Some("datetime".into()),
            format!(
                "datetime `{text}` is not an RFC 3339 time or interval (start/end, `..` for an open end)"
            ),
        )
    };
    let point = |s: &str| -> Result<Option<f64>, ApiError> {
        match s.trim() {
            "" | ".." => Ok(None),
            t => iso_to_mjd(t).map(Some).ok_or_else(bad),
        }
    };
    match text.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (point(a)?, point(b)?);
            let (a, b) = (a.unwrap_or(ALL_TIME.0), b.unwrap_or(ALL_TIME.1));
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let t = point(text)?.ok_or_else(bad)?;
            Ok((t, t))
        }
    }
}

/// A STAC bbox (longitude = RA wrapped) as a box of RA and Dec.
fn sky_box(bbox: &[f64]) -> Result<SkyRegion, ApiError> {
    let bad = |m: String| ApiError::bad_request(Some("bbox".into()), m);
    let [west, south, east, north] = match bbox {
        [w, s, e, n] => [*w, *s, *e, *n],
        [w, s, _, e, n, _] => [*w, *s, *e, *n],
        _ => {
            return Err(bad(format!(
                "bbox has {} numbers, not 4 (or 6)",
                bbox.len()
            )));
        }
    };
    if !(-90.0..=90.0).contains(&south) || !(-90.0..=90.0).contains(&north) || south > north {
        return Err(bad(format!(
            "bbox latitudes {south}..{north} are not on the sphere"
        )));
    }
    if !(-180.0..=180.0).contains(&west) || !(-180.0..=180.0).contains(&east) {
        return Err(bad(format!(
            "bbox longitudes {west}, {east} are not within -180..180"
        )));
    }
    if west <= east && east - west >= 360.0 {
        return Ok(SkyRegion::Box {
            ra_min: 0.0,
            ra_max: 360.0,
            dec_min: south,
            dec_max: north,
        });
    }
    // West > east crosses longitude ±180 (RA 180); in RA terms the box may cross RA 0.
    let (ra_min, ra_max) = (west.rem_euclid(360.0), east.rem_euclid(360.0));
    Ok(SkyRegion::Box {
        ra_min,
        ra_max,
        dec_min: south,
        dec_max: north,
    })
}

/// Page tokens: the last (collection, id) of the page, hex so any key fits a query string.
fn token_of(o: &ScienceObject) -> String {
    hex::encode(format!("{}\n{}", o.volume, o.key))
}

fn after_of(token: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            Some("token".into()),
            "the page token is not one this gateway gave",
        )
    };
    let raw = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (v, k) = text.split_once('\n').ok_or_else(bad)?;
    Ok((v.to_string(), k.to_string()))
}

fn query_of(body: &SearchBody, only: Option<Vec<String>>) -> Result<ScienceQuery, ApiError> {
    for (name, given) in [
        ("intersects", body.intersects.is_some()),
        ("filter", body.filter.is_some()),
        ("query", body.query.is_some()),
        ("sortby", body.sortby.is_some()),
    ] {
        if given {
            return Err(ApiError::bad_request(
                Some(name.into()),
                format!(
                    "{name} is not supported here: search by ids, collections, bbox and \
                     datetime (items come in collection and id order)"
                ),
            ));
        }
    }
    let limit = body.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            Some("limit".into()),
            format!("limit {limit} is not within 1..1000"),
        ));
    }
    Ok(ScienceQuery {
        volumes: only.or_else(|| body.collections.clone()),
        sky: body.bbox.as_deref().map(sky_box).transpose()?,
        time: Some(match &body.datetime {
            Some(d) => interval(d)?,
            None => ALL_TIME,
        }),
        limit,
        after: body.token.as_deref().map(after_of).transpose()?,
    })
}

/// Longitude of an RA: wrapped to −180..180.
fn lon(ra: f64) -> f64 {
    let l = ra.rem_euclid(360.0);
    if l > 180.0 { l - 360.0 } else { l }
}

/// Clips a ring (unwrapped longitudes) to the half-plane `keep(lon)` bounded by `at`.
fn clip(ring: &[[f64; 2]], at: f64, keep: impl Fn(f64) -> bool) -> Vec<[f64; 2]> {
    let mut out = Vec::new();
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
        if keep(a[0]) {
            out.push(a);
        }
        if keep(a[0]) != keep(b[0]) {
            let t = (at - a[0]) / (b[0] - a[0]);
            out.push([at, a[1] + t * (b[1] - a[1])]);
        }
    }
    out
}

fn closed(mut ring: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    ring
}

/// The footprint as GeoJSON geometry and bbox: a Polygon, or a MultiPolygon when it crosses
/// longitude ±180.
fn geometry(region: &[[f64; 2]]) -> Option<(Value, Value)> {
    if region.len() < 3 {
        return None;
    }
    // Longitudes unwrapped around the first corner, so the ring is continuous.
    let first = lon(region[0][0]);
    let ring: Vec<[f64; 2]> = region
        .iter()
        .map(|p| {
            let mut l = lon(p[0]);
            while l - first > 180.0 {
                l -= 360.0;
            }
            while first - l > 180.0 {
                l += 360.0;
            }
            [l, p[1]]
        })
        .collect();
    let (lo, hi) = ring.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p[0]), hi.max(p[0]))
    });
    let (south, north) = ring
        .iter()
        .fold((f64::MAX, f64::MIN), |(s, n), p| (s.min(p[1]), n.max(p[1])));
    if hi - lo >= 180.0 {
        // Around a pole or wider than half the sky: the whole band of latitudes.
        let bbox = json!([-180.0, south, 180.0, north]);
        let ring = vec![
            [-180.0, south],
            [180.0, south],
            [180.0, north],
            [-180.0, north],
        ];
        return Some((
            json!({"type": "Polygon", "coordinates": [closed(ring)]}),
            bbox,
        ));
    }
    let crossing = if hi > 180.0 {
        Some(180.0)
    } else if lo < -180.0 {
        Some(-180.0)
    } else {
        None
    };
    match crossing {
        None => Some((
            json!({"type": "Polygon", "coordinates": [closed(ring)]}),
            json!([lo, south, hi, north]),
        )),
        Some(at) => {
            let inside = clip(&ring, at, |l| if at > 0.0 { l <= at } else { l >= at });
            let outside: Vec<[f64; 2]> =
                clip(&ring, at, |l| if at > 0.0 { l >= at } else { l <= at })
                    .into_iter()
                    .map(|p| [if at > 0.0 { p[0] - 360.0 } else { p[0] + 360.0 }, p[1]])
                    .collect();
            // West > east: the box crosses ±180.
            let (west, east) = if at > 0.0 {
                (lo, hi - 360.0)
            } else {
                (lo + 360.0, hi)
            };
            Some((
                json!({"type": "MultiPolygon", "coordinates": [[closed(inside)], [closed(outside)]]}),
                json!([west, south, east, north]),
            ))
        }
    }
}

/// A key as a URL path: each segment percent-encoded but for RFC 3986's unreserved characters.
pub(crate) fn key_path(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    key.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn item_of(b: &str, o: &ScienceObject) -> Value {
    let id = &o.volume;
    let key_path = key_path(&o.key);
    let (geometry, bbox) = match o.s_region.as_deref().and_then(geometry) {
        Some((g, b)) => (g, Some(b)),
        None => match (o.s_ra, o.s_dec) {
            (Some(ra), Some(dec)) => (
                json!({"type": "Point", "coordinates": [lon(ra), dec]}),
                Some(json!([lon(ra), dec, lon(ra), dec])),
            ),
            _ => (Value::Null, None),
        },
    };
    let start = o.t_min.and_then(mjd_to_iso);
    let end = o.t_max.or(o.t_min).and_then(mjd_to_iso);
    let properties = json!({
        "datetime": start,
        "start_datetime": start,
        "end_datetime": end,
        "dataproduct_type": o.dataproduct_type,
        "calib_level": o.calib_level,
        "obs_id": o.obs_id,
        "obs_collection": id,
        "target_name": o.target_name,
        "s_ra": o.s_ra,
        "s_dec": o.s_dec,
        "s_fov": o.s_fov,
        "t_min": o.t_min,
        "t_max": o.t_max,
        "t_exptime": o.t_exptime,
        "em_min": o.em_min,
        "em_max": o.em_max,
        "instrument_name": o.instrument_name,
        "facility_name": o.facility_name,
        "instruments": o.instrument_name.iter().collect::<Vec<_>>(),
        "access_format": "application/fits",
        "access_estsize": o.size.div_ceil(1024),
        "archway:hdus": o.hdus,
        "archway:notes": o.notes,
    });
    let mut item = json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": o.key,
        "collection": id,
        "geometry": geometry,
        "properties": properties,
        "assets": {
            "data": {
                "href": format!("{b}/{id}/{key_path}"),
                "type": "application/fits",
                "roles": ["data"],
                "title": "the object over HTTP (S3 path style: signed, or public)",
                "file:size": o.size,
            },
            "s3": {
                "href": format!("s3://{id}/{}", o.key),
                "type": "application/fits",
                "roles": ["data"],
                "title": "the object in the gateway's S3 namespace",
            },
        },
        "links": [
            link("self", format!("{b}/stac/collections/{id}/items/{key_path}"), GEOJSON),
            link("collection", format!("{b}/stac/collections/{id}"), "application/json"),
            link("parent", format!("{b}/stac/collections/{id}"), "application/json"),
            link("root", format!("{b}/stac"), "application/json"),
        ],
    });
    if let (Some(bbox), Some(map)) = (bbox, item.as_object_mut()) {
        map.insert("bbox".into(), bbox);
    }
    item
}

/// A page of items as a FeatureCollection, with a `next` link made by `next`.
fn page(
    b: &str,
    found: &[ScienceObject],
    q: &ScienceQuery,
    next: impl Fn(String) -> Value,
) -> Value {
    let mut links = vec![link("root", format!("{b}/stac"), "application/json")];
    if found.len() == q.limit
        && let Some(last) = found.last()
    {
        links.push(next(token_of(last)));
    }
    json!({
        "type": "FeatureCollection",
        "features": found.iter().map(|o| item_of(b, o)).collect::<Vec<_>>(),
        "numberReturned": found.len(),
        "links": links,
    })
}

async fn items(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    state.dataplane.volume(caller.who(), &id).await?;
    let body = params.body()?;
    let q = query_of(&body, Some(vec![id.clone()]))?;
    let found = state.dataplane.search_science(caller.who(), &q).await?;
    let b = base(&state, &headers);
    let extra = query_string(&params);
    Ok(geojson(page(&b, &found, &q, |token| {
        link(
            "next",
            format!("{b}/stac/collections/{id}/items?{extra}token={token}"),
            GEOJSON,
        )
    })))
}

async fn item(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let entry = state
        .dataplane
        .science_object(caller.who(), &id, &key)
        .await?
        .filter(|o| o.t_min.is_some());
    match entry {
        Some(o) => Ok(geojson(item_of(&base(&state, &headers), &o))),
        None => Err(ApiError::not_found(format!(
            "no item `{key}` in collection `{id}` (an object whose headers give no time is not a STAC item)"
        ))),
    }
}

/// The search's own parameters but `token`, as a query string prefix (`k=v&`).
fn query_string(p: &SearchParams) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut out = String::new();
    for (k, v) in [
        ("ids", &p.ids),
        ("collections", &p.collections),
        ("bbox", &p.bbox),
        ("datetime", &p.datetime),
    ] {
        if let Some(v) = v {
            out.push_str(&format!("{k}={}&", enc(v)));
        }
    }
    if let Some(l) = p.limit {
        out.push_str(&format!("limit={l}&"));
    }
    out
}

async fn search(
    caller: &MaybeCaller,
    state: &AppState,
    body: &SearchBody,
) -> Result<(Vec<ScienceObject>, ScienceQuery), ApiError> {
    let q = query_of(body, None)?;
    let mut found = state.dataplane.search_science(caller.who(), &q).await?;
    if let Some(ids) = &body.ids {
        found.retain(|o| ids.contains(&o.key));
    }
    Ok((found, q))
}

async fn search_get(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let body = params.body()?;
    let (found, q) = search(&caller, &state, &body).await?;
    let b = base(&state, &headers);
    let extra = query_string(&params);
    Ok(geojson(page(&b, &found, &q, |token| {
        link(
            "next",
            format!("{b}/stac/search?{extra}token={token}"),
            GEOJSON,
        )
    })))
}

async fn search_post(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SearchBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let (found, q) = search(&caller, &state, &body).await?;
    let b = base(&state, &headers);
    Ok(geojson(page(&b, &found, &q, |token| {
        json!({
            "rel": "next",
            "href": format!("{b}/stac/search"),
            "type": GEOJSON,
            "method": "POST",
            "body": {"token": token},
            "merge": true,
        })
    })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn longitudes_wrap_to_plus_minus_180() {
        assert_eq!(lon(0.0), 0.0);
        assert_eq!(lon(180.0), 180.0);
        assert_eq!(lon(190.0), -170.0);
        assert_eq!(lon(359.5), -0.5);
    }

    #[test]
    fn a_footprint_across_ra_180_is_split() {
        let region = [[179.0, -1.0], [181.0, -1.0], [181.0, 1.0], [179.0, 1.0]];
        let (g, bbox) = geometry(&region).unwrap();
        assert_eq!(g["type"], "MultiPolygon", "{g}");
        assert_eq!(bbox, json!([179.0, -1.0, -179.0, 1.0]));
        let parts = g["coordinates"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        for part in parts {
            for p in part[0].as_array().unwrap() {
                let l = p[0].as_f64().unwrap();
                assert!((-180.0..=180.0).contains(&l), "{g}");
            }
        }
        let (g, bbox) = geometry(&[[10.0, 0.0], [11.0, 0.0], [11.0, 1.0], [10.0, 1.0]]).unwrap();
        assert_eq!(g["type"], "Polygon");
        assert_eq!(bbox, json!([10.0, 0.0, 11.0, 1.0]));
        // Across RA 0 (longitude 0): no split.
        let (g, _) = geometry(&[[359.5, 0.0], [0.5, 0.0], [0.5, 1.0], [359.5, 1.0]]).unwrap();
        assert_eq!(g["type"], "Polygon", "{g}");
    }

    #[test]
    fn search_parameters_are_checked_by_name() {
        assert!(interval("2026-01-01T00:00:00Z").is_ok());
        let (a, b) = interval("../2026-01-02T00:00:00Z").unwrap();
        assert!(a < b);
        assert!(interval("yesterday").is_err());
        assert!(interval("2026-01-02T00:00:00Z/2026-01-01T00:00:00Z").is_err());
        assert!(sky_box(&[1.0, 2.0, 3.0]).is_err());
        assert!(sky_box(&[0.0, -95.0, 1.0, 0.0]).is_err());
        assert_eq!(
            sky_box(&[-10.0, -5.0, 10.0, 5.0]).unwrap(),
            SkyRegion::Box {
                ra_min: 350.0,
                ra_max: 10.0,
                dec_min: -5.0,
                dec_max: 5.0
            }
        );
        let o = ScienceObject {
            volume: "v".into(),
            key: "a/b\nc.fits".into(),
            etag: None,
            size: 1,
            indexed_at: archway_catalog::Timestamp(0),
            dataproduct_type: None,
            calib_level: None,
            obs_id: None,
            target_name: None,
            s_ra: None,
            s_dec: None,
            s_fov: None,
            s_region: None,
            t_min: None,
            t_max: None,
            t_exptime: None,
            em_min: None,
            em_max: None,
            instrument_name: None,
            facility_name: None,
            hdus: Value::Null,
            notes: vec![],
        };
        // Keys may hold anything but the newline the token puts after the volume... and
        // the token still round-trips a key with one (split at the first newline).
        assert_eq!(
            after_of(&token_of(&o)).unwrap(),
            ("v".into(), "a/b\nc.fits".into())
        );
        assert!(after_of("zz").is_err());
    }
}
