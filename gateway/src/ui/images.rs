//! The pictures of the object page: a quick-look PNG of an image HDU and a histogram SVG of
//! its values, both computed where the data lies (the `bin` and `histogram` reductions; at the
//! peer gateway for a volume of a peer), bounded in size and time, and cached under the
//! object's ETag.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use archway_compute::array::{Array, ArrayFormat};
use archway_compute::hdu::{self, HduKind, HduSelector, Source};
use archway_compute::quicklook::{self, Stretch};
use archway_compute::{Op as ComputeOp, ReduceRequest};
use archway_dataplane::{Op, ReadRequest, VolumeStore};

use super::{Session, UiError, UiQuery, UiResult, image_error};
use crate::error::ApiError;
use crate::peer::{Chain, Forward};
use crate::state::AppState;

/// The default quick-look side, in pixels.
const DEFAULT_SIDE: u64 = 512;
/// Histogram bins.
const BINS: usize = 64;
/// The largest array a peer's quick-look answer may be (2048 × 2048 float64 and its header).
const MAX_PEER_QUICKLOOK: usize = 2048 * 2048 * 8 + 4096;

#[derive(Debug, Deserialize)]
pub(super) struct ImageForm {
    key: String,
    #[serde(default)]
    hdu: Option<usize>,
    #[serde(default)]
    stretch: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// `GET /ui/volumes/{id}/quicklook.png?key=&hdu=&stretch=&size=`.
pub(super) async fn quicklook(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    UiQuery(form): UiQuery<ImageForm>,
) -> Response {
    picture(
        "image/png",
        quicklook_png(&state, &session, &id, &form).await,
    )
}

/// `GET /ui/volumes/{id}/histogram.svg?key=&hdu=`.
pub(super) async fn histogram(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    UiQuery(form): UiQuery<ImageForm>,
) -> Response {
    picture(
        "image/svg+xml",
        histogram_svg(&state, &session, &id, &form).await,
    )
}

/// A picture's answer (kept privately for five minutes), or its error as plain text.
fn picture(content_type: &'static str, made: Result<impl IntoResponse, UiError>) -> Response {
    match made {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            body,
        )
            .into_response(),
        Err(e) => image_error(e),
    }
}

/// The volume (read access checked, on every request, cached picture or not) and the cache
/// key of a picture of the object's current version.
async fn open(
    state: &AppState,
    session: &Session,
    id: &str,
    form: &ImageForm,
    what: &str,
) -> UiResult<(VolumeStore, String, u64)> {
    archway_dataplane::key::parse_key(&form.key)?;
    let volume = super::pages::open_volume(state, session, id, Op::Get).await?;
    let info = volume.head(&form.key, &ReadRequest::default()).await?;
    let cache_key = format!(
        "{what}\0{id}\0{}\0{}\0{:?}\0{:?}\0{:?}",
        form.key,
        info.etag.as_deref().unwrap_or_default(),
        form.hdu,
        form.stretch,
        form.size
    );
    Ok((volume, cache_key, info.size))
}

/// Runs `make` once for concurrent askers of the same picture, within the time limit, and
/// keeps its answer.
async fn cached(
    state: &AppState,
    cache_key: String,
    make: impl Future<Output = UiResult<Bytes>>,
) -> UiResult<Bytes> {
    let limit = state.server.quicklook_timeout;
    let bounded = async move {
        tokio::time::timeout(limit, make).await.unwrap_or_else(|_| {
            Err(UiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the picture took longer than {} (server.quicklook_timeout); try a smaller \
                     size or reduce the data with the form below",
                    humantime::format_duration(limit)
                ),
            ))
        })
    };
    state
        .ui
        .quicklooks
        .try_get_with(cache_key, bounded)
        .await
        .map_err(|e: Arc<UiError>| UiError {
            status: e.status,
            message: e.message.clone(),
            request_id: e.request_id.clone(),
        })
}

async fn quicklook_png(
    state: &AppState,
    session: &Session,
    id: &str,
    form: &ImageForm,
) -> UiResult<Bytes> {
    let stretch = match form.stretch.as_deref() {
        None | Some("") => Stretch::default(),
        Some(s) => Stretch::parse(s).ok_or_else(|| {
            UiError::bad_request(format!(
                "`stretch` must be zscale, percentile or minmax, not `{s}`"
            ))
        })?,
    };
    let side = form.size.unwrap_or(DEFAULT_SIDE);
    if !(16..=quicklook::MAX_SIDE).contains(&side) {
        return Err(UiError::bad_request(format!(
            "`size` must be 16 to {} pixels (it is {side})",
            quicklook::MAX_SIDE
        )));
    }
    let (volume, cache_key, size) = open(state, session, id, form, "png").await?;
    let key = form.key.clone();
    let hdu = form.hdu;
    cached(state, cache_key, async move {
        let compute = |e| ApiError::compute(id, &key, e);
        let src = Source::with_size(volume.object_store(), &key, size).map_err(compute)?;
        let sel = hdu.map_or(HduSelector::FirstWithData, HduSelector::Index);
        let found = hdu::locate(&src, &sel).await.map_err(compute)?;
        let naxis = found.header.int("NAXIS").unwrap_or(0).clamp(0, 999);
        let shape: Vec<u64> = (1..=naxis)
            .map(|i| found.header.int(&format!("NAXIS{i}")).unwrap_or(0).max(0) as u64)
            .collect();
        if found.kind != HduKind::Image || found.data_len == 0 {
            return Err(UiError::bad_request(format!(
                "HDU {} of `{key}` is not an image with data: no quick-look",
                found.index
            )));
        }
        let factors = quicklook::factors(&shape, side).map_err(compute)?;
        let mut req = ReduceRequest::new(id, key.as_str(), ComputeOp::Bin);
        req.hdu = Some(found.index.to_string());
        req.factor = Some(factors);
        req.output = ArrayFormat::Npy;
        let array = binned(state, &volume, &req).await?;
        let png = tokio::task::spawn_blocking(move || quicklook::render_png(&array, stretch))
            .await
            .map_err(|e| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(compute)?;
        Ok(Bytes::from(png))
    })
    .await
}

/// The binned array: computed here, or at the peer gateway that holds the data.
async fn binned(state: &AppState, volume: &VolumeStore, req: &ReduceRequest) -> UiResult<Array> {
    let Some(peer) = volume.peer_location(&req.key) else {
        let r = archway_compute::run(volume.object_store(), req)
            .await
            .map_err(|e| ApiError::compute(&req.volume, &req.key, e))?;
        return r.array.ok_or_else(|| {
            UiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the binning answered no array",
            )
        });
    };
    let site = state.site_id().await?;
    let chain = Chain::default();
    let answer = crate::peer::reduce_to_array(
        &state.server,
        Forward {
            site,
            chain: &chain,
        },
        req,
        &peer,
    )
    .await?;
    let body = axum::body::to_bytes(answer.into_body(), MAX_PEER_QUICKLOOK)
        .await
        .map_err(|e| {
            UiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the peer gateway {}'s quick-look answer: {e}", peer.url),
            )
        })?;
    Array::from_npy(&body).map_err(|e| {
        UiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the peer gateway {}: {e}", peer.url),
        )
    })
}

async fn histogram_svg(
    state: &AppState,
    session: &Session,
    id: &str,
    form: &ImageForm,
) -> UiResult<Bytes> {
    let (volume, cache_key, _) = open(state, session, id, form, "svg").await?;
    let mut req = ReduceRequest::new(id, form.key.as_str(), ComputeOp::Histogram);
    req.hdu = form.hdu.map(|h| h.to_string());
    req.bins = Some(BINS);
    cached(state, cache_key, async move {
        let r = crate::api::reduce::reduce_one(state, &Chain::default(), &volume, &req).await?;
        let edges: Vec<f64> = serde_json::from_value(r.value["edges"].clone()).unwrap_or_default();
        let counts: Vec<u64> =
            serde_json::from_value(r.value["counts"].clone()).unwrap_or_default();
        Ok(Bytes::from(svg(&edges, &counts, r.hdu)))
    })
    .await
}

/// A histogram as an SVG bar chart, counts on a log scale (an image's sky dwarfs its stars).
fn svg(edges: &[f64], counts: &[u64], hdu: usize) -> String {
    const W: f64 = 480.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 36.0;
    const TOP: f64 = 12.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"11\"><title>Histogram of HDU {hdu}</title>\
         <rect width=\"{W}\" height=\"{H}\" fill=\"#fff\"/>"
    );
    if counts.is_empty() || edges.len() != counts.len() + 1 {
        out.push_str(
            "<text x=\"240\" y=\"130\" text-anchor=\"middle\">no finite values</text></svg>",
        );
        return out;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let log_top = (top + 1.0).log10();
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - TOP;
    let bar_w = plot_w / counts.len() as f64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let h = plot_h * (c as f64 + 1.0).log10() / log_top;
        let _ = write!(
            out,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"#3465a4\"><title>{} to {}: {c}</title></rect>",
            LEFT + i as f64 * bar_w,
            TOP + plot_h - h,
            (bar_w - 0.5).max(0.5),
            fmt_num(edges[i]),
            fmt_num(edges[i + 1]),
        );
    }
    let axis_y = TOP + plot_h;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{axis_y}\" stroke=\"#333\"/>\
         <text x=\"{LEFT}\" y=\"{}\" text-anchor=\"start\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">1</text></svg>",
        LEFT + plot_w,
        axis_y + 16.0,
        fmt_num(edges[0]),
        LEFT + plot_w,
        axis_y + 16.0,
        fmt_num(edges[edges.len() - 1]),
        LEFT - 4.0,
        TOP + 10.0,
        top as u64,
        LEFT - 4.0,
        axis_y,
    );
    out
}

fn fmt_num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{}", (x * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_has_a_bar_per_non_empty_bin_and_its_range() {
        let s = svg(&[0.0, 1.0, 2.0, 3.0], &[5, 0, 100], 1);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("fill=\"#3465a4\"").count(), 2);
        assert!(s.contains(">0</text>") && s.contains(">3</text>") && s.contains(">100</text>"));
        assert!(svg(&[], &[], 0).contains("no finite values"));
    }
}
