//! Request routing and the one mapping from [`ControllerError`] to an HTTP
//! status with a JSON [`ErrorBody`].

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use serde::Serialize;
use tonic::Code;

use super::model::{ErrorBody, ReplicaChangeView, RevertRequest, SetReplicasRequest};
use super::views;
use crate::context::Context;
use crate::error::{ControllerError, Result};
use crate::ops;

/// Largest request body accepted (the revert request is a few bytes).
const MAX_BODY: usize = 64 * 1024;

/// The HTTP status an error answers with.
///
/// Decided from the error's gRPC code, so the admin API and CSI agree:
/// unknown objects are 404, an unreachable store or node is 503.
pub fn http_status(err: &ControllerError) -> StatusCode {
    match err.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Answers one request.
pub async fn handle<B>(ctx: &Context, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = &parts.method;
    let outcome = match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "nodes"]) => Ok(json(&views::nodes(ctx).await)),
        (&Method::GET, ["v1", "volumes"]) => views::volumes(ctx).await.map(|v| json(&v)),
        (&Method::GET, ["v1", "volumes", id]) => views::volume(ctx, id).await.map(|v| json(&v)),
        (&Method::GET, ["v1", "snapshots"]) => views::snapshots(ctx).await.map(|v| json(&v)),
        (&Method::GET, ["v1", "rebuilds"]) => views::rebuilds(ctx).await.map(|v| json(&v)),
        (&Method::GET, ["metrics"]) => crate::metrics::render(ctx).await.map(|text| {
            let mut r = respond(StatusCode::OK, text.into_bytes());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r
        }),
        (&Method::POST, ["v1", "volumes", id, "revert"]) => {
            revert(ctx, id, body).await.map(|v| json(&v))
        }
        (&Method::POST, ["v1", "volumes", id, "replicas"]) => {
            set_replicas(ctx, id, body).await.map(|v| json(&v))
        }
        (_, ["v1", "nodes" | "volumes" | "snapshots" | "rebuilds"])
        | (_, ["v1", "volumes", _]) => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}; only GET is (and POST on /v1/volumes/<id>/revert and /v1/volumes/<id>/replicas)"),
        )),
        (_, ["v1", "volumes", _, "replicas"]) => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}; use POST with {{\"count\": <1 to 16>}}"),
        )),
        (_, ["v1", "volumes", _, "revert"]) => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}; use POST with {{\"snapshot_id\": ...}}"),
        )),
        _ => Ok(error(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {path}; try /v1/nodes, /v1/volumes, /v1/volumes/<id>, /v1/snapshots, /v1/rebuilds or /metrics"
            ),
        )),
    };
    outcome.unwrap_or_else(|e| {
        let status = http_status(&e);
        if status.is_server_error() {
            tracing::warn!(%path, error = %e, "admin request failed");
        }
        error(status, e.to_string())
    })
}

/// `POST /v1/volumes/<id>/revert`: reverts the (unpublished) volume to one
/// of its snapshots and answers the volume as it is now.
async fn revert<B>(ctx: &Context, id: &str, body: B) -> Result<super::VolumeView>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| ControllerError::BadRequestBody {
            reason: format!("reading it: {e}"),
        })?
        .to_bytes();
    let request: RevertRequest =
        serde_json::from_slice(&bytes).map_err(|e| ControllerError::BadRequestBody {
            reason: format!("it must be {{\"snapshot_id\": \"...\"}}: {e}"),
        })?;
    ops::revert::revert_to_snapshot(ctx, id, &request.snapshot_id).await?;
    views::volume(ctx, id).await
}

/// Reads a JSON request body of at most [`MAX_BODY`] bytes; `shape` says
/// what it must look like, for the error.
async fn read_body<B, T>(body: B, shape: &str) -> Result<T>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
    T: serde::de::DeserializeOwned,
{
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| ControllerError::BadRequestBody {
            reason: format!("reading it: {e}"),
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ControllerError::BadRequestBody {
        reason: format!("it must be {shape}: {e}"),
    })
}

/// `POST /v1/volumes/<id>/replicas`: changes the replica count, as
/// ControllerModifyVolume does, and answers what changed.
async fn set_replicas<B>(ctx: &Context, id: &str, body: B) -> Result<ReplicaChangeView>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let request: SetReplicasRequest = read_body(body, "{\"count\": <1 to 16>}").await?;
    let done = ops::replica_count::set_replica_count(ctx, id, request.count).await?;
    Ok(ReplicaChangeView {
        from: done.from,
        to: done.to,
        added: done.added,
        removed: done.removed,
        full_copy: done.full_copy,
        bytes_copied: done.bytes_copied,
        changed: done.changed,
        volume: views::volume(ctx, id).await?,
    })
}

fn json<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        ),
    }
}

pub(super) fn error(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&ErrorBody { error: message })
        .unwrap_or_else(|_| b"{\"error\":\"unencodable error\"}".to_vec());
    respond(status, body)
}

fn respond(status: StatusCode, mut body: Vec<u8>) -> Response<Full<Bytes>> {
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_status_an_operator_expects() {
        let status = |e| http_status(&e);
        assert_eq!(
            status(ControllerError::VolumeNotFound { id: "x".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ControllerError::Store(crate::store::StoreError::Backend(
                "etcd down".into()
            ))),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(ControllerError::NodeUnreachable {
                node: "a".into(),
                reason: "refused".into()
            }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(ControllerError::MissingField { field: "x".into() }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ControllerError::Internal("bug".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
