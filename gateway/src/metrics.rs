//! Every metric the gateway exports, declared in one place.
//!
//! Names follow `archway_<subsystem>_<what>_<unit>`; counters end in `_total`. Labels come from
//! closed sets: `op` is a route template (`GET /api/v1/volumes/{id}`) or `unmatched`, `result`
//! a status class (`2xx`, `4xx`, `5xx`, …) — never a key, volume id or user.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub s3_requests: IntCounterVec,
    pub s3_bytes: IntCounterVec,
    cache_requests: IntCounterVec,
    cache_bytes: IntCounterVec,
    cache_merged: IntCounter,
    cache_piece_fetches: IntCounter,
    cache_readahead: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_disk_faults: IntCounterVec,
    cache_held: IntGaugeVec,
    pub requests_denied: IntCounterVec,
    audit_dropped: IntCounter,
    quota_refusals: IntCounterVec,
    workspace_usage: IntGaugeVec,
    pub auth_throttled: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "archway_http_requests_total",
                "HTTP API requests by operation and result",
            ),
            &["op", "result"],
        )
        .expect("valid metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "archway_http_request_duration_seconds",
                "HTTP API request latency by operation, until the response head is sent",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["op"],
        )
        .expect("valid metric definition");
        let s3_requests = IntCounterVec::new(
            Opts::new(
                "archway_s3_requests_total",
                "S3 requests by operation and result (ok, not_modified, client_error, server_error)",
            ),
            &["op", "result"],
        )
        .expect("valid metric definition");
        let s3_bytes = IntCounterVec::new(
            Opts::new(
                "archway_s3_bytes_total",
                "Object bytes through the S3 front, by direction (in: uploads, out: downloads)",
            ),
            &["direction"],
        )
        .expect("valid metric definition");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "archway_cache_requests_total",
                "Block and metadata lookups in the cache, by tier (memory, metadata) and result (hit, miss)",
            ),
            &["tier", "result"],
        )
        .expect("valid metric definition");
        let cache_bytes = IntCounterVec::new(
            Opts::new(
                "archway_cache_bytes_total",
                "Object bytes served to readers through the cache vs fetched from the backend",
            ),
            &["kind"],
        )
        .expect("valid metric definition");
        let cache_merged = IntCounter::new(
            "archway_cache_merged_fills_total",
            "Block misses that joined a backend fetch already in flight (single-flight)",
        )
        .expect("valid metric definition");
        let cache_piece_fetches = IntCounter::new(
            "archway_cache_piece_fetches_total",
            "Small reads that missed both tiers and fetched only the 64 KiB pieces they cover",
        )
        .expect("valid metric definition");
        let cache_readahead = IntCounterVec::new(
            Opts::new(
                "archway_cache_readahead_blocks_total",
                "Blocks fetched ahead of their reader: used (the reader took them) or wasted (it stopped first)",
            ),
            &["result"],
        )
        .expect("valid metric definition");
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "archway_cache_evictions_total",
                "Blocks dropped to stay within a tier's budget, by tier (memory, disk)",
            ),
            &["tier"],
        )
        .expect("valid metric definition");
        let cache_disk_faults = IntCounterVec::new(
            Opts::new(
                "archway_cache_disk_faults_total",
                "Disk tier faults, all bypassed to the backend: corrupt (checksum or unreadable \
                 block, dropped), write (block not stored), skipped (too many writes pending)",
            ),
            &["kind"],
        )
        .expect("valid metric definition");
        let cache_held = IntGaugeVec::new(
            Opts::new(
                "archway_cache_bytes",
                "Bytes of blocks held, by tier (memory, disk)",
            ),
            &["tier"],
        )
        .expect("valid metric definition");
        let requests_denied = IntCounterVec::new(
            Opts::new(
                "archway_requests_denied_total",
                "Requests refused (401, 403) by front (s3, api) and reason: the error code the \
                 client got (AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId, \
                 Unauthorized, Forbidden, ...)",
            ),
            &["front", "reason"],
        )
        .expect("valid metric definition");
        let audit_dropped = IntCounter::new(
            "archway_audit_dropped_total",
            "Audit records dropped because the trail's writer was behind (see [audit])",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(requests_denied.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(audit_dropped.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(cache_held.clone()))
            .expect("metric registered once");
        for m in [
            &http_requests,
            &s3_requests,
            &s3_bytes,
            &cache_requests,
            &cache_bytes,
            &cache_evictions,
            &cache_disk_faults,
            &cache_readahead,
        ] {
            registry
                .register(Box::new(m.clone()))
                .expect("metric registered once");
        }
        registry
            .register(Box::new(cache_merged.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(cache_piece_fetches.clone()))
            .expect("metric registered once");

        registry
            .register(Box::new(http_duration.clone()))
            .expect("metric registered once");
        let quota_refusals = IntCounterVec::new(
            Opts::new(
                "archway_quota_refusals_total",
                "Workspace commits this gateway refused for a quota, by the quota's scope \
                 (workspace, user) and what it limits (bytes, objects)",
            ),
            &["scope", "what"],
        )
        .expect("valid metric definition");
        let workspace_usage = IntGaugeVec::new(
            Opts::new(
                "archway_workspace_usage",
                "What every workspace together holds, from the catalogue at the scrape: \
                 unit bytes or objects",
            ),
            &["unit"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(quota_refusals.clone()))
            .expect("metric registered once");
        let auth_throttled = IntCounterVec::new(
            Opts::new(
                "archway_auth_throttled_total",
                "Requests with credentials held off because their source failed to \
                 authenticate too often (server.auth_failure_burst), by front",
            ),
            &["front"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(auth_throttled.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(workspace_usage.clone()))
            .expect("metric registered once");
        Self {
            registry,
            http_requests,
            http_duration,
            s3_requests,
            s3_bytes,
            cache_requests,
            cache_bytes,
            cache_merged,
            cache_piece_fetches,
            cache_readahead,
            cache_evictions,
            cache_disk_faults,
            cache_held,
            requests_denied,
            audit_dropped,
            quota_refusals,
            workspace_usage,
            auth_throttled,
        }
    }

    /// Brings the quota metrics up to the dataplane's refusal counts and the catalogue's
    /// usage totals (at each scrape).
    pub fn observe_quotas(&self, refusals: &[(&str, &str, u64)], usage: Option<(u64, u64)>) {
        for (scope, what, n) in refusals {
            let c = self.quota_refusals.with_label_values(&[scope, what]);
            c.inc_by(n.saturating_sub(c.get()));
        }
        if let Some((bytes, objects)) = usage {
            let set = |unit: &str, v: u64| {
                self.workspace_usage
                    .with_label_values(&[unit])
                    .set(i64::try_from(v).unwrap_or(i64::MAX))
            };
            set("bytes", bytes);
            set("objects", objects);
        }
    }

    /// Brings `archway_audit_dropped_total` up to the trail's own count (at each scrape).
    pub fn observe_audit(&self, dropped: u64) {
        self.audit_dropped
            .inc_by(dropped.saturating_sub(self.audit_dropped.get()));
    }

    /// Brings the cache metrics up to the cache's own counters (called at each scrape).
    pub fn observe_cache(
        &self,
        stats: &archway_dataplane::cache::CacheStats,
        memory_bytes: u64,
        disk_bytes: u64,
    ) {
        use archway_dataplane::cache::CacheStats as S;
        let catch_up = |c: &IntCounter, now: u64| c.inc_by(now.saturating_sub(c.get()));
        let requests =
            |tier: &str, result: &str| self.cache_requests.with_label_values(&[tier, result]);
        catch_up(&requests("memory", "hit"), S::get(&stats.hits));
        catch_up(&requests("memory", "miss"), S::get(&stats.misses));
        catch_up(&requests("metadata", "hit"), S::get(&stats.metadata_hits));
        catch_up(
            &requests("metadata", "miss"),
            S::get(&stats.metadata_misses),
        );
        catch_up(
            &self.cache_bytes.with_label_values(&["served"]),
            S::get(&stats.bytes_served),
        );
        catch_up(
            &self.cache_bytes.with_label_values(&["fetched"]),
            S::get(&stats.bytes_fetched),
        );
        catch_up(&self.cache_merged, S::get(&stats.merged));
        catch_up(&self.cache_piece_fetches, S::get(&stats.piece_fetches));
        catch_up(&requests("listing", "hit"), S::get(&stats.listing_hits));
        catch_up(&requests("listing", "miss"), S::get(&stats.listing_misses));
        let readahead = |result: &str| self.cache_readahead.with_label_values(&[result]);
        catch_up(&readahead("used"), S::get(&stats.readahead_used));
        catch_up(&readahead("wasted"), S::get(&stats.readahead_wasted));
        catch_up(&requests("disk", "hit"), S::get(&stats.disk_hits));
        catch_up(&requests("disk", "miss"), S::get(&stats.disk_misses));
        let evictions = |tier: &str| self.cache_evictions.with_label_values(&[tier]);
        catch_up(&evictions("memory"), S::get(&stats.evictions));
        catch_up(&evictions("disk"), S::get(&stats.disk_evictions));
        let faults = |kind: &str| self.cache_disk_faults.with_label_values(&[kind]);
        catch_up(&faults("corrupt"), S::get(&stats.disk_corrupt));
        catch_up(&faults("write"), S::get(&stats.disk_errors));
        catch_up(&faults("skipped"), S::get(&stats.disk_skipped));
        let held = |tier: &str, bytes: u64| {
            self.cache_held
                .with_label_values(&[tier])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX))
        };
        held("memory", memory_bytes);
        held("disk", disk_bytes);
    }

    /// The registry, for other subsystems to register their metrics with.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
