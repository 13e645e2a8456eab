//! The agent's response shapes: JSON bodies, [`ErrorBody`] refusals, text.

use agent_api::ErrorBody;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

/// The response type of every route.
pub type AgentResponse = Response<Full<Bytes>>;

/// A JSON response.
pub(super) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> AgentResponse {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A JSON [`ErrorBody`] response.
pub(super) fn error(status: StatusCode, message: &str) -> AgentResponse {
    json(
        status,
        &ErrorBody {
            error: message.to_owned(),
        },
    )
}

pub(super) fn text(status: StatusCode, body: &str) -> AgentResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp
}
