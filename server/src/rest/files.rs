//! Files over HTTP: asking for an upload and for links to read attachments
//! (a member's token or the API key), the tus 1.0 resource the bytes go to
//! (its signed grant in the query), and downloads through signed links. The
//! rules are the node's (`node/files.rs`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

use super::auth::Caller;
use super::extract::{Json, Path, Query};
use super::openapi::{ConversationId, E401, E403, E404, E413, E422};
use crate::error::{Error, Result};
use crate::files::blobs::{Stored, Variant};
use crate::files::s3::S3Object;
use crate::node::files::{Grant, UploadGrant, UploadInput};
use crate::node::Node;
use crate::store::Millis;

/// The tus protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";

/// An upload to start, or (with `upload_id`) one to resume.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file name, 1 to 255 bytes, no control characters (surrounding
    /// spaces are dropped). Required unless `upload_id` is given.
    #[serde(default)]
    #[schema(
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f]*[^\\u0000-\\u0020\\u007f][^\\u0000-\\u001f\\u007f]*$"
    )]
    pub name: String,
    /// Bytes, at most the app's limit (default 25 MiB). Required unless
    /// `upload_id` is given.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 5_368_709_120_u64)]
    pub size: u64,
    /// The declared media type (`image/jpeg`); an image whose bytes are
    /// another type is refused. Required unless `upload_id` is given.
    #[serde(default)]
    #[schema(
        max_length = 127,
        pattern = "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
    )]
    pub content_type: String,
    /// With the API key: the member who uploads (required).
    #[serde(default)]
    pub user_id: Option<String>,
    /// One of the caller's uploads still arriving: a fresh grant and its
    /// offset (to resume after the grant expired); the other fields are ignored.
    #[serde(default)]
    pub upload_id: Option<String>,
}

/// The request body schema of asking for an upload: [`CreateUpload`] with
/// the file's name, size and type, or the `upload_id` of one to resume.
pub struct CreateUploadBody;

impl utoipa::PartialSchema for CreateUploadBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder};
        let new = ["name", "size", "content_type"]
            .into_iter()
            .fold(ObjectBuilder::new(), |o, field| o.required(field));
        let resume = ObjectBuilder::new()
            .property(
                "upload_id",
                ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String),
            )
            .required("upload_id");
        AllOfBuilder::new()
            .item(<CreateUpload as utoipa::PartialSchema>::schema())
            .item(AnyOfBuilder::new().item(new).item(resume))
            .into()
    }
}

impl utoipa::ToSchema for CreateUploadBody {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("CreateUpload")
    }
}

/// Where the bytes go: a tus 1.0 resource.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadLink {
    /// `upl_…`: the attachment id once sent.
    pub id: String,
    /// Relative to the server's base URL, its grant in the query: `HEAD` for
    /// the offset, `PATCH` with `Upload-Offset` and
    /// `Content-Type: application/offset+octet-stream` for the bytes.
    pub url: String,
    pub expires_at: Millis,
    /// Bytes the server holds.
    pub offset: u64,
    pub size: u64,
}

impl From<UploadGrant> for UploadLink {
    fn from(g: UploadGrant) -> Self {
        Self {
            id: g.upload.id,
            url: g.url,
            expires_at: Millis(g.expires_at_ms),
            offset: g.offset,
            size: g.upload.size as u64,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentUrlsRequest {
    /// Attachment ids of messages in this conversation, 1 to 100.
    #[schema(min_items = 1, max_items = 100, value_type = Vec<super::openapi::AttachmentId>)]
    pub attachment_ids: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentUrl {
    pub id: String,
    /// Relative to the server's base URL; signed, valid until `expires_at`.
    pub url: String,
    /// Absent when the file has no thumbnail.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub thumbnail_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentUrls {
    /// In the order asked.
    pub urls: Vec<AttachmentUrl>,
    pub expires_at: Millis,
}

/// `POST /v1/conversations/{id}/uploads`.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/uploads",
    operation_id = "createUpload",
    tag = "files",
    summary = "Start an upload",
    description = "Starts an upload of a member's file in the conversation (a user token: as itself; the API key: user_id names the member) and answers the tus 1.0 resource its bytes go to, with a signed grant valid for the file-link lifetime (default 1 h). With upload_id, a fresh grant and the offset of one of the caller's uploads still arriving. Refused: a size over the app's limit (413), a type the app does not take (422), a used-up daily or total quota (413). docs/files.md.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    request_body = CreateUploadBody,
    responses(
        (status = 201, description = "Where to send the bytes.", body = UploadLink),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<CreateUpload>,
) -> Result<(StatusCode, axum::Json<UploadLink>)> {
    let grant = match body.upload_id {
        Some(upload) => {
            let user = match (caller.actor(), body.user_id.as_deref()) {
                (crate::node::Actor::User(me), _) => me.to_owned(),
                (crate::node::Actor::Backend, Some(user)) => user.to_owned(),
                (crate::node::Actor::Backend, None) => {
                    return Err(Error::invalid("user_id is required: the user who uploads"))
                }
            };
            node.resume_upload(&caller.app, &user, &id, &upload).await?
        }
        None => {
            let input = UploadInput {
                name: body.name,
                size: body.size,
                content_type: body.content_type,
                user_id: body.user_id,
            };
            node.create_upload(&caller.app, caller.actor(), &id, input)
                .await?
        }
    };
    Ok((StatusCode::CREATED, axum::Json(grant.into())))
}

/// `POST /v1/conversations/{id}/attachment-urls`.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/attachment-urls",
    operation_id = "attachmentUrls",
    tag = "files",
    summary = "Links to read attachments",
    description = "Signed links to attachments of messages in the conversation, valid for the file-link lifetime (default 1 h), for a member (messages before their cleared position excepted) or the API key. A link handed out stays valid until it expires, even if its holder leaves the conversation.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    request_body = AttachmentUrlsRequest,
    responses(
        (status = 200, description = "A link per attachment.", body = AttachmentUrls),
        (status = 401, response = E401),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn attachment_urls(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AttachmentUrlsRequest>,
) -> Result<axum::Json<AttachmentUrls>> {
    let (links, expires_at) = node
        .attachment_links(&caller.app, caller.actor(), &id, &body.attachment_ids)
        .await?;
    Ok(axum::Json(AttachmentUrls {
        urls: links
            .into_iter()
            .map(|l| AttachmentUrl {
                id: l.id,
                url: l.url,
                thumbnail_url: l.thumbnail_url,
            })
            .collect(),
        expires_at: Millis(expires_at),
    }))
}

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
}

fn with_tus(mut response: Response) -> Response {
    tus_headers(response.headers_mut());
    response
}

/// tus requests must say the version they speak: `None` when it does, else
/// the 412 answer.
fn check_tus(headers: &HeaderMap) -> Option<Response> {
    if headers.get("tus-resumable").and_then(|v| v.to_str().ok()) == Some(TUS_VERSION) {
        return None;
    }
    let mut response =
        Error::invalid("this resource speaks tus: send Tus-Resumable: 1.0.0").into_response();
    *response.status_mut() = StatusCode::PRECONDITION_FAILED;
    response
        .headers_mut()
        .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Some(response)
}

/// `HEAD /v1/uploads/{app}/{id}?exp=&sig=`: the bytes the server holds.
#[utoipa::path(
    head,
    path = "/v1/uploads/{app}/{id}",
    operation_id = "tusOffset",
    security(("signed_link" = [])),
    tag = "files",
    summary = "Upload offset (tus)",
    description = "Upload-Offset: the bytes the server holds (resume from there); Upload-Length: the file's size. The grant (exp, sig) from the upload link authorises it.",
    params(("app" = String, Path, description = "App id."), ("id" = String, Path, description = "Upload id.")),
    responses(
        (status = 200, description = "Upload-Offset and Upload-Length."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 412, description = "No Tus-Resumable: 1.0.0."),
    ),
)]
pub async fn tus_head(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
    Query(grant): Query<Grant>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check_tus(&headers) {
        return refused;
    }
    match node.upload_offset(&app, &id, &grant).await {
        Ok((offset, size)) => {
            let mut response = StatusCode::OK.into_response();
            let h = response.headers_mut();
            h.insert("upload-offset", HeaderValue::from(offset));
            h.insert("upload-length", HeaderValue::from(size));
            with_tus(response)
        }
        Err(e) => with_tus(e.into_response()),
    }
}

/// `PATCH /v1/uploads/{app}/{id}?exp=&sig=`: bytes from `Upload-Offset`.
#[utoipa::path(
    patch,
    path = "/v1/uploads/{app}/{id}",
    operation_id = "tusPatch",
    security(("signed_link" = [])),
    tag = "files",
    summary = "Upload bytes (tus)",
    description = "Appends the body at Upload-Offset, which must be the bytes the server holds (409 otherwise). A body that goes past the upload's size is cut as soon as it does (413) and nothing of it is kept. The last byte makes the upload ready: its type is sniffed (an image declared as another type is refused, 422) and images are processed (a thumbnail, a BlurHash; an image larger than the server decodes is refused, 413); a refused upload is removed. A dropped connection keeps what arrived: HEAD, then PATCH from there.",
    params(("app" = String, Path, description = "App id."), ("id" = String, Path, description = "Upload id.")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Upload-Offset: the bytes now held."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 409, description = "Upload-Offset is not the bytes held, or the upload is complete."),
        (status = 503, description = "Another request is sending or processing this upload's bytes: try again after Retry-After."),
        (status = 412, description = "No Tus-Resumable: 1.0.0."),
        (status = 413, response = E413),
        (status = 415, description = "Not application/offset+octet-stream."),
        (status = 422, response = E422),
    ),
)]
pub async fn tus_patch(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
    Query(grant): Query<Grant>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if let Some(refused) = check_tus(&headers) {
        return refused;
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/offset+octet-stream" {
        let mut response =
            Error::invalid("the body must be Content-Type: application/offset+octet-stream")
                .into_response();
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return with_tus(response);
    }
    let Some(offset) = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return with_tus(Error::invalid("Upload-Offset must be a number of bytes").into_response());
    };
    match node.upload_bytes(&app, &id, &grant, offset, body).await {
        Ok((held, _)) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert("upload-offset", HeaderValue::from(held));
            with_tus(response)
        }
        Err(e) => {
            let conflict = e.code == mkondo_proto::ErrorCode::AlreadyExists;
            let mut response = e.into_response();
            if conflict {
                *response.status_mut() = StatusCode::CONFLICT;
            }
            with_tus(response)
        }
    }
}

/// `GET /v1/files/{app}/{id}?exp=&sig=`.
#[utoipa::path(
    get,
    path = "/v1/files/{app}/{id}",
    operation_id = "downloadFile",
    security(("signed_link" = [])),
    tag = "files",
    summary = "Download an attachment",
    description = "The file a signed link names (POST /v1/conversations/{id}/attachment-urls), while the link is valid and the file attached. Range requests are answered (206). JPEG, PNG, GIF and WebP are served inline, re-encoded without metadata; every other type as a download (Content-Disposition: attachment). Always X-Content-Type-Options: nosniff and a sandboxing Content-Security-Policy.",
    params(("app" = String, Path, description = "App id."), ("id" = String, Path, description = "Attachment id.")),
    responses(
        (status = 200, description = "The file."),
        (status = 206, description = "The range asked for."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn download(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
    Query(grant): Query<Grant>,
    request: axum::extract::Request,
) -> Result<Response> {
    serve(&node, &app, &id, Variant::Original, &grant, request).await
}

/// `GET /v1/files/{app}/{id}/thumbnail?exp=&sig=`.
#[utoipa::path(
    get,
    path = "/v1/files/{app}/{id}/thumbnail",
    operation_id = "downloadThumbnail",
    security(("signed_link" = [])),
    tag = "files",
    summary = "Download an attachment's thumbnail",
    description = "The thumbnail (JPEG, or PNG for images with transparency; at most 320 px a side) a signed link names.",
    params(("app" = String, Path, description = "App id."), ("id" = String, Path, description = "Attachment id.")),
    responses(
        (status = 200, description = "The thumbnail."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn download_thumbnail(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
    Query(grant): Query<Grant>,
    request: axum::extract::Request,
) -> Result<Response> {
    serve(&node, &app, &id, Variant::Thumbnail, &grant, request).await
}

async fn serve(
    node: &Node,
    app: &str,
    id: &str,
    variant: Variant,
    grant: &Grant,
    request: axum::extract::Request,
) -> Result<Response> {
    let file = node.download(app, id, variant, grant).await?;
    let mut response = match &file.file {
        Stored::File(path) => serve_file(path, request).await?,
        Stored::Object(object) => serve_object(object, &request.into_parts().0).await?,
    };
    let h = response.headers_mut();
    if let Ok(t) = HeaderValue::from_str(&file.content_type) {
        h.insert(http::header::CONTENT_TYPE, t);
    }
    let disposition = format!(
        "{}; {}",
        if file.inline { "inline" } else { "attachment" },
        filename_params(&file.name)
    );
    if let Ok(d) = HeaderValue::from_str(&disposition) {
        h.insert(http::header::CONTENT_DISPOSITION, d);
    }
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
        ),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    if let Ok(c) = HeaderValue::from_str(&format!("private, max-age={}", file.max_age)) {
        h.insert(http::header::CACHE_CONTROL, c);
    }
    h.remove(http::header::LAST_MODIFIED);
    Ok(response)
}

/// A file on the local disk, ranges answered by `ServeFile`.
async fn serve_file(path: &std::path::Path, request: axum::extract::Request) -> Result<Response> {
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|_| Error::internal())?;
    if served.status() == StatusCode::NOT_FOUND {
        return Err(Error::not_found("file"));
    }
    Ok(served.map(axum::body::Body::new))
}

/// A file in the bucket, streamed through: answered as `ServeFile` answers
/// (`Accept-Ranges`, one range as 206 with `Content-Range`, several or an
/// unsatisfiable one as 416), so both stores serve the same headers.
async fn serve_object(object: &S3Object, request: &http::request::Parts) -> Result<Response> {
    let size = object
        .size()
        .await
        .map_err(crate::node::files::io)?
        .ok_or_else(|| Error::not_found("file"))?;
    let range = request
        .headers
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| http_range_header::parse_range_header(r).and_then(|r| r.validate(size)));
    let builder = Response::builder().header(http::header::ACCEPT_RANGES, "bytes");
    let (builder, span) = match range {
        None => (builder, 0..size),
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let (start, end) = (*ranges[0].start(), *ranges[0].end());
            let builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                http::header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            );
            (builder, start..end + 1)
        }
        Some(_) => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(http::header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(axum::body::Body::empty())
                .map_err(|_| Error::internal());
        }
    };
    let body = if request.method == http::Method::HEAD || span.is_empty() {
        axum::body::Body::empty()
    } else {
        let stream = object.read(span.clone()).await;
        axum::body::Body::from_stream(stream.map_err(crate::node::files::io)?)
    };
    builder
        .header(http::header::CONTENT_LENGTH, span.end - span.start)
        .body(body)
        .map_err(|_| Error::internal())
}

/// `filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
fn filename_params(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_are_quoted_safely() {
        assert_eq!(
            super::filename_params("a \"b\";\r\nc.pdf"),
            "filename=\"a _b____c.pdf\"; filename*=UTF-8''a%20%22b%22%3B%0D%0Ac.pdf"
        );
        assert_eq!(
            super::filename_params("café.txt"),
            "filename=\"caf_.txt\"; filename*=UTF-8''caf%C3%A9.txt"
        );
    }
}
