//! `/ui`: the status page. The page and its script carry no data; the script asks the JSON
//! API with the admin token the user types in (kept in the tab's session storage), so the
//! page is behind the same login as the API and a tenant-scoped token sees its tenant only.

use super::*;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");

/// Script from this origin only, no inline script, no framing, nothing cached.
const POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn served(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn ui_page() -> Response {
    served("text/html; charset=utf-8", PAGE)
}

pub(super) async fn ui_script() -> Response {
    served("text/javascript; charset=utf-8", SCRIPT)
}
