//! The loopback S3 server (tests/s3/server.py): moto checking the SigV4
//! signature of every request, started once per test process on a free
//! port. With `MKONDO_TEST_BLOBS=s3` every [`crate::TestServer`] keeps its
//! ready files there, in a bucket of its own database (the nodes of one
//! database share it, as they would share a bucket).
//!
//! Its python is `MKONDO_S3_PYTHON`, else tests/venv.sh makes the venv.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use serde_json::Value;

/// The running server and its credentials.
pub struct S3Server {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    control: Mutex<Control>,
}

struct Control {
    // Held so the server lives as long as this process (it stops when its
    // stdin closes).
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    buckets: HashSet<String>,
}

/// `MKONDO_TEST_BLOBS=s3`: test servers keep their files in S3.
pub fn s3_by_default() -> bool {
    match std::env::var("MKONDO_TEST_BLOBS").as_deref() {
        Ok("s3") => true,
        Ok("file") | Ok("") | Err(_) => false,
        Ok(other) => panic!("MKONDO_TEST_BLOBS must be file or s3, not {other:?}"),
    }
}

/// The server of this test process, started on first use.
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(S3Server::start)
}

impl S3Server {
    fn start() -> S3Server {
        let python = crate::venv::python("s3", "MKONDO_S3_PYTHON");
        let mut child = Command::new(python)
            .arg(crate::venv::root().join("tests/s3/server.py"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/s3/server.py");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let first: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("tests/s3/server.py printed {line:?} instead of its address")
        });
        let field = |name: &str| first[name].as_str().unwrap().to_owned();
        S3Server {
            endpoint: field("url"),
            access_key_id: field("access_key_id"),
            secret_access_key: field("secret_access_key"),
            control: Mutex::new(Control {
                stdin: child.stdin.take().unwrap(),
                _child: child,
                stdout,
                buckets: HashSet::new(),
            }),
        }
    }

    /// Creates `bucket` unless this process did already.
    pub fn bucket(&self, bucket: &str) {
        let mut control = self.control.lock().unwrap();
        if control.buckets.contains(bucket) {
            return;
        }
        writeln!(control.stdin, "{bucket}").unwrap();
        let mut answer = String::new();
        control.stdout.read_line(&mut answer).unwrap();
        assert_eq!(answer.trim(), "ok", "creating the bucket {bucket}");
        control.buckets.insert(bucket.to_owned());
    }

    /// `--blob-store` for `bucket`.
    pub fn url(&self, bucket: &str) -> String {
        format!("s3://{bucket}?endpoint={}", self.endpoint)
    }

    /// The credentials a server is given, as environment variables.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", &self.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
        ]
    }

    /// A client of `bucket`, to look at what a server stored.
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .unwrap();
        Arc::new(store)
    }
}

/// The bucket of the servers on database `db`: a name of its own, as bucket
/// names allow (lower case, digits, '-').
pub fn bucket_of(db: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(db.as_bytes());
    format!("mkondo-{}", hex::encode(&digest[..12]))
}
