//! ApiVersions: the served APIs and their version ranges (see `strom_protocol::apis`).

use strom_protocol::codec::api_versions_body;
use strom_protocol::kafka::messages::{ApiVersionsRequest, ApiVersionsResponse};

pub fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    api_versions_body(0)
}
