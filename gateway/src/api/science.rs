//! Searching the science index: the FITS objects of the volumes the caller may read, by sky
//! position (cone or box, ICRS degrees), time (MJD) and volume. The STAC and SIA fronts answer
//! from the same search.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use archway_catalog::{ScienceObject, ScienceQuery, SkyRegion};

use super::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

/// The search's parameters: a cone (`ra`, `dec`, `radius`) or a box (`ra_min`, `ra_max`,
/// `dec_min`, `dec_max`; `ra_min > ra_max` crosses RA 0), a time interval (`t_min`, `t_max`,
/// MJD: objects observed within it), `volumes` (comma-separated ids), `limit` (default 100,
/// at most 1000) and the page after (`after_volume`, `after_key`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub radius: Option<f64>,
    pub ra_min: Option<f64>,
    pub ra_max: Option<f64>,
    pub dec_min: Option<f64>,
    pub dec_max: Option<f64>,
    pub t_min: Option<f64>,
    pub t_max: Option<f64>,
    pub volumes: Option<String>,
    pub limit: Option<usize>,
    pub after_volume: Option<String>,
    pub after_key: Option<String>,
}

/// One page of matches; `next` names the page after, when there may be one.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScienceResults {
    #[schema(value_type = Vec<Object>)]
    pub objects: Vec<ScienceObject>,
    pub next: Option<ScienceCursor>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScienceCursor {
    pub after_volume: String,
    pub after_key: String,
}

impl SearchParams {
    /// The catalogue's query, or the parameter that is wrong.
    pub fn query(&self) -> Result<ScienceQuery, ApiError> {
        let bad =
            |field: &str, message: String| Err(ApiError::bad_request(Some(field.into()), message));
        let cone = (self.ra, self.dec, self.radius);
        let boxed = (self.ra_min, self.ra_max, self.dec_min, self.dec_max);
        let sky = match (cone, boxed) {
            ((None, None, None), (None, None, None, None)) => None,
            ((Some(ra), Some(dec), Some(radius)), (None, None, None, None)) => {
                Some(SkyRegion::Cone { ra, dec, radius })
            }
            ((None, None, None), (Some(ra_min), Some(ra_max), Some(dec_min), Some(dec_max))) => {
                Some(SkyRegion::Box {
                    ra_min,
                    ra_max,
                    dec_min,
                    dec_max,
                })
            }
            _ => {
                return bad(
                    "ra",
                    "a sky search is a cone (ra, dec, radius) or a box (ra_min, ra_max, \
                     dec_min, dec_max), each given whole"
                        .into(),
                );
            }
        };
        let time = match (self.t_min, self.t_max) {
            (None, None) => None,
            (a, b) => {
                let (a, b) = (a.unwrap_or(f64::MIN), b.unwrap_or(f64::MAX));
                if a > b {
                    return bad("t_min", format!("t_min {a} is after t_max {b}"));
                }
                Some((a, b))
            }
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return bad("limit", format!("limit {limit} is not within 1..1000"));
        }
        let after = match (&self.after_volume, &self.after_key) {
            (Some(v), Some(k)) => Some((v.clone(), k.clone())),
            (None, None) => None,
            _ => return bad("after_key", "after_volume and after_key go together".into()),
        };
        Ok(ScienceQuery {
            volumes: self.volumes.as_ref().map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }),
            sky,
            time,
            limit,
            after,
        })
    }
}

/// Search the science index of the volumes the caller may read.
#[utoipa::path(
    get,
    path = "/science",
    tag = "science",
    params(SearchParams),
    responses(
        (status = 200, body = ScienceResults),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
async fn search(
    caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ScienceResults>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let query = params.query()?;
    let objects = state.dataplane.search_science(caller.who(), &query).await?;
    let next = (objects.len() == query.limit)
        .then(|| objects.last())
        .flatten()
        .map(|o| ScienceCursor {
            after_volume: o.volume.clone(),
            after_key: o.key.clone(),
        });
    Ok(Json(ScienceResults { objects, next }))
}
