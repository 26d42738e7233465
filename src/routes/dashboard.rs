//! The web dashboard at `/` (docs/DASHBOARD.md): three files from `web/`, embedded in the
//! binary so it works on a network without internet. The page is public; what it shows
//! comes from the API with the token the user gives it.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::api::{Answers, Api, Content};
use crate::auth::{Access, ResourceScope};
use crate::error::ApiError;

/// The embedded files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// Scripts and styles only from the server itself; frames are fetched and shown as blobs;
/// live feeds connect back to it.
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/", ResourceScope::None, |r| {
        r.get(Access::Public, index)
            .answers(Answers::ok(Content::Text("text/html")))
    });
    api.resource("/assets/{name}", ResourceScope::None, |r| {
        r.get(Access::Public, asset)
            .answers(Answers::ok(Content::Text("text/*")))
    });
}

async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&req, &name)
}

/// A strong validator per file, computed once: a browser revalidates and gets 304.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, body)| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                body.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    })
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return Err(ApiError::NotFound(format!("no dashboard file {name:?}")));
    };
    let (_, kind, body) = FILES[i];
    let tag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut answer = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, tag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return Ok(answer.finish());
    }
    Ok(answer.content_type(kind).body(body))
}
