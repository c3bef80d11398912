//! Request ids for requests that come without an `X-Request-Id`.
//!
//! tower-http's `MakeRequestUuid` asks the kernel for randomness on every request (a `getrandom`
//! system call each time, visible in the receiver's profile). These ids are the same random
//! version-4 UUIDs, drawn from the thread's generator (seeded once from the kernel, reseeded by
//! `rand`), so a request pays no system call for its id.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes a random version-4 UUID per request without a system call.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRandomRequestId;

impl MakeRequestId for MakeRandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid.hyphenated().encode_lower(&mut buffer);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_version_4_uuids() {
        let request = Request::new(());
        let mut make = MakeRandomRequestId;
        let first = make.make_request_id(&request).unwrap();
        let second = make.make_request_id(&request).unwrap();
        let text = first.header_value().to_str().unwrap();
        let parsed = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(first.header_value(), second.header_value());
    }
}
