//! What every auditsync sink shares, so that a sink crate keeps only its backend's
//! primitives. No SDK and no runtime: third-party sinks use it too.
//!
//! - [`classify`]: one mapping of HTTP status and backend error codes to
//!   [`auditsync_core::ErrorKind`], the same for S3, Azure, GCS and anyone else;
//! - [`listing`]: collects paged listings into sorted [`auditsync_core::ObjectMeta`];
//! - [`upload`]: drives a multipart / block / chunked upload with bounded concurrency;
//! - [`url`]: the usual shapes of sink URLs (`scheme://bucket/prefix`, `scheme:///path`);
//! - [`Secret`]: a config value masked in `Debug`, `Display` and serialization;
//! - [`register_sink!`]: a sink's factory, URL schemes and `link()` in one place.

pub mod classify;
pub mod listing;
mod register;
mod secret;
pub mod upload;
pub mod url;

pub use secret::Secret;

#[doc(hidden)]
pub use auditsync_core as __core;
