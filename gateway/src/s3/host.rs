//! Virtual-hosted-style addressing of S3 buckets.

use s3s::S3Result;

/// Virtual-hosted-style addressing under one base domain: `bucket.DOMAIN[:port]` names the
/// bucket; any other host (an IP address, the bare domain, a load balancer's name) is path
/// style. Unlike a CNAME-style resolver it never takes an unknown host for a bucket, so path
/// style keeps working on every address.
#[derive(Debug)]
pub struct BucketDomain {
    domain: String,
}

impl BucketDomain {
    pub fn new(domain: &str) -> Result<Self, String> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Self { domain })
        } else {
            Err(format!("server.domain `{domain}` is not a domain name"))
        }
    }
}

impl BucketDomain {
    /// The bucket a `Host` header names, when it is `bucket.DOMAIN[:port]`.
    pub fn bucket_of(&self, host: &str) -> Option<String> {
        use s3s::host::S3Host;
        let vh = self.parse_host_header(host).ok()?;
        vh.bucket().map(str::to_string)
    }
}

impl s3s::host::S3Host for BucketDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let vh = s3s::host::VirtualHost::new(self.domain.as_str());
        if host.starts_with('[') {
            return Ok(vh); // an IPv6 address
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let lower = name.to_ascii_lowercase();
        match lower
            .strip_suffix(self.domain.as_str())
            .and_then(|b| b.strip_suffix('.'))
        {
            Some(bucket) if !bucket.is_empty() => Ok(vh.with_bucket(bucket.to_string())),
            _ => Ok(vh),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_domains() {
        use s3s::host::S3Host;
        let d = BucketDomain::new("s3.example.org").unwrap();
        let vh = |h: &'static str| format!("{:?}", d.parse_host_header(h).unwrap());
        assert!(vh("demo.s3.example.org:9000").contains("Some(\"demo\")"));
        assert!(vh("gaia.dr3.s3.example.org").contains("Some(\"gaia.dr3\")"));
        assert!(vh("127.0.0.1:9000").contains("bucket: None"));
        assert!(vh("s3.example.org").contains("bucket: None"));
        assert!(vh("[::1]:9000").contains("bucket: None"));
        assert!(BucketDomain::new("bad domain").is_err());
    }
}
