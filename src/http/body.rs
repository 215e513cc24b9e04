//! Reading a JSON request body with the API's rules: declared as JSON, at
//! most the size limit (checked before and while reading), valid JSON.

use super::problem::ApiError;
use actix_web::{HttpRequest, http::header, web};
use futures_util::StreamExt;

/// Largest request body accepted, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a body may take to arrive once its headers have: actix bounds
/// only the head, so a client trickling a body would otherwise hold its
/// connection and buffer for as long as it likes.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and parses the body, or says exactly what is wrong with it.
pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::RequestTimeout(BODY_TIMEOUT.as_secs()))??;
    serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}
