//! Where a call comes from: through the edge proxy (a client of the public API) or
//! straight from another service inside the mesh.
//!
//! Internal RPCs have no `google.api.http` binding, but the edge also proxies plain
//! gRPC by service prefix, so a client could reach them through it. The edge marks
//! every request it forwards: with `use_remote_address` Envoy appends the client's
//! address to `x-forwarded-for`, and the JSON transcoder adds `x-envoy-original-path`.
//! Services call each other directly, without either header. A client cannot remove
//! headers the edge adds, so their presence reliably means "came through the edge";
//! their absence is trusted only as far as the mesh network is.

use bulwark_kernel::tonic::metadata::MetadataMap;

/// Headers the edge adds to every request it forwards.
const EDGE_MARKERS: [&str; 2] = ["x-forwarded-for", "x-envoy-original-path"];

/// Whether the call passed through the edge proxy.
pub fn through_edge(metadata: &MetadataMap) -> bool {
    EDGE_MARKERS.iter().any(|name| metadata.contains_key(*name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_markers_are_recognised() {
        let mut metadata = MetadataMap::new();
        assert!(!through_edge(&metadata));
        metadata.insert(
            "x-forwarded-for",
            "203.0.113.7".parse().unwrap_or_else(|_| panic!()),
        );
        assert!(through_edge(&metadata));
    }
}
