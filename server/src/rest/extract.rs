//! Request extractors that fail in the server's own error format. axum's stock
//! `Json`, `Query` and `Path` answer rejections with plain text; these wrappers turn
//! every bad body, query string or path into `{ "error": … }` with the status of
//! its code (422 for malformed input, 413 for a body over the limit). The rules
//! of what they carry (page bounds among them) are the node's (`node::requests`).

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::node::requests::PageRequest;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Bodies up to this size are read whole and then refused with a clean 413, so a
/// client still writing its body gets the answer rather than a reset connection;
/// larger ones are cut off early (`DefaultBodyLimit`).
pub const READ_LIMIT_BYTES: usize = 8 * MAX_BODY_BYTES;

/// A JSON request body.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        // The body is parsed as JSON whatever the Content-Type says (`curl -d`
        // sends form encoding); a bearer-authenticated API gains nothing from
        // refusing it. A wrong type is named when the body does not parse.
        let declared_json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|ct| ct.to_str().ok())
            .map(|ct| {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            })
            .unwrap_or(true);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::too_large(format!(
                    "the request body is larger than {} bytes",
                    MAX_BODY_BYTES
                ))
            } else {
                Error::invalid(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(Error::too_large(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid("a JSON request body is required"));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io if !declared_json => {
                    Error::invalid(format!(
                        "the request body is not valid JSON (send Content-Type: application/json): {e}"
                    ))
                }
                Category::Syntax | Category::Eof | Category::Io => {
                    Error::invalid(format!("the request body is not valid JSON: {e}"))
                }
                Category::Data => Error::invalid(format!("invalid request body: {e}")),
            }
        })?;
        require_object(&bytes)?;
        Ok(Json(value))
    }
}

/// Every request body is a JSON object. serde also reads a struct from an
/// array of its fields (`["alice"]`), which the OpenAPI document does not allow.
pub fn require_object(json: &[u8]) -> Result<()> {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(Error::invalid("the request body must be a JSON object")),
    }
}

/// Integer fields of request bodies, read as JSON Schema's `integer` (which
/// the OpenAPI document states): any number with no fraction, `3600.0` too.
pub mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Number;

    fn integer(n: &Number) -> Option<i64> {
        // 2^63: the first f64 past i64::MAX.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
        })
    }

    pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => integer(&n)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number"))),
        }
    }

    pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => n
                .as_u64()
                .or_else(|| integer(&n).and_then(|i| u64::try_from(i).ok()))
                .map(Some)
                .ok_or_else(|| {
                    D::Error::custom(format!("{n} is not a whole number of at least 0"))
                }),
        }
    }
}

/// Query-string parameters.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| Error::invalid(format!("invalid query parameters: {}", e.body_text())))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Error::invalid(format!("invalid path: {}", e.body_text())))
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (base64url; only a cursor the
    /// server answered is valid).
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

impl From<PageParams> for PageRequest {
    fn from(p: PageParams) -> Self {
        PageRequest::new(p.cursor, p.limit)
    }
}

/// An optional string parameter, where `?cursor=` (empty) means absent.
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}
