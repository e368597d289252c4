//! IVOA Simple Image Access 2.0 at `/sia/v2`: the science index as ObsCore records in
//! VOTable, for `pyvo.dal.SIA2Service` and the astronomy tools built on it. A thin front: the
//! records come from the dataplane's access-checked search (a bearer API token; without one,
//! public volumes).
//!
//! - `GET /sia/v2/query`: `POS` (`CIRCLE ra dec radius`, `RANGE ra1 ra2 dec1 dec2`,
//!   `POLYGON ra1 dec1 ra2 dec2 ...`, degrees), `BAND` (metres), `TIME` (MJD), `COLLECTION`
//!   (volume ids), `INSTRUMENT`, `FACILITY`, `DPTYPE`, `CALIB`, `TARGET`, `EXPTIME`, `FOV`,
//!   `ID`, `MAXREC`. Values of one parameter are OR-ed, parameters AND-ed (DALI); intervals
//!   are `lo hi` with `-Inf`/`+Inf` open.
//! - `GET /sia/v2/capabilities`, `/sia/v2/availability`: VOSI.
//!
//! Errors are VOTables too (`QUERY_STATUS` `ERROR`, HTTP 400), naming the parameter.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use archway_catalog::{ScienceObject, ScienceQuery, SkyRegion};

use crate::auth::MaybeCaller;
use crate::state::AppState;

const SIA2_STANDARD: &str = "ivo://ivoa.net/std/SIA#query-2.0";
/// Records answered by default, and at most.
const DEFAULT_MAXREC: usize = 1000;
const MAX_MAXREC: usize = 10_000;
/// Index entries looked at for one query without a position, at most.
const MAX_SCANNED: usize = 200_000;

/// The SIA routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/sia/v2/query", get(query))
        .route("/sia/v2/capabilities", get(capabilities))
        .route("/sia/v2/availability", get(availability))
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/x-votable+xml;content=datatype",
        )],
        body,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    crate::s3::xml_escape(s)
}

async fn capabilities(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let b = crate::stac::base(&state, &headers);
    let cap = |id: &str, path: &str, extra: &str| {
        format!(
            "  <capability standardID=\"{id}\">\n    <interface xsi:type=\"vs:ParamHTTP\"{extra}>\
             <accessURL use=\"full\">{b}/sia/v2/{path}</accessURL></interface>\n  </capability>\n"
        )
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<vosi:capabilities \
         xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n{}{}{}</vosi:capabilities>\n",
        cap("ivo://ivoa.net/std/VOSI#capabilities", "capabilities", ""),
        cap("ivo://ivoa.net/std/VOSI#availability", "availability", ""),
        cap(SIA2_STANDARD, "query", " role=\"std\" version=\"2.0\""),
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn availability(State(state): State<AppState>) -> Response {
    let up = state.dataplane.catalog().site_id().await.is_ok();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<vosi:availability \
         xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\n  \
         <vosi:available>{up}</vosi:available>\n{}</vosi:availability>\n",
        if up {
            String::new()
        } else {
            "  <vosi:note>the catalogue database is unreachable</vosi:note>\n".into()
        }
    );
    (
        if up {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        [(header::CONTENT_TYPE, "text/xml")],
        body,
    )
        .into_response()
}

/// A parameter that is wrong: its name and why.
#[derive(Debug)]
struct Bad(String);

/// An interval `lo hi` (`-Inf`, `+Inf`, `Inf`, `NaN` as open ends).
fn interval(name: &str, v: &str) -> Result<(f64, f64), Bad> {
    let nums: Vec<&str> = v.split_whitespace().collect();
    let num = |s: &str| -> Result<f64, Bad> {
        match s.to_ascii_lowercase().as_str() {
            "-inf" => Ok(f64::NEG_INFINITY),
            "inf" | "+inf" => Ok(f64::INFINITY),
            "nan" => Ok(f64::NAN),
            _ => s
                .parse()
                .map_err(|_| Bad(format!("{name} `{v}`: `{s}` is not a number"))),
        }
    };
    match nums.as_slice() {
        [one] => {
            let x = num(one)?;
            Ok((x, x))
        }
        [lo, hi] => {
            let (lo, hi) = (num(lo)?, num(hi)?);
            let lo = if lo.is_nan() { f64::NEG_INFINITY } else { lo };
            let hi = if hi.is_nan() { f64::INFINITY } else { hi };
            if lo > hi {
                return Err(Bad(format!("{name} `{v}`: the interval is empty")));
            }
            Ok((lo, hi))
        }
        _ => Err(Bad(format!("{name} `{v}` is not `lo hi`"))),
    }
}

/// A POS value: where, and (for a polygon) its vertices to test against.
#[derive(Clone, Debug)]
struct Pos {
    region: SkyRegion,
    polygon: Option<Vec<(f64, f64)>>,
}

fn pos(v: &str) -> Result<Pos, Bad> {
    let mut words = v.split_whitespace();
    let shape = words.next().unwrap_or("").to_ascii_uppercase();
    let nums: Vec<f64> = words
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "-inf" => Ok(f64::NEG_INFINITY),
            "inf" | "+inf" => Ok(f64::INFINITY),
            _ => w.parse::<f64>(),
        })
        .collect::<Result<_, _>>()
        .map_err(|_| Bad(format!("POS `{v}`: its values are not numbers")))?;
    match (shape.as_str(), nums.as_slice()) {
        ("CIRCLE", [ra, dec, r]) => Ok(Pos {
            region: SkyRegion::Cone {
                ra: *ra,
                dec: *dec,
                radius: *r,
            },
            polygon: None,
        }),
        ("RANGE", [ra1, ra2, dec1, dec2]) => {
            let (ra_min, ra_max) = if ra1.is_infinite() || ra2.is_infinite() {
                (0.0, 360.0)
            } else {
                (*ra1, *ra2)
            };
            Ok(Pos {
                region: SkyRegion::Box {
                    ra_min,
                    ra_max,
                    dec_min: dec1.max(-90.0),
                    dec_max: dec2.min(90.0),
                },
                polygon: None,
            })
        }
        ("POLYGON", n) if n.len() >= 6 && n.len() % 2 == 0 => {
            let vertices: Vec<(f64, f64)> = n.chunks(2).map(|p| (p[0], p[1])).collect();
            // Candidates from the smallest circle about the vertices' mean direction.
            let centre = mean_direction(&vertices);
            let radius = vertices
                .iter()
                .map(|&p| archway_compute::wcs::separation(centre, p))
                .fold(0.0f64, f64::max);
            Ok(Pos {
                region: SkyRegion::Cone {
                    ra: centre.0,
                    dec: centre.1,
                    radius,
                },
                polygon: Some(vertices),
            })
        }
        _ => Err(Bad(format!(
            "POS `{v}` is not `CIRCLE ra dec radius`, `RANGE ra1 ra2 dec1 dec2` or `POLYGON ra1 dec1 ra2 dec2 ra3 dec3 ...`"
        ))),
    }
}

fn unit((ra, dec): (f64, f64)) -> [f64; 3] {
    let (sa, ca) = ra.to_radians().sin_cos();
    let (sd, cd) = dec.to_radians().sin_cos();
    [cd * ca, cd * sa, sd]
}

fn mean_direction(points: &[(f64, f64)]) -> (f64, f64) {
    let s = points
        .iter()
        .map(|&p| unit(p))
        .fold([0.0; 3], |a, u| [a[0] + u[0], a[1] + u[1], a[2] + u[2]]);
    let n = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
        .sqrt()
        .max(f64::MIN_POSITIVE);
    (
        s[1].atan2(s[0]).to_degrees().rem_euclid(360.0),
        (s[2] / n).clamp(-1.0, 1.0).asin().to_degrees(),
    )
}

/// Whether a point lies inside a spherical polygon (edges great circles, convex or not but
/// smaller than a hemisphere): on the gnomonic projection about the polygon's centre, where
/// great circles are straight lines, by the even-odd rule.
fn inside(polygon: &[(f64, f64)], p: (f64, f64)) -> bool {
    let c = unit(mean_direction(polygon));
    // A tangent plane basis at c.
    let east = {
        let e = [-c[1], c[0], 0.0];
        let n = (e[0] * e[0] + e[1] * e[1]).sqrt();
        if n < 1e-12 {
            [1.0, 0.0, 0.0]
        } else {
            [e[0] / n, e[1] / n, 0.0]
        }
    };
    let north = [
        c[1] * east[2] - c[2] * east[1],
        c[2] * east[0] - c[0] * east[2],
        c[0] * east[1] - c[1] * east[0],
    ];
    let project = |q: (f64, f64)| -> Option<(f64, f64)> {
        let u = unit(q);
        let d = u[0] * c[0] + u[1] * c[1] + u[2] * c[2];
        if d <= 1e-9 {
            return None;
        }
        let x = (u[0] * east[0] + u[1] * east[1] + u[2] * east[2]) / d;
        let y = (u[0] * north[0] + u[1] * north[1] + u[2] * north[2]) / d;
        Some((x, y))
    };
    let Some((px, py)) = project(p) else {
        return false;
    };
    let Some(ring) = polygon
        .iter()
        .map(|&q| project(q))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let mut odd = false;
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
        if (a.1 > py) != (b.1 > py) && px < a.0 + (py - a.1) * (b.0 - a.0) / (b.1 - a.1) {
            odd = !odd;
        }
    }
    odd
}

/// The query's constraints.
#[derive(Debug, Default)]
struct Constraints {
    pos: Vec<Pos>,
    band: Vec<(f64, f64)>,
    time: Vec<(f64, f64)>,
    exptime: Vec<(f64, f64)>,
    fov: Vec<(f64, f64)>,
    collection: Vec<String>,
    instrument: Vec<String>,
    facility: Vec<String>,
    dptype: Vec<String>,
    calib: Vec<i64>,
    target: Vec<String>,
    id: Vec<String>,
    maxrec: usize,
}

impl Constraints {
    fn parse(raw: &str) -> Result<Constraints, Bad> {
        let mut c = Constraints {
            maxrec: DEFAULT_MAXREC,
            ..Default::default()
        };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let name = k.to_ascii_uppercase();
            let v = v.trim().to_string();
            match name.as_str() {
                "POS" => c.pos.push(pos(&v)?),
                "BAND" => c.band.push(interval("BAND", &v)?),
                "TIME" => c.time.push(interval("TIME", &v)?),
                "EXPTIME" => c.exptime.push(interval("EXPTIME", &v)?),
                "FOV" => c.fov.push(interval("FOV", &v)?),
                "COLLECTION" => c.collection.push(v),
                "INSTRUMENT" => c.instrument.push(v),
                "FACILITY" => c.facility.push(v),
                "DPTYPE" => c.dptype.push(v.to_ascii_lowercase()),
                "TARGET" => c.target.push(v),
                "ID" => c.id.push(v),
                "CALIB" => c.calib.push(
                    v.parse()
                        .map_err(|_| Bad(format!("CALIB `{v}` is not an integer")))?,
                ),
                "MAXREC" => {
                    c.maxrec = v
                        .parse::<usize>()
                        .map_err(|_| Bad(format!("MAXREC `{v}` is not a count")))?
                        .min(MAX_MAXREC)
                }
                // Accepted and answered as the only choice there is.
                "RESPONSEFORMAT" | "REQUEST" | "LANG" => {}
                _ => {
                    return Err(Bad(format!(
                        "parameter {name} is not one this service takes (POS, BAND, TIME, \
                         COLLECTION, INSTRUMENT, FACILITY, DPTYPE, CALIB, TARGET, EXPTIME, FOV, \
                         ID, MAXREC)"
                    )));
                }
            }
        }
        Ok(c)
    }

    fn publisher_did(o: &ScienceObject) -> String {
        format!("ivo://archway/{}?{}", o.volume, o.key)
    }

    /// Everything but the sky region (which the index applied, bar polygons).
    fn keeps(&self, o: &ScienceObject) -> bool {
        let within = |x: Option<f64>, set: &[(f64, f64)]| {
            set.is_empty() || x.is_some_and(|x| set.iter().any(|&(a, b)| x >= a && x <= b))
        };
        let overlaps = |lo: Option<f64>, hi: Option<f64>, set: &[(f64, f64)]| {
            set.is_empty()
                || match (lo, hi.or(lo)) {
                    (Some(lo), Some(hi)) => set.iter().any(|&(a, b)| lo <= b && hi >= a),
                    _ => false,
                }
        };
        let named = |x: &Option<String>, set: &[String]| {
            set.is_empty()
                || x.as_ref()
                    .is_some_and(|x| set.iter().any(|s| s.eq_ignore_ascii_case(x)))
        };
        (self.collection.is_empty() || self.collection.contains(&o.volume))
            && overlaps(o.em_min, o.em_max, &self.band)
            && overlaps(o.t_min, o.t_max, &self.time)
            && within(o.t_exptime, &self.exptime)
            && within(o.s_fov, &self.fov)
            && named(&o.instrument_name, &self.instrument)
            && named(&o.facility_name, &self.facility)
            && named(&o.target_name, &self.target)
            && (self.dptype.is_empty()
                || o.dataproduct_type
                    .as_ref()
                    .is_some_and(|d| self.dptype.contains(d)))
            && (self.calib.is_empty() || o.calib_level.is_some_and(|l| self.calib.contains(&l)))
            && (self.id.is_empty() || self.id.contains(&Self::publisher_did(o)))
            && (self.pos.is_empty()
                || self
                    .pos
                    .iter()
                    .any(|p| match (&p.polygon, o.s_ra, o.s_dec) {
                        (None, _, _) => true,
                        (Some(poly), Some(ra), Some(dec)) => {
                            inside(poly, (ra, dec))
                                || poly.iter().any(|&v| {
                                    archway_compute::wcs::separation(v, (ra, dec))
                                        <= o.s_fov.unwrap_or(0.0) / 2.0
                                })
                        }
                        _ => false,
                    }))
    }
}

async fn query(
    caller: MaybeCaller,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let c = match Constraints::parse(raw.as_deref().unwrap_or("")) {
        Ok(c) => c,
        Err(Bad(message)) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let volumes = (!c.collection.is_empty()).then(|| c.collection.clone());
    let mut found: Vec<ScienceObject> = Vec::new();
    let mut overflow = false;
    let searches: Vec<Option<SkyRegion>> = if c.pos.is_empty() {
        vec![None]
    } else {
        c.pos.iter().map(|p| Some(p.region)).collect()
    };
    for sky in searches {
        let mut after = None;
        let mut scanned = 0;
        loop {
            let q = ScienceQuery {
                volumes: volumes.clone(),
                sky,
                time: None,
                limit: if sky.is_some() { 100_000 } else { 1000 },
                after: after.clone(),
            };
            let page = match state.dataplane.search_science(caller.who(), &q).await {
                Ok(p) => p,
                Err(e) => {
                    let api = crate::error::ApiError::from(e);
                    return error(api.status, &api.message);
                }
            };
            scanned += page.len();
            let full = page.len() == q.limit;
            after = page.last().map(|o| (o.volume.clone(), o.key.clone()));
            found.extend(page.into_iter().filter(|o| c.keeps(o)));
            if !full || sky.is_some() {
                break;
            }
            if scanned >= MAX_SCANNED {
                overflow = true;
                break;
            }
        }
    }
    found.sort_by(|a, b| (&a.volume, &a.key).cmp(&(&b.volume, &b.key)));
    found.dedup_by(|a, b| a.volume == b.volume && a.key == b.key);
    if found.len() > c.maxrec {
        found.truncate(c.maxrec);
        overflow = true;
    }
    let b = crate::stac::base(&state, &headers);
    xml(StatusCode::OK, votable(&b, &found, overflow))
}

fn error(status: StatusCode, message: &str) -> Response {
    xml(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" \
             xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n <RESOURCE type=\"results\">\n  \
             <INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>\n </RESOURCE>\n</VOTABLE>\n",
            escape(message)
        ),
    )
}

/// The ObsCore columns: name, VOTable datatype, unit, UCD, utype.
const COLUMNS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "dataproduct_type",
        "char",
        "",
        "meta.code.class",
        "obscore:ObsDataset.dataProductType",
    ),
    (
        "calib_level",
        "int",
        "",
        "meta.code;obs.calib",
        "obscore:ObsDataset.calibLevel",
    ),
    (
        "obs_collection",
        "char",
        "",
        "meta.id",
        "obscore:DataID.Collection",
    ),
    (
        "obs_id",
        "char",
        "",
        "meta.id",
        "obscore:DataID.observationID",
    ),
    (
        "obs_publisher_did",
        "char",
        "",
        "meta.ref.ivoid",
        "obscore:Curation.PublisherDID",
    ),
    (
        "access_url",
        "char",
        "",
        "meta.ref.url",
        "obscore:Access.Reference",
    ),
    (
        "access_format",
        "char",
        "",
        "meta.code.mime",
        "obscore:Access.Format",
    ),
    (
        "access_estsize",
        "long",
        "kbyte",
        "phys.size;meta.file",
        "obscore:Access.Size",
    ),
    (
        "target_name",
        "char",
        "",
        "meta.id;src",
        "obscore:Target.Name",
    ),
    (
        "s_ra",
        "double",
        "deg",
        "pos.eq.ra",
        "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
    ),
    (
        "s_dec",
        "double",
        "deg",
        "pos.eq.dec",
        "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
    ),
    (
        "s_fov",
        "double",
        "deg",
        "phys.angSize;instr.fov",
        "obscore:Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
    ),
    (
        "s_region",
        "char",
        "",
        "pos.outline;obs.field",
        "obscore:Char.SpatialAxis.Coverage.Support.Area",
    ),
    (
        "t_min",
        "double",
        "d",
        "time.start;obs.exposure",
        "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
    ),
    (
        "t_max",
        "double",
        "d",
        "time.end;obs.exposure",
        "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
    ),
    (
        "t_exptime",
        "double",
        "s",
        "time.duration;obs.exposure",
        "obscore:Char.TimeAxis.Coverage.Support.Extent",
    ),
    (
        "em_min",
        "double",
        "m",
        "em.wl;stat.min",
        "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
    ),
    (
        "em_max",
        "double",
        "m",
        "em.wl;stat.max",
        "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
    ),
    (
        "instrument_name",
        "char",
        "",
        "meta.id;instr",
        "obscore:Provenance.ObsConfig.Instrument.name",
    ),
    (
        "facility_name",
        "char",
        "",
        "meta.id;instr.tel",
        "obscore:Provenance.ObsConfig.Facility.name",
    ),
];

fn votable(b: &str, found: &[ScienceObject], overflow: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" \
         xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n <RESOURCE type=\"results\">\n",
    );
    let _ = writeln!(
        out,
        "  <INFO name=\"QUERY_STATUS\" value=\"{}\"/>",
        if overflow { "OVERFLOW" } else { "OK" }
    );
    out.push_str("  <TABLE>\n");
    for (name, datatype, unit, ucd, utype) in COLUMNS {
        let size = if *datatype == "char" {
            " arraysize=\"*\""
        } else {
            ""
        };
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" unit=\"{unit}\"")
        };
        let null = match *datatype {
            "int" | "long" => "<VALUES null=\"-1\"/>",
            _ => "",
        };
        let _ = writeln!(
            out,
            "   <FIELD name=\"{name}\" datatype=\"{datatype}\"{size}{unit} ucd=\"{ucd}\" utype=\"{utype}\">{null}</FIELD>"
        );
    }
    out.push_str("   <DATA><TABLEDATA>\n");
    let f = |x: Option<f64>| x.map(|v| format!("{v:.12e}")).unwrap_or_default();
    let s = |x: &Option<String>| escape(x.as_deref().unwrap_or(""));
    for o in found {
        let key_path = crate::stac::key_path(&o.key);
        let region = o.s_region.as_ref().map(|r| {
            let coords: Vec<String> = r.iter().map(|p| format!("{} {}", p[0], p[1])).collect();
            format!("POLYGON ICRS {}", coords.join(" "))
        });
        let cells = [
            s(&o.dataproduct_type),
            o.calib_level.unwrap_or(-1).to_string(),
            escape(&o.volume),
            s(&o.obs_id),
            escape(&Constraints::publisher_did(o)),
            escape(&format!("{b}/{}/{key_path}", o.volume)),
            "application/fits".into(),
            o.size.div_ceil(1024).to_string(),
            s(&o.target_name),
            f(o.s_ra),
            f(o.s_dec),
            f(o.s_fov),
            s(&region),
            f(o.t_min),
            f(o.t_max),
            f(o.t_exptime),
            f(o.em_min),
            f(o.em_max),
            s(&o.instrument_name),
            s(&o.facility_name),
        ];
        out.push_str("    <TR>");
        for cell in cells {
            let _ = write!(out, "<TD>{cell}</TD>");
        }
        out.push_str("</TR>\n");
    }
    out.push_str("   </TABLEDATA></DATA>\n  </TABLE>\n </RESOURCE>\n</VOTABLE>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_as_dali_writes_them() {
        assert!(matches!(
            pos("CIRCLE 202.47 47.19 0.1").unwrap().region,
            SkyRegion::Cone { .. }
        ));
        assert!(matches!(
            pos("RANGE 83 84 21.5 22.5").unwrap().region,
            SkyRegion::Box { .. }
        ));
        assert!(pos("POLYGON 10 10 11 10 11 11").unwrap().polygon.is_some());
        assert!(pos("CIRCLE 1 2").is_err());
        assert!(pos("SQUARE 1 2 3").is_err());
        assert!(interval("TIME", "60000 -Inf").is_err());
        assert_eq!(interval("TIME", "-Inf 60000").unwrap().1, 60000.0);
    }

    #[test]
    fn points_inside_a_spherical_polygon() {
        let square = [(10.0, 10.0), (11.0, 10.0), (11.0, 11.0), (10.0, 11.0)];
        assert!(inside(&square, (10.5, 10.5)));
        assert!(!inside(&square, (12.0, 10.5)));
        // Across RA 0.
        let wrap = [(359.5, -0.5), (0.5, -0.5), (0.5, 0.5), (359.5, 0.5)];
        assert!(inside(&wrap, (0.0, 0.0)));
        assert!(inside(&wrap, (359.9, 0.1)));
        assert!(!inside(&wrap, (1.0, 0.0)));
    }

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        let e = Constraints::parse("POS=CIRCLE%201%202%203&COLOUR=red").unwrap_err();
        assert!(e.0.contains("COLOUR"), "{e:?}");
        let c = Constraints::parse("pos=CIRCLE%201%202%203&maxrec=5&CALIB=2").unwrap();
        assert_eq!((c.pos.len(), c.maxrec, c.calib.clone()), (1, 5, vec![2]));
    }
}
