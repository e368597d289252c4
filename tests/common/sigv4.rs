//! SigV4 presigned requests for any key, signed as S3 canonicalizes it, for requests no S3
//! client makes (keys with `..` segments or control characters), and sent over a plain TCP
//! connection: an HTTP client library would normalize `..` out of the path before sending.

use aws_lc_rs::hmac;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// S3's URI encoding: every byte but the unreserved characters, `/` kept unless asked.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The request target (path and query) of a presigned `method` request for `key` in
/// `bucket` at `host` (path style, region us-east-1), valid for `expires` seconds, signed
/// with `(access key id, secret)`. The key is sent as S3 canonicalizes it: each byte
/// outside the unreserved set percent-encoded, `/` and `.` as they are (so `..` arrives).
pub fn presign(
    method: &str,
    host: &str,
    bucket: &str,
    key: &str,
    (id, secret): (&str, &str),
    expires: u64,
) -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let date = &stamp[..8];
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let path = format!("/{bucket}/{}", uri_encode(key, false));
    let mut query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_string()),
        ("X-Amz-Credential", format!("{id}/{scope}")),
        ("X-Amz-Date", stamp.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", "host".to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
    .collect::<Vec<_>>();
    query.sort();
    let query = query.join("&");
    let canonical = format!("{method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = mac(format!("AWS4{secret}").as_bytes(), date);
    for part in ["us-east-1", "s3", "aws4_request"] {
        k = mac(&k, part);
    }
    let signature = hex::encode(mac(&k, &to_sign));
    format!("{path}?{query}&X-Amz-Signature={signature}")
}

/// Sends `method target` with `body` to `url` (`http://host:port`) over a fresh connection,
/// byte for byte; the status and the body of the answer.
pub async fn raw_request(url: &str, method: &str, target: &str, body: &[u8]) -> (u16, String) {
    let host = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
