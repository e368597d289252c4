//! The pages that show: volume search with facets, a volume, its objects, one object (HDUs,
//! headers, quick-look, histogram, reduce form), and the sky search.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use archway_catalog::{Access, ScienceQuery, SkyRegion, Volume, VolumeKind, VolumeQuery};
use archway_compute::hdu::{self, HduKind, Source};
use archway_compute::obscore::mjd_to_iso;
use archway_dataplane::{ListRequest, Op, ReadRequest};

use super::html::{bytes, csrf_field, esc, page, q, seg};
use super::{Session, UiError, UiQuery, UiResult, or_error};
use crate::state::AppState;

/// Objects a listing page shows.
const PAGE_SIZE: usize = 100;
/// HDUs an object page reads (their headers only).
const MAX_HDUS: usize = 64;
/// Results of a sky search page.
const SKY_RESULTS: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchForm {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    mission: Option<String>,
    #[serde(default)]
    instrument: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

impl SearchForm {
    fn get(&self, facet: &str) -> Option<&str> {
        match facet {
            "mission" => self.mission.as_deref(),
            "instrument" => self.instrument.as_deref(),
            "tag" => self.tag.as_deref(),
            "kind" => self.kind.as_deref(),
            _ => None,
        }
        .filter(|v| !v.is_empty())
    }

    /// This search's link with `facet` set to `value` (or cleared, for None).
    fn with(&self, facet: &str, value: Option<&str>) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.q.as_deref().filter(|t| !t.is_empty()) {
            parts.push(format!("q={}", q(t)));
        }
        for f in FACETS {
            let v = if *f == facet { value } else { self.get(f) };
            if let Some(v) = v {
                parts.push(format!("{f}={}", q(v)));
            }
        }
        format!("/ui/volumes?{}", parts.join("&"))
    }
}

const FACETS: &[&str] = &["mission", "instrument", "tag", "kind"];

fn facet_values(v: &Volume, facet: &str) -> Vec<String> {
    match facet {
        "mission" => v.mission.iter().cloned().collect(),
        "instrument" => v.instrument.iter().cloned().collect(),
        "tag" => v.tags.clone(),
        "kind" => vec![v.kind.as_str().to_string()],
        _ => Vec::new(),
    }
}

/// `GET /ui/volumes`: the volumes the visitor may see, searched by words, narrowed by facets
/// (mission, instrument, tag, kind) with their counts.
pub(super) async fn volumes(
    session: Session,
    State(state): State<AppState>,
    UiQuery(form): UiQuery<SearchForm>,
) -> Response {
    let r = async {
        let query = VolumeQuery {
            q: form.q.clone().filter(|t| !t.trim().is_empty()),
            limit: Some(10_000),
            ..Default::default()
        };
        let found = state.dataplane.volumes(session.who(), &query).await?;
        // Facet counts over the volumes the other facets leave.
        let mut facets: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
        for facet in FACETS {
            let counts = facets.entry(facet).or_default();
            for (v, _) in &found {
                let others_match = FACETS.iter().filter(|f| *f != facet).all(|f| {
                    form.get(f)
                        .is_none_or(|want| facet_values(v, f).iter().any(|x| x == want))
                });
                if others_match {
                    for value in facet_values(v, facet) {
                        *counts.entry(value).or_default() += 1;
                    }
                }
            }
        }
        let shown: Vec<&(Volume, Access)> = found
            .iter()
            .filter(|(v, _)| {
                FACETS.iter().all(|f| {
                    form.get(f)
                        .is_none_or(|want| facet_values(v, f).iter().any(|x| x == want))
                })
            })
            .collect();

        let mut body = String::new();
        let _ = write!(
            body,
            "<h1>Volumes</h1>\n<form method=\"get\" action=\"/ui/volumes\" class=\"search\" \
             role=\"search\"><input type=\"search\" name=\"q\" value=\"{}\" \
             placeholder=\"Words in titles, descriptions, tags, missions\" \
             aria-label=\"Search volumes\">",
            esc(form.q.as_deref().unwrap_or_default())
        );
        for f in FACETS {
            if let Some(v) = form.get(f) {
                let _ = write!(
                    body,
                    "<input type=\"hidden\" name=\"{f}\" value=\"{}\">",
                    esc(v)
                );
            }
        }
        body.push_str("<button type=\"submit\">Search</button></form>\n<div class=\"columns\">\n");
        body.push_str("<aside class=\"facets\" id=\"facets\">");
        for (facet, counts) in &facets {
            if counts.is_empty() {
                continue;
            }
            let _ = write!(body, "<h2>{}</h2><ul>", esc(&capitalise(facet)));
            let chosen = form.get(facet);
            for (value, n) in counts {
                let on = chosen == Some(value.as_str());
                let href = form.with(facet, if on { None } else { Some(value) });
                let _ = write!(
                    body,
                    "<li><a href=\"{}\" class=\"facet{}\" data-facet=\"{facet}\">{}</a> \
                     <span class=\"count\">{n}</span></li>",
                    esc(&href),
                    if on { " on" } else { "" },
                    esc(value)
                );
            }
            body.push_str("</ul>");
        }
        body.push_str("</aside>\n<section class=\"results\" id=\"results\">");
        let _ = write!(
            body,
            "<p class=\"muted\">{} volume{}</p>",
            shown.len(),
            if shown.len() == 1 { "" } else { "s" }
        );
        if shown.is_empty() {
            body.push_str(
                "<p class=\"empty\">No volume you may see matches. Clear a facet or search with \
                 fewer words.</p>",
            );
        }
        for (v, access) in shown {
            let _ = write!(
                body,
                "<article class=\"volume\" data-volume=\"{id}\"><h2><a href=\"/ui/volumes/{sid}\">{title}</a> \
                 <code>{id}</code></h2><p>{desc}</p><p class=\"meta\">{badges}\
                 <span class=\"badge access\">{access}</span></p></article>",
                id = esc(&v.id),
                sid = seg(&v.id),
                title = esc(if v.title.is_empty() { &v.id } else { &v.title }),
                desc = esc(&excerpt(&v.description, 240)),
                badges = badges(v),
                access = access.as_str(),
            );
        }
        body.push_str("</section></div>");
        Ok(page("Volumes", Some(&session), &body))
    }
    .await;
    or_error(&session, r)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

fn badges(v: &Volume) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("mission", v.mission.as_deref()),
        ("instrument", v.instrument.as_deref()),
    ] {
        if let Some(value) = value {
            let _ = write!(
                out,
                "<span class=\"badge\" title=\"{label}\">{}</span> ",
                esc(value)
            );
        }
    }
    let _ = write!(
        out,
        "<span class=\"badge kind\">{}</span> ",
        v.kind.as_str()
    );
    for t in &v.tags {
        let _ = write!(out, "<span class=\"badge tag\">#{}</span> ", esc(t));
    }
    if v.public_read {
        out.push_str("<span class=\"badge public\">public</span> ");
    }
    if let Some((site, link)) = archway_dataplane::linked_site(v) {
        let _ = write!(
            out,
            "<span class=\"badge site\" title=\"held at this site, linked as {}\">at {}</span> ",
            esc(link),
            esc(site)
        );
    }
    out
}

/// `GET /ui/volumes/{id}`: what the volume is, how to reach it, who may; for admins, its
/// editing and grants.
pub(super) async fn volume(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    UiQuery(flash): UiQuery<Flash>,
) -> Response {
    let r = async {
        let (v, access) = state.dataplane.volume(session.who(), &id).await?;
        let base = crate::stac::base(&state, &headers);
        let mut body = String::new();
        if let Some(m) = flash.message() {
            let _ = write!(body, "<div class=\"notice\" role=\"status\" id=\"notice\">{}</div>", esc(m));
        }
        let _ = write!(
            body,
            "<h1>{}</h1><p class=\"meta\"><code id=\"volume-id\">{}</code> {}</p>",
            esc(if v.title.is_empty() { &v.id } else { &v.title }),
            esc(&v.id),
            badges(&v)
        );
        for para in v.description.split("\n\n").filter(|p| !p.trim().is_empty()) {
            let _ = write!(body, "<p class=\"description\">{}</p>", esc(para.trim()));
        }
        body.push_str("<dl class=\"facts\">");
        let mut fact = |k: &str, v: String| {
            let _ = write!(body, "<dt>{}</dt><dd>{v}</dd>", esc(k));
        };
        fact(
            "Licence",
            esc(v.license.as_deref().unwrap_or("not stated")),
        );
        fact("Providers", providers(&v));
        if let Some((site, link)) = archway_dataplane::linked_site(&v) {
            fact(
                "Held at",
                format!(
                    "<span id=\"site\">{}</span>, linked as <code>{}</code> (reductions run there)",
                    esc(site),
                    esc(link)
                ),
            );
        }
        fact("Kind", format!("{}{}", v.kind.as_str(), if v.read_only { ", read-only" } else { "" }));
        match (&v.last_scan, v.usage_bytes, v.usage_objects) {
            (_, Some(b), Some(n)) if v.kind == VolumeKind::Workspace => fact(
                "Holds",
                format!("{} in {n} objects{}", bytes(b), quota(&v)),
            ),
            (Some(s), _, _) => fact(
                "Holds",
                format!(
                    "<span id=\"size\">{}</span> in <span id=\"objects\">{}</span> objects \
                     <span class=\"muted\">(scanned {})</span>",
                    bytes(s.bytes),
                    s.objects,
                    esc(&s.scanned_at.to_string())
                ),
            ),
            _ => fact("Holds", "not scanned yet (<code>archway catalog volume scan</code>)".into()),
        }
        let extents = state.dataplane.science_extents(std::slice::from_ref(&v)).await?;
        if let Some(e) = extents.get(&v.id).filter(|e| e.objects > 0) {
            let sky = e.bbox.map_or("no sky positions".to_string(), |[w, s, e, n]| {
                format!("longitude (RA) {w:.3}° to {e:.3}°, Dec {s:.3}° to {n:.3}°")
            });
            let when = match (e.t_min.and_then(mjd_to_iso), e.t_max.and_then(mjd_to_iso)) {
                (Some(a), Some(b)) => format!("; {a} to {b}"),
                _ => String::new(),
            };
            fact(
                "Science index",
                format!(
                    "<span id=\"extent\">{} objects indexed: {}{}</span>",
                    e.objects,
                    esc(&sky),
                    esc(&when)
                ),
            );
        }
        fact(
            "Your access",
            format!("<span id=\"access\">{}</span>", access.as_str()),
        );
        fact(
            "Who may read",
            if v.public_read {
                "everyone, without signing in (public)".into()
            } else {
                "users and groups granted access (and admins)".into()
            },
        );
        body.push_str("</dl>");
        let _ = write!(
            body,
            "<p><a class=\"button\" id=\"browse\" href=\"/ui/volumes/{sid}/objects\">Browse objects</a> \
             <a href=\"/ui/search?volume={qid}\">Sky search in this volume</a> · \
             <a href=\"/stac/collections/{sid}\">STAC collection</a></p>",
            sid = seg(&v.id),
            qid = q(&v.id),
        );
        body.push_str(&snippets(&v, &base));
        // The dataplane decides who curates: it lists a volume's grants to admins only.
        match state.dataplane.grants(session.who(), Some(&v.id), None).await {
            Ok(grants) => body.push_str(&admin_forms(&session, &v, &grants)),
            Err(archway_dataplane::DataplaneError::NotPermitted { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(page(&v.id, Some(&session), &body))
    }
    .await;
    or_error(&session, r)
}

fn quota(v: &Volume) -> String {
    match v.quota_bytes {
        Some(q) => format!(" of a {} quota", bytes(q)),
        None => String::new(),
    }
}

fn providers(v: &Volume) -> String {
    let Some(list) = v.extra.get("providers").and_then(|p| p.as_array()) else {
        return "not stated".into();
    };
    let names: Vec<String> = list
        .iter()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let roles = p
                .get("roles")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({})", esc(&r)))
                .unwrap_or_default();
            Some(format!("{}{roles}", esc(name)))
        })
        .collect();
    if names.is_empty() {
        "not stated".into()
    } else {
        names.join("; ")
    }
}

/// Copy-ready ways to reach the volume: boto3, fsspec with astropy, the aws CLI, rclone and the
/// mount.
fn snippets(v: &Volume, base: &str) -> String {
    let id = &v.id;
    let boto3 = format!(
        "import boto3\n\ns3 = boto3.client(\"s3\", endpoint_url=\"{base}\")  # keys from `archway user key create`\n\
         for o in s3.list_objects_v2(Bucket=\"{id}\").get(\"Contents\", []):\n    print(o[\"Key\"], o[\"Size\"])"
    );
    let fsspec = format!(
        "import fsspec\nfrom astropy.io import fits\n\n\
         fs = fsspec.filesystem(\"s3\", endpoint_url=\"{base}\")\n\
         with fs.open(\"{id}/KEY.fits\") as f, fits.open(f) as hdul:\n    hdul.info()"
    );
    let aws = format!("aws --endpoint-url {base} s3 ls s3://{id}/ --recursive");
    let rclone = format!("rclone lsl :s3,provider=Other,endpoint={base},env_auth=true:{id}");
    let root = crate::stac::MOUNT_ROOT;
    let mount = format!("archway mount {root} --gateway {base} --volume {id}\nls {root}/{id}");
    let mut out = String::from("<h2>Use it</h2><div class=\"snippets\" id=\"snippets\">");
    for (name, code) in [
        ("boto3", boto3),
        ("fsspec + astropy", fsspec),
        ("aws CLI", aws),
        ("rclone", rclone),
        ("Mount", mount),
    ] {
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption><pre><code>{}</code></pre></figure>",
            esc(name),
            esc(&code)
        );
    }
    out.push_str("</div>");
    out
}

/// An admin's forms on the volume page: its description, and its grants.
fn admin_forms(session: &Session, v: &Volume, grants: &[archway_catalog::Grant]) -> String {
    let sid = seg(&v.id);
    let csrf = csrf_field(session);
    let mut out = String::new();
    let _ = write!(
        out,
        "<h2>Edit (admin)</h2><form method=\"post\" action=\"/ui/volumes/{sid}/edit\" class=\"edit\" id=\"edit\">{csrf}\
         <label>Title <input name=\"title\" value=\"{}\"></label>\
         <label>Description <textarea name=\"description\" rows=\"5\">{}</textarea></label>\
         <label>Mission <input name=\"mission\" value=\"{}\"></label>\
         <label>Instrument <input name=\"instrument\" value=\"{}\"></label>\
         <label>Tags (comma-separated) <input name=\"tags\" value=\"{}\"></label>\
         <label>Licence <input name=\"license\" value=\"{}\"></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"public_read\" value=\"true\"{}> \
         Public: everyone may read, without signing in</label>\
         <button type=\"submit\">Save</button></form>",
        esc(&v.title),
        esc(&v.description),
        esc(v.mission.as_deref().unwrap_or_default()),
        esc(v.instrument.as_deref().unwrap_or_default()),
        esc(&v.tags.join(", ")),
        esc(v.license.as_deref().unwrap_or_default()),
        if v.public_read { " checked" } else { "" },
    );

    out.push_str("<h2>Grants (admin)</h2><table class=\"grants\" id=\"grants\"><thead><tr><th>Subject</th><th>Level</th><th></th></tr></thead><tbody>");
    for g in grants {
        let subject = g.subject.to_string();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/ui/volumes/{sid}/revoke\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"subject\" value=\"{}\"><button type=\"submit\">Revoke</button></form></td></tr>",
            esc(&subject),
            g.level.as_str(),
            esc(&subject),
        );
    }
    if grants.is_empty() {
        out.push_str("<tr><td colspan=\"3\" class=\"muted\">No grants: only admins (and everyone, if public) may reach it.</td></tr>");
    }
    let _ = write!(
        out,
        "</tbody></table><form method=\"post\" action=\"/ui/volumes/{sid}/grants\" class=\"grant\" id=\"grant\">{csrf}\
         <label>Subject <input name=\"subject\" placeholder=\"user:NAME or group:NAME\" required></label>\
         <label>Level <select name=\"level\"><option>read</option><option>write</option><option>admin</option></select></label>\
         <button type=\"submit\">Grant</button></form>"
    );
    out
}

/// A message passed back to a page after a form (`?done=saved` and the like).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Flash {
    #[serde(default)]
    done: Option<String>,
}

impl Flash {
    fn message(&self) -> Option<&'static str> {
        match self.done.as_deref()? {
            "saved" => Some("Saved."),
            "granted" => Some("Access granted."),
            "revoked" => Some("Access revoked."),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListForm {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /ui/volumes/{id}/objects`: one page of the listing under a prefix, folders first.
pub(super) async fn objects(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    UiQuery(form): UiQuery<ListForm>,
) -> Response {
    let r = async {
        let store = open_volume(&state, &session, &id, Op::List).await?;
        let prefix = form.prefix.unwrap_or_default();
        let page_of = store
            .list(&ListRequest {
                prefix: prefix.clone(),
                delimiter: Some("/".into()),
                start_after: form.after.filter(|a| !a.is_empty()),
                max_keys: Some(PAGE_SIZE),
            })
            .await?;
        let sid = seg(&id);
        let mut body = format!(
            "<h1><a href=\"/ui/volumes/{sid}\">{}</a> / objects</h1>",
            esc(&id)
        );
        // Breadcrumbs of the prefix.
        body.push_str("<p class=\"crumbs\" id=\"crumbs\">");
        let _ = write!(body, "<a href=\"/ui/volumes/{sid}/objects\">{}</a>/", esc(&id));
        let mut upto = String::new();
        for part in prefix.split_terminator('/') {
            upto.push_str(part);
            upto.push('/');
            let _ = write!(
                body,
                "<a href=\"/ui/volumes/{sid}/objects?prefix={}\">{}</a>/",
                q(&upto),
                esc(part)
            );
        }
        body.push_str("</p><table class=\"listing\" id=\"listing\"><thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead><tbody>");
        for p in &page_of.common_prefixes {
            let name = p.strip_prefix(prefix.as_str()).unwrap_or(p);
            let _ = write!(
                body,
                "<tr class=\"folder\"><td><a href=\"/ui/volumes/{sid}/objects?prefix={}\">{}</a></td><td></td><td></td></tr>",
                q(p),
                esc(name)
            );
        }
        for o in &page_of.objects {
            let name = o.key.strip_prefix(prefix.as_str()).unwrap_or(&o.key);
            let modified = time::OffsetDateTime::from(o.last_modified)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let _ = write!(
                body,
                "<tr class=\"object\"><td><a href=\"/ui/volumes/{sid}/object?key={}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                q(&o.key),
                esc(name),
                bytes(o.size),
                esc(&modified)
            );
        }
        if page_of.objects.is_empty() && page_of.common_prefixes.is_empty() {
            body.push_str("<tr><td colspan=\"3\" class=\"empty\">Nothing here.</td></tr>");
        }
        body.push_str("</tbody></table>");
        if let Some(next) = &page_of.next_start_after {
            let _ = write!(
                body,
                "<p><a class=\"button\" id=\"next\" href=\"/ui/volumes/{sid}/objects?prefix={}&amp;after={}\">Next page</a></p>",
                q(&prefix),
                q(next)
            );
        }
        Ok(page(&format!("{id} objects"), Some(&session), &body))
    }
    .await;
    or_error(&session, r)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ObjectForm {
    key: String,
    #[serde(default)]
    hdu: Option<usize>,
    #[serde(default)]
    stretch: Option<String>,
}

/// `GET /ui/volumes/{id}/object?key=`: the object; for FITS, its HDUs, the chosen HDU's header,
/// a quick-look and histogram of an image, what the science index knows, and a reduce form.
pub(super) async fn object(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    UiQuery(form): UiQuery<ObjectForm>,
) -> Response {
    let r = async {
        archway_dataplane::key::parse_key(&form.key)?;
        let store = open_volume(&state, &session, &id, Op::Get).await?;
        let info = store.head(&form.key, &ReadRequest::default()).await?;
        let sid = seg(&id);
        let key = &form.key;
        let mut body = format!(
            "<h1><a href=\"/ui/volumes/{sid}\">{}</a> / <span id=\"key\">{}</span></h1>",
            esc(&id),
            esc(key)
        );
        let parent = key.rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or_default();
        let _ = write!(
            body,
            "<p class=\"meta\">{} · ETag <code>{}</code> · <a href=\"/ui/volumes/{sid}/objects?prefix={}\">back to the listing</a></p>",
            bytes(info.size),
            esc(info.etag.as_deref().unwrap_or("none")),
            q(&parent)
        );
        let src = Source::with_size(store.object_store(), key, info.size)
            .map_err(|e| crate::error::ApiError::compute(&id, key, e))?;
        let hdus = match hdu::headers(&src, MAX_HDUS).await {
            Ok(h) => h,
            Err(e) => {
                let e = crate::error::ApiError::compute(&id, key, e);
                if e.status.is_server_error() {
                    return Err(e.into());
                }
                let _ = write!(
                    body,
                    "<div class=\"notice\" id=\"not-fits\">Not shown as FITS: {}</div>",
                    esc(&e.message)
                );
                return Ok(page(key, Some(&session), &body));
            }
        };
        let chosen = form
            .hdu
            .filter(|i| *i < hdus.len())
            .or_else(|| hdus.iter().position(|h| h.data_len > 0))
            .unwrap_or(0);
        body.push_str("<h2>HDUs</h2><table class=\"hdus\" id=\"hdus\"><thead><tr><th>#</th><th>Name</th><th>Kind</th><th>Shape</th><th>BITPIX</th><th>Data</th></tr></thead><tbody>");
        for h in &hdus {
            let kind = match &h.kind {
                HduKind::Image => "image".to_string(),
                HduKind::BinTable => "binary table".into(),
                HduKind::AsciiTable => "ASCII table".into(),
                HduKind::RandomGroups => "random groups".into(),
                HduKind::Other(x) => esc(x),
            };
            let naxis = h.header.int("NAXIS").unwrap_or(0).clamp(0, 999);
            let shape: Vec<String> = (1..=naxis)
                .map(|i| h.header.int(&format!("NAXIS{i}")).unwrap_or(0).to_string())
                .collect();
            let _ = write!(
                body,
                "<tr{}><td><a href=\"/ui/volumes/{sid}/object?key={}&amp;hdu={i}\">{i}</a></td><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if h.index == chosen { " class=\"chosen\"" } else { "" },
                q(key),
                esc(h.name().unwrap_or(if h.index == 0 { "PRIMARY" } else { "" })),
                esc(&shape.join(" × ")),
                h.header.int("BITPIX").map(|b| b.to_string()).unwrap_or_default(),
                bytes(h.data_len),
                i = h.index,
            );
        }
        body.push_str("</tbody></table>");
        let hdu = &hdus[chosen];
        let naxis = hdu.header.int("NAXIS").unwrap_or(0);
        if hdu.kind == HduKind::Image && naxis >= 2 && hdu.data_len > 0 {
            let stretch = form
                .stretch
                .as_deref()
                .and_then(archway_compute::quicklook::Stretch::parse)
                .unwrap_or_default();
            let _ = write!(
                body,
                "<h2>Quick-look</h2><div class=\"quicklook\"><figure>\
                 <img id=\"quicklook\" src=\"/ui/volumes/{sid}/quicklook.png?key={k}&amp;hdu={chosen}&amp;stretch={s}\" \
                 alt=\"quick-look of HDU {chosen} ({s} stretch)\" width=\"512\">\
                 <figcaption>HDU {chosen}, binned to at most 512 pixels a side, {s} stretch · \
                 <a href=\"/ui/volumes/{sid}/object?key={k}&amp;hdu={chosen}&amp;stretch=zscale\">zscale</a> · \
                 <a href=\"/ui/volumes/{sid}/object?key={k}&amp;hdu={chosen}&amp;stretch=percentile\">percentile</a> · \
                 <a href=\"/ui/volumes/{sid}/object?key={k}&amp;hdu={chosen}&amp;stretch=minmax\">min–max</a></figcaption></figure>\
                 <figure><img id=\"histogram\" src=\"/ui/volumes/{sid}/histogram.svg?key={k}&amp;hdu={chosen}\" \
                 alt=\"histogram of HDU {chosen}\" width=\"480\" height=\"260\">\
                 <figcaption>Histogram of the values (64 bins, counts on a log scale)</figcaption></figure></div>",
                k = q(key),
                s = stretch.as_str(),
            );
        }
        if let Some(sci) = state.dataplane.science_object(session.who(), &id, key).await? {
            body.push_str(&science_facts(&sci));
        }
        body.push_str(&reduce_form(&session, &id, key, chosen));
        let _ = write!(
            body,
            "<h2>Header of HDU {chosen}</h2><pre class=\"header\" id=\"header\">{}</pre>",
            esc(&header_text(&hdu.header))
        );
        Ok(page(key, Some(&session), &body))
    }
    .await;
    or_error(&session, r)
}

/// The header's cards as `KEYWORD = value` lines.
fn header_text(h: &archway_compute::header::Header) -> String {
    use archway_compute::header::Value;
    let mut out = String::new();
    for c in &h.cards {
        let value = match &c.value {
            Value::Str(s) => format!("'{s}'"),
            Value::Logical(b) => if *b { "T" } else { "F" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Real(r) => format!("{r:?}"),
            Value::Other(s) => s.clone(),
            Value::None => {
                let _ = writeln!(out, "{}", c.keyword);
                continue;
            }
        };
        let _ = writeln!(out, "{:<8}= {value}", c.keyword);
    }
    out
}

fn science_facts(s: &archway_catalog::ScienceObject) -> String {
    let mut out = String::from("<h2>Science index</h2><dl class=\"facts\" id=\"science\">");
    let mut fact = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
        }
    };
    fact("target_name", s.target_name.clone());
    fact("instrument_name", s.instrument_name.clone());
    fact("facility_name", s.facility_name.clone());
    fact("dataproduct_type", s.dataproduct_type.clone());
    fact(
        "s_ra, s_dec",
        s.s_ra
            .zip(s.s_dec)
            .map(|(r, d)| format!("{r:.5}°, {d:.5}°")),
    );
    fact("s_fov", s.s_fov.map(|f| format!("{f:.4}°")));
    fact("t_min", s.t_min.and_then(mjd_to_iso));
    fact("t_exptime", s.t_exptime.map(|t| format!("{t} s")));
    fact(
        "em_min – em_max",
        s.em_min
            .zip(s.em_max)
            .map(|(a, b)| format!("{a:e} – {b:e} m")),
    );
    out.push_str("</dl>");
    for n in &s.notes {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(n));
    }
    out
}

fn reduce_form(session: &Session, volume: &str, key: &str, hdu: usize) -> String {
    let ops = [
        "stats",
        "mean",
        "median",
        "min",
        "max",
        "sum",
        "count",
        "std",
        "var",
        "histogram",
    ];
    let options: String = ops
        .iter()
        .map(|o| format!("<option>{o}</option>"))
        .collect();
    format!(
        "<h2>Reduce</h2><form method=\"post\" action=\"/ui/reduce\" class=\"reduce\" id=\"reduce\">{}\
         <input type=\"hidden\" name=\"volume\" value=\"{}\"><input type=\"hidden\" name=\"key\" value=\"{}\">\
         <label>Operation <select name=\"op\">{options}</select></label>\
         <label>HDU <input name=\"hdu\" value=\"{hdu}\" size=\"6\"></label>\
         <label>Column (tables) <input name=\"column\" size=\"10\"></label>\
         <label>Engine <select name=\"engine\"><option>auto</option><option>cpu</option><option>cuda</option></select></label>\
         <button type=\"submit\">Run where the data is</button></form>",
        csrf_field(session),
        esc(volume),
        esc(key),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ConeForm {
    #[serde(default)]
    ra: Option<String>,
    #[serde(default)]
    dec: Option<String>,
    #[serde(default)]
    radius: Option<String>,
    #[serde(default)]
    volume: Option<String>,
}

/// Parses a form's number, naming the field when it is not one.
fn number(field: &str, v: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, UiError> {
    let x: f64 = v.trim().parse().map_err(|_| {
        UiError::bad_request(format!("`{field}` must be a number in degrees, not `{v}`"))
    })?;
    if !range.contains(&x) {
        return Err(UiError::bad_request(format!(
            "`{field}` must be within {} to {} degrees (it is {x})",
            range.start(),
            range.end()
        )));
    }
    Ok(x)
}

/// `GET /ui/search`: a cone search over the science index of the volumes the visitor may read.
pub(super) async fn cone(
    session: Session,
    State(state): State<AppState>,
    UiQuery(form): UiQuery<ConeForm>,
) -> Response {
    let volume = form.volume.clone().filter(|v| !v.is_empty());
    let mut body = format!(
        "<h1>Sky search</h1><form method=\"get\" action=\"/ui/search\" class=\"cone\" id=\"cone\">\
         <label>RA (°) <input name=\"ra\" value=\"{}\" size=\"10\" required></label>\
         <label>Dec (°) <input name=\"dec\" value=\"{}\" size=\"10\" required></label>\
         <label>Radius (°) <input name=\"radius\" value=\"{}\" size=\"6\"></label>\
         <label>Volume <input name=\"volume\" value=\"{}\" size=\"12\" placeholder=\"all\"></label>\
         <button type=\"submit\">Search</button></form>",
        esc(form.ra.as_deref().unwrap_or_default()),
        esc(form.dec.as_deref().unwrap_or_default()),
        esc(form.radius.as_deref().unwrap_or("0.5")),
        esc(volume.as_deref().unwrap_or_default()),
    );
    let (Some(ra), Some(dec)) = (
        form.ra.as_deref().filter(|s| !s.is_empty()),
        form.dec.as_deref().filter(|s| !s.is_empty()),
    ) else {
        body.push_str("<p class=\"muted\">Objects of the science index whose field reaches within the radius of a position (ICRS).</p>");
        return page("Sky search", Some(&session), &body);
    };
    let r: UiResult<String> = async {
        let ra = number("ra", ra, 0.0..=360.0)?;
        let dec = number("dec", dec, -90.0..=90.0)?;
        let radius = number("radius", form.radius.as_deref().unwrap_or("0.5"), 0.0..=180.0)?;
        let query = ScienceQuery {
            volumes: volume.clone().map(|v| vec![v]),
            sky: Some(SkyRegion::Cone { ra, dec, radius }),
            time: None,
            limit: SKY_RESULTS,
            after: None,
        };
        let found = state.dataplane.search_science(session.who(), &query).await?;
        let mut out = format!(
            "<p class=\"muted\">{} object{} within {radius}° of ({ra}°, {dec}°)</p>\
             <table class=\"science\" id=\"found\"><thead><tr><th>Volume</th><th>Object</th><th>Target</th><th>RA</th><th>Dec</th><th>Instrument</th><th>Start</th></tr></thead><tbody>",
            found.len(),
            if found.len() == 1 { "" } else { "s" }
        );
        for s in &found {
            let _ = write!(
                out,
                "<tr><td><a href=\"/ui/volumes/{}\">{}</a></td><td><a href=\"/ui/volumes/{}/object?key={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                seg(&s.volume),
                esc(&s.volume),
                seg(&s.volume),
                q(&s.key),
                esc(&s.key),
                esc(s.target_name.as_deref().unwrap_or_default()),
                s.s_ra.map(|v| format!("{v:.4}")).unwrap_or_default(),
                s.s_dec.map(|v| format!("{v:.4}")).unwrap_or_default(),
                esc(s.instrument_name.as_deref().unwrap_or_default()),
                s.t_min.and_then(mjd_to_iso).unwrap_or_default(),
            );
        }
        out.push_str("</tbody></table>");
        Ok(out)
    }
    .await;
    match r {
        Ok(results) => {
            body.push_str(&results);
            page("Sky search", Some(&session), &body)
        }
        Err(e) => {
            let _ = write!(
                body,
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(&e.message)
            );
            let mut r = page("Sky search", Some(&session), &body);
            *r.status_mut() = if e.status == StatusCode::OK {
                StatusCode::BAD_REQUEST
            } else {
                e.status
            };
            r
        }
    }
}

/// The volume's checked handle for `op`. A volume the visitor may not see is not found (as
/// the catalogue pages say it), rather than the S3 front's `AccessDenied`.
pub(super) async fn open_volume(
    state: &AppState,
    session: &Session,
    id: &str,
    op: Op,
) -> UiResult<archway_dataplane::VolumeStore> {
    state.dataplane.volume(session.who(), id).await?;
    Ok(state.dataplane.open(session.who(), id, op).await?)
}

impl Session {
    /// The visitor as the dataplane takes them.
    pub(super) fn who(&self) -> Option<&archway_catalog::Principal> {
        Some(&self.who)
    }
}
