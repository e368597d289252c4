//! Remote mode: volumes reached through a gateway's S3 front, read through the block cache.

use std::sync::Arc;
use std::time::Duration;

use archway_cache::{BlockCache, CachedStore};
use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, RetryConfig};

use crate::{MountVolume, Writes};

/// Where the gateway is and who we are to it.
#[derive(Clone)]
pub struct RemoteGateway {
    /// The gateway's base URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl std::fmt::Debug for RemoteGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGateway")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl RemoteGateway {
    /// The volume `name` as a bucket of the gateway; reads go through `cache` when given.
    pub fn volume(
        &self,
        name: &str,
        writes: Writes,
        cache: Option<&Arc<BlockCache>>,
    ) -> Result<MountVolume, object_store::Error> {
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(self.endpoint.trim_end_matches('/'))
            .with_bucket_name(name)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .with_virtual_hosted_style_request(false)
            // A filesystem call should fail within a minute, not retry for ten.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            })
            .with_client_options(
                // (These replace the builder's client options: allow_http must be set here.)
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(300))
                    .with_connect_timeout(Duration::from_secs(10)),
            );
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token);
        }
        let s3 = Arc::new(builder.build()?);
        let store: Arc<dyn object_store::ObjectStore> = match cache {
            Some(cache) if !(writes != Writes::ReadOnly && cache.config().bypass_workspaces) => {
                let scope = format!("{}/{name}", self.endpoint.trim_end_matches('/'));
                Arc::new(CachedStore::new(s3.clone(), cache.clone(), scope))
            }
            _ => s3.clone(),
        };
        Ok(MountVolume {
            name: name.to_string(),
            store,
            lister: Some(s3),
            writes,
        })
    }
}
