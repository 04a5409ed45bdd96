//! The one body type the gateway speaks: boxed, streaming, with a boxed error.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// The error of every body: whatever went wrong while streaming it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body inside the gateway.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete, in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// Box any streaming body, keeping it streaming.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
