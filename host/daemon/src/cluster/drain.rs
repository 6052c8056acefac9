//! Draining a node, and forwarding requests to peers.
//!
//! `weft node drain NAME` sets the node's draining flag (its heartbeat
//! carries it, so every peer sees it). A draining node forwards the pipeline
//! requests it receives (trigger routes and `POST /v1/pipelines/{name}/invoke`)
//! to the least busy live peer that is not draining, streaming the answer
//! back, so clients that still reach it see no failures while its replicas
//! go idle and scale down. Forwarded requests carry `x-weft-forwarded`, and
//! a node never forwards a forwarded request again (no loops). With no peer
//! to take them, it serves them itself.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Response, StatusCode, Uri};
use futures_util::TryStreamExt;

use super::{Cluster, membership};
use crate::ApiError;

/// Marks a request one node forwarded to another.
pub const FORWARDED: &str = "x-weft-forwarded";

/// Request headers that travel with a forwarded request.
const PASS: [&str; 6] = [
    "content-type",
    "accept",
    "prefer",
    "authorization",
    "last-event-id",
    "x-request-id",
];

impl Cluster {
    /// Whether this node is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts (`true`) or stops draining this node.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        tracing::info!(node = %self.node, draining = on, "cluster: drain state changed");
    }

    /// Where peer `name` serves HTTP, if it is alive.
    pub fn peer_addr(&self, name: &str) -> Option<String> {
        let live = self.live.get()?;
        membership::peers(live)
            .into_iter()
            .find(|(info, age)| info.name == name && *age <= live.config.node_ttl)
            .map(|(info, _)| info.http_addr)
    }

    /// The live peer, not draining, with the fewest calls in flight.
    pub fn forward_target(&self) -> Option<String> {
        self.peer_where(|_| true)
    }

    /// A peer to forward a request for a pipeline this node does not run:
    /// a live, non-draining one that runs `pipeline` (or serves `route`,
    /// `(method, path)`), unless the request was forwarded already.
    pub fn peer_running(
        &self,
        headers: &HeaderMap,
        pipeline: Option<&str>,
        route: Option<(&str, &str)>,
    ) -> Option<String> {
        if headers.contains_key(FORWARDED) {
            return None;
        }
        self.peer_where(|info| {
            pipeline.is_some_and(|p| info.pipelines.iter().any(|n| n == p))
                || route.is_some_and(|(m, r)| info.routes.iter().any(|(pm, pr)| pm == m && pr == r))
        })
    }

    /// The least busy live, non-draining peer for which `wanted` holds.
    fn peer_where(&self, wanted: impl Fn(&super::NodeInfo) -> bool) -> Option<String> {
        let live = self.live.get()?;
        membership::peers(live)
            .into_iter()
            .filter(|(info, age)| {
                info.name != self.node
                    && !info.draining
                    && *age <= live.config.node_ttl
                    && wanted(info)
            })
            .min_by(|(a, _), (b, _)| (a.load.in_flight, &a.name).cmp(&(b.load.in_flight, &b.name)))
            .map(|(info, _)| info.http_addr)
    }

    /// Whether a request with `headers` should go to a peer: this node is
    /// draining, the request was not forwarded already, and a peer can
    /// take it (returned).
    pub fn should_forward(&self, headers: &HeaderMap) -> Option<String> {
        if !self.draining() || headers.contains_key(FORWARDED) {
            return None;
        }
        self.forward_target()
    }

    /// Sends the request to the node at `addr` and streams its answer back.
    pub async fn forward(
        &self,
        addr: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Response<Body>, ApiError> {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let mut req = self
            .http
            .request(method.clone(), format!("http://{addr}{path}"))
            .header(FORWARDED, &self.node)
            .body(body);
        for name in PASS {
            for v in headers.get_all(name) {
                req = req.header(name, v);
            }
        }
        let answer = req.send().await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "forward_failed",
                format!("this node is draining and the peer at {addr} did not answer: {e}"),
            )
            .hint("retry: the next request goes to another peer, or undrain this node")
        })?;
        let mut response = Response::builder().status(answer.status().as_u16());
        for (name, value) in answer.headers() {
            // Hop-by-hop and framing headers are the server's own business.
            if !matches!(
                name.as_str(),
                "connection" | "transfer-encoding" | "content-length" | "keep-alive"
            ) && let Ok(name) = HeaderName::from_bytes(name.as_str().as_bytes())
            {
                response = response.header(name, value.as_bytes());
            }
        }
        let stream = answer.bytes_stream().map_err(std::io::Error::other);
        response
            .header(FORWARDED, &self.node)
            .body(Body::from_stream(stream))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}
