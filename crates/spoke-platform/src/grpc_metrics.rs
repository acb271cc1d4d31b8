//! Request rate, outcome and latency of every gRPC method a service serves, as a tower layer on
//! the server (so every service gets the same series without code of its own):
//!
//! - `spoke_grpc_requests_total{service,method,code}`: calls by final gRPC status code.
//! - `spoke_grpc_request_duration_seconds{service,method}`: from the request to the final status
//!   (for a server stream such as `WatchExport` that is the life of the stream).
//!
//! The status is taken from the response head when the call failed before answering (a
//! "trailers-only" response) and otherwise from the trailers at the end of the body, so a stream
//! that fails after its first message counts with its real code; a body dropped before its
//! trailers (the client went away) counts as `Cancelled`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};

/// Adds the gRPC request metrics to a tonic server (`Server::builder().layer(GrpcMetricsLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let call = Call::start(req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    // A trailers-only answer carries the status in its head: the call is over.
                    let pending = match parts.headers.get("grpc-status") {
                        Some(code) => {
                            call.finish(code_name(code.as_bytes()));
                            None
                        }
                        None => Some(call),
                    };
                    Ok(http::Response::from_parts(
                        parts,
                        ObservedBody {
                            inner: Box::pin(body),
                            pending,
                        },
                    ))
                }
                Err(e) => {
                    call.finish("Unknown");
                    Err(e)
                }
            }
        })
    }
}

/// One call being measured.
#[derive(Debug)]
struct Call {
    service: String,
    method: String,
    started: Instant,
}

impl Call {
    fn start(path: &str) -> Self {
        // gRPC paths are `/<package.Service>/<Method>`.
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_string();
        let method = parts.next().unwrap_or_default().to_string();
        Self {
            service,
            method,
            started: Instant::now(),
        }
    }

    fn finish(self, code: &'static str) {
        metrics::counter!(
            "spoke_grpc_requests_total",
            "service" => self.service.clone(),
            "method" => self.method.clone(),
            "code" => code,
        )
        .increment(1);
        metrics::histogram!(
            "spoke_grpc_request_duration_seconds",
            "service" => self.service,
            "method" => self.method,
        )
        .record(self.started.elapsed().as_secs_f64());
    }
}

/// The response body, watched for the trailers that end the call.
pub struct ObservedBody<B> {
    inner: Pin<Box<B>>,
    pending: Option<Call>,
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if this.pending.is_some() {
            let code = match &polled {
                Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|t| {
                    t.get("grpc-status")
                        .map_or("Unknown", |c| code_name(c.as_bytes()))
                }),
                Poll::Ready(Some(Err(_))) => Some("Unknown"),
                // The body ended without trailers: tonic always sends them, so this is a bare
                // HTTP answer (not gRPC); count it as OK rather than lose it.
                Poll::Ready(None) => Some("Ok"),
                Poll::Pending => None,
            };
            if let Some(code) = code
                && let Some(call) = this.pending.take()
            {
                call.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.pending.take() {
            call.finish("Cancelled");
        }
    }
}

/// The name of a `grpc-status` value (`Ok`, `InvalidArgument`, ...), as tonic spells it.
fn code_name(value: &[u8]) -> &'static str {
    let n = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(2);
    match tonic::Code::from_i32(n) {
        tonic::Code::Ok => "Ok",
        tonic::Code::Cancelled => "Cancelled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_are_named_like_tonic_codes() {
        assert_eq!(code_name(b"0"), "Ok");
        assert_eq!(code_name(b"3"), "InvalidArgument");
        assert_eq!(code_name(b"16"), "Unauthenticated");
        assert_eq!(code_name(b"garbage"), "Unknown");
        assert_eq!(code_name(b"99"), "Unknown");
    }

    #[test]
    fn paths_split_into_service_and_method() {
        let c = Call::start("/spoke.export.v1.ExportService/CreateExport");
        assert_eq!(c.service, "spoke.export.v1.ExportService");
        assert_eq!(c.method, "CreateExport");
    }
}
