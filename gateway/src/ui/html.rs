//! Writing HTML: escaping, the layout every page shares, small formatting helpers.

use std::fmt::Write;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Session;

/// Text as HTML (element content and quoted attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a query parameter's value keeps unescaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A query parameter's value, percent-encoded.
pub fn q(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// A path segment (a volume id is one already, but never trusted to be).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// Bytes as people read them (binary units: `512 B`, `1.5 KiB`).
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// A hidden CSRF field for the session's forms.
pub fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&session.csrf)
    )
}

/// A whole page: the layout, the navigation (with the signed-in user and a sign-out form)
/// and `body`.
pub fn page(title: &str, session: Option<&Session>, body: &str) -> Response {
    let mut nav = String::new();
    if let Some(s) = session {
        let _ = write!(
            nav,
            "<nav><a href=\"/ui/volumes\">Volumes</a> <a href=\"/ui/search\">Sky search</a>\
             <span class=\"who\">Signed in as <strong id=\"user\">{}</strong>{}</span>\
             <form method=\"post\" action=\"/ui/logout\" class=\"inline\">{}\
             <button type=\"submit\">Sign out</button></form></nav>",
            esc(&s.who.user),
            if s.who.acts_as_admin() {
                " <span class=\"badge\">admin</span>"
            } else {
                ""
            },
            csrf_field(s)
        );
    } else {
        nav.push_str("<nav><a href=\"/ui/login\">Sign in</a></nav>");
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · Archway</title>\n<link rel=\"stylesheet\" href=\"/ui/style.css\">\n\
         </head>\n<body>\n<header><a class=\"brand\" href=\"/ui/volumes\">Archway</a>{nav}</header>\n\
         <main>\n{body}\n</main>\n<footer>Data volumes of this gateway · \
         <a href=\"/stac\">STAC API</a> · <a href=\"/sia/v2/capabilities\">SIA 2.0</a> · \
         <a href=\"/api/v1/openapi.json\">HTTP API</a></footer>\n</body>\n</html>\n",
        esc(title)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn query_values_and_segments_are_encoded() {
        assert_eq!(q("images/m 51&x=1.fits"), "images/m%2051%26x%3D1.fits");
        assert_eq!(seg("a/b"), "a%2Fb");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
