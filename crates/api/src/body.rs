//! `JsonBody`: reads a request body as JSON whatever its content type (the tutorial's curl
//! lines do not always send one), with every failure as an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The body of an endpoint that takes no fields: empty, `null` or `{}` (read it as
/// `JsonBody<Option<NoFields>>`); a field is refused by name, as on every endpoint.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// A JSON request body; an empty body reads as `null` (so optional bodies work).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError {
                status: if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                },
                message: format!("could not read the request body: {}", rejection.body_text()),
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}
