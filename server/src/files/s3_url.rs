//! `--blob-store s3://<bucket>?endpoint=…&region=…&allow_http=true`: where
//! the bucket of ready files is, and nothing else. The URL is strict because
//! it is written into config files and environments: credentials in it
//! (`s3://KEY:SECRET@bucket`) are refused, never used, and no error message
//! repeats the URL's text (it may hold a secret); errors name the bucket or
//! the endpoint's host only once those are known to be well-formed.

use std::net::IpAddr;

/// Where `--blob-store s3://<bucket>?endpoint=…&region=…` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// `None`: AWS itself, `https://s3.<region>.amazonaws.com/<bucket>`
    /// (path-style, as with an endpoint). Else `http(s)://host[:port]/`,
    /// with neither credentials, path, query nor fragment; `http` only to a
    /// loopback host or with `allow_http=true`.
    pub endpoint: Option<url::Url>,
    pub region: String,
}

/// The settings an `s3://` URL's query may hold.
const SETTINGS: &str = "region, endpoint, allow_http";

impl S3Url {
    /// Parses and checks an `s3://` URL; the error says what is wrong without
    /// quoting the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if url.scheme() != "s3" {
            return Err("not an s3:// URL".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "an s3:// URL holds no credentials (user:secret@): they come from \
                 the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY…)"
                    .to_owned(),
            );
        }
        let bucket = url.host_str().unwrap_or_default().to_owned();
        if !valid_bucket(&bucket) {
            return Err(
                "the bucket name follows s3:// (3-63 lower-case letters, digits, \
                 '.' or '-')"
                    .to_owned(),
            );
        }
        let at = |what: &str| format!("s3://{bucket}: {what}");
        if url.port().is_some() || !matches!(url.path(), "" | "/") {
            return Err(at(
                "the bucket alone follows s3://, without a port or a path \
                 (an endpoint's port goes in endpoint=)",
            ));
        }
        if url.fragment().is_some() {
            return Err(at("an s3:// URL has no #fragment"));
        }
        let mut s3 = S3Url {
            bucket: bucket.clone(),
            endpoint: None,
            region: "us-east-1".to_owned(),
        };
        let (mut seen, mut allow_http) = (Vec::new(), false);
        for (key, value) in url.query_pairs() {
            if seen.contains(&key) {
                return Err(at(&format!("{key} is given twice")));
            }
            match &*key {
                "region" if valid_region(&value) => s3.region = value.to_string(),
                "region" => return Err(at("region= is lower-case letters, digits and '-'")),
                "endpoint" => s3.endpoint = Some(endpoint(&value).map_err(|e| at(&e))?),
                "allow_http" => {
                    allow_http = match &*value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(at("allow_http= is true or false")),
                    }
                }
                // The key is not quoted either: it may be a secret pasted in.
                _ => return Err(at(&format!("unknown setting; the settings are {SETTINGS}"))),
            }
            seen.push(key);
        }
        if let Some(endpoint) = &s3.endpoint {
            if endpoint.scheme() == "http" && !allow_http && !loopback(endpoint) {
                return Err(at(&format!(
                    "plain http to {} (not a loopback host) needs allow_http=true: \
                     the files would cross the network unencrypted",
                    host(endpoint)
                )));
            }
        } else if allow_http {
            return Err(at("allow_http=true needs an http:// endpoint="));
        }
        Ok(s3)
    }

    /// The bucket and where it is, for messages and logs (never a secret:
    /// the endpoint holds no credentials).
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("bucket {} at {}", self.bucket, host(endpoint)),
            None => format!(
                "bucket {} at https://s3.{}.amazonaws.com",
                self.bucket, self.region
            ),
        }
    }
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn valid_region(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `scheme://host[:port]`, the part of an endpoint that messages show.
fn host(endpoint: &url::Url) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    match endpoint.port() {
        Some(port) => format!("{}://{host}:{port}", endpoint.scheme()),
        None => format!("{}://{host}", endpoint.scheme()),
    }
}

fn loopback(endpoint: &url::Url) -> bool {
    match endpoint.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn endpoint(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("endpoint= is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("endpoint= is http(s)://host[:port]".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint= holds no credentials (user:secret@)".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "endpoint= is {} alone, without a path, query or fragment",
            host(&url)
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::S3Url;

    #[test]
    fn an_s3_url_names_a_bucket_and_maybe_an_endpoint() {
        let aws = S3Url::parse("s3://my-files").unwrap();
        assert_eq!(
            (aws.bucket.as_str(), aws.region.as_str()),
            ("my-files", "us-east-1")
        );
        assert!(aws.endpoint.is_none());
        assert_eq!(
            aws.describe(),
            "bucket my-files at https://s3.us-east-1.amazonaws.com"
        );
        let local =
            S3Url::parse("s3://b.x?endpoint=http://127.0.0.1:9000&region=eu-west-3").unwrap();
        assert_eq!(local.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
        assert_eq!(local.region, "eu-west-3");
        for loopback in [
            "s3://bucket?endpoint=http://localhost:9000",
            "s3://bucket?endpoint=http://127.1.2.3",
            "s3://bucket?endpoint=http://[::1]:9000/",
            "s3://bucket?endpoint=https://minio.internal&allow_http=false",
            "s3://bucket?endpoint=http://minio.internal:9000&allow_http=true",
            "s3://bucket/",
        ] {
            assert!(S3Url::parse(loopback).is_ok(), "{loopback}");
        }
        for bad in [
            "files",
            "http://bucket",
            "s3://",
            "s3://Bucket",
            "s3://b",
            "s3://bucket/prefix",
            "s3://bucket:9000",
            "s3://bucket#x",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=localhost:9000",
            "s3://bucket?endpoint=https://minio.internal/prefix",
            "s3://bucket?endpoint=https://minio.internal?x=1",
            "s3://bucket?endpoint=https://minio.internal%23x",
            "s3://bucket?endpoint=http://minio.internal:9000",
            "s3://bucket?endpoint=http://10.0.0.2:9000&allow_http=yes",
            "s3://bucket?allow_http=true",
            "s3://bucket?region=",
            "s3://bucket?region=eu-west-1&region=us-east-1",
            "s3://bucket?region=s3.evil.example/",
            "s3://bucket?secret=x",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_in_the_url_is_refused_and_never_repeated() {
        for text in [
            "s3://AKIAEXAMPLE:S3CR3TKEY@bucket",
            "s3://S3CR3TKEY@bucket",
            "s3://bucket?endpoint=https://AKIAEXAMPLE:S3CR3TKEY@minio.internal",
            "s3://bucket?endpoint=https://minio.internal/S3CR3TKEY",
            "s3://bucket?endpoint=https://minio.internal/?key=S3CR3TKEY",
            "s3://bucket?S3CR3TKEY=1",
            "s3://bucket?aws_secret_access_key=S3CR3TKEY",
            "s3://bucket/S3CR3TKEY",
            "s3://bucket#S3CR3TKEY",
            "s3://S3CR3TKEY:x@",
            "s3:// S3CR3TKEY",
        ] {
            let err = S3Url::parse(text).unwrap_err();
            assert!(!err.contains("S3CR3TKEY"), "{text}: {err}");
        }
    }
}
