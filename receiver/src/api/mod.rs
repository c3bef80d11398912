//! The typed API: what every handler's answer and every request body is made of, and what the
//! OpenAPI document is generated from.
//!
//! - [`envelope`]: `{"success": true, "data"}` ([`Reply`]), the error body and the error
//!   responses described once for every operation.
//! - [`fields`]: field types of request bodies, each refusing a wrong value with its message.
//! - [`schema`]: schemas of values whose JSON form varies (exact decimals, currency codes, order
//!   ids) and the path parameters shared by many operations.
//!
//! Request and answer types themselves live next to their handlers (`webhooks::purchase`,
//! `admin::contests`, …), each with its `#[utoipa::path]`.

pub mod envelope;
pub mod fields;
pub mod schema;

pub use envelope::{Envelope, ErrorBody, Reply};
