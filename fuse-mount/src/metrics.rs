//! Prometheus metrics of a mount: filesystem operations, bytes, and the backend requests they
//! caused. Labels are closed sets (operation names, result classes), never paths.

use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

#[derive(Clone, Debug)]
pub struct MountMetrics {
    registry: Registry,
    /// `archway_fuse_ops_total{op,result}`: filesystem operations by outcome (`ok` or an errno
    /// name).
    pub ops: IntCounterVec,
    /// `archway_fuse_backend_requests_total{op}`: requests the mount made to volume stores
    /// (`head`, `get`, `list`, `put`, `multipart`, `delete`, `copy`).
    pub backend_requests: IntCounterVec,
    /// `archway_fuse_read_bytes_total`, `archway_fuse_written_bytes_total`.
    pub read_bytes: IntCounter,
    pub written_bytes: IntCounter,
    /// `archway_fuse_uploaded_bytes_total`: bytes uploaded on close.
    pub uploaded_bytes: IntCounter,
    /// `archway_fuse_passthrough_opens_total`: opens read by the kernel from a whole local
    /// copy (their reads never reach the mount).
    pub passthrough_opens: IntCounter,
}

impl Default for MountMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MountMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let ops = IntCounterVec::new(
            Opts::new("archway_fuse_ops_total", "Filesystem operations by result"),
            &["op", "result"],
        )
        .expect("static metric definition");
        let backend_requests = IntCounterVec::new(
            Opts::new(
                "archway_fuse_backend_requests_total",
                "Requests made to volume stores by the mount",
            ),
            &["op"],
        )
        .expect("static metric definition");
        let read_bytes = IntCounter::new("archway_fuse_read_bytes_total", "Bytes read by users")
            .expect("static metric definition");
        let written_bytes =
            IntCounter::new("archway_fuse_written_bytes_total", "Bytes written by users")
                .expect("static metric definition");
        let uploaded_bytes = IntCounter::new(
            "archway_fuse_uploaded_bytes_total",
            "Bytes uploaded when written files were closed",
        )
        .expect("static metric definition");
        let passthrough_opens = IntCounter::new(
            "archway_fuse_passthrough_opens_total",
            "Opens read by the kernel from a whole local copy",
        )
        .expect("static metric definition");
        for c in [
            &read_bytes,
            &written_bytes,
            &uploaded_bytes,
            &passthrough_opens,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(ops.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(backend_requests.clone()))
            .expect("metric names are unique");
        Self {
            registry,
            ops,
            backend_requests,
            read_bytes,
            written_bytes,
            uploaded_bytes,
            passthrough_opens,
        }
    }

    pub(crate) fn backend(&self, op: &str) {
        self.backend_requests.with_label_values(&[op]).inc();
    }

    /// Total backend requests of one kind so far.
    pub fn backend_count(&self, op: &str) -> u64 {
        self.backend_requests.with_label_values(&[op]).get()
    }

    /// The text exposition format, for a `/metrics` endpoint.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
