//! tus requests for native clients (see `uploads.rs`): HTTP/1.1 with hyper on
//! a connection of their own (an upload makes a few requests), in the clear
//! or over rustls with the client's trust. The body is read from the source
//! as it leaves, 64 KiB at a time, so a file is never whole in memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite};
use tokio::sync::watch;

use super::tls;
use crate::rt;
use crate::uploads::{status_error, Http, TusError, UploadSource};

/// Bytes read and written at a time.
const CHUNK: usize = 64 * 1024;
/// A body that makes no progress for this long is given up (and resumed).
const STALLED: Duration = Duration::from_secs(30);
/// How long the server may take to answer once it has every byte (it
/// decodes images, a few at a time).
const PROCESSING: Duration = Duration::from_secs(300);

/// `HEAD`: the bytes the server holds.
pub(crate) async fn head(http: &Http, url: &str) -> Result<u64, TusError> {
    let request = request(Method::HEAD, url)?
        .body(Empty::<Bytes>::new().map_err(|e| match e {}).boxed())
        .map_err(network)?;
    let (answer, _connection) = rt::timeout(STALLED, send(http, url, request))
        .await
        .ok_or_else(|| network("no answer"))??;
    offset_of(answer).await
}

/// `PATCH` from `from`: the rest of the source; `on_sent` is told the bytes
/// that left. Returns the bytes the server then holds.
pub(crate) async fn patch(
    http: &Http,
    url: &str,
    source: &UploadSource,
    from: u64,
    total: u64,
    on_sent: &(dyn Fn(u64) + Sync),
) -> Result<u64, TusError> {
    let (sent_tx, mut sent) = watch::channel(from);
    // Why the file could not be read, if it could not: that ends the upload.
    let unreadable = Arc::new(Mutex::new(None));
    let body = chunks(source.clone(), from, total, sent_tx, unreadable.clone());
    let body = StreamBody::new(body).boxed();
    let request = request(Method::PATCH, url)?
        .header("upload-offset", from)
        .header(header::CONTENT_TYPE, "application/offset+octet-stream")
        .header(header::CONTENT_LENGTH, total - from)
        .body(body)
        .map_err(network)?;
    let answer = send(http, url, request);
    tokio::pin!(answer);
    let outcome = loop {
        let wait = if *sent.borrow() < total {
            STALLED
        } else {
            PROCESSING
        };
        tokio::select! {
            answer = &mut answer => break answer,
            changed = rt::timeout(wait, sent.changed()) => match changed {
                Some(Ok(())) => on_sent(*sent.borrow_and_update()),
                // The body is sent: only the answer is left to wait for.
                Some(Err(_)) => match rt::timeout(PROCESSING, &mut answer).await {
                    Some(answer) => break answer,
                    None => break Err(network("no answer")),
                },
                None => break Err(network("the upload stalled")),
            },
        }
    };
    if let Some(why) = unreadable.lock().unwrap().take() {
        return Err(TusError::Source(why));
    }
    let (answer, _connection) = outcome?;
    offset_of(answer).await
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The source from `from`, in chunks, telling `sent` how far it got, and
/// `unreadable` why it could not read it.
fn chunks(
    source: UploadSource,
    from: u64,
    total: u64,
    sent: watch::Sender<u64>,
    unreadable: Arc<Mutex<Option<String>>>,
) -> impl futures::Stream<Item = std::io::Result<Frame<Bytes>>> + Send + 'static {
    let reader = Reader {
        source,
        file: None,
        at: from,
        total,
    };
    futures::stream::unfold((reader, sent), move |(mut reader, sent)| {
        let unreadable = unreadable.clone();
        async move {
            // A chunk is asked for once the connection took the previous one.
            let chunk = match reader.next().await {
                Ok(None) => {
                    sent.send_replace(reader.total);
                    return None;
                }
                Ok(Some(bytes)) => {
                    sent.send_replace(reader.at - bytes.len() as u64);
                    Ok(Frame::data(bytes))
                }
                Err(e) => {
                    *unreadable.lock().unwrap() = Some(format!("reading the file: {e}"));
                    Err(e)
                }
            };
            Some((chunk, (reader, sent)))
        }
    })
}

struct Reader {
    source: UploadSource,
    file: Option<tokio::fs::File>,
    at: u64,
    total: u64,
}

impl Reader {
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.at >= self.total {
            return Ok(None);
        }
        let want = (self.total - self.at).min(CHUNK as u64) as usize;
        let bytes = match &self.source {
            UploadSource::Bytes(b) => b.slice(self.at as usize..self.at as usize + want),
            UploadSource::Path(path) => {
                if self.file.is_none() {
                    let mut file = tokio::fs::File::open(path).await?;
                    file.seek(std::io::SeekFrom::Start(self.at)).await?;
                    self.file = Some(file);
                }
                let file = self.file.as_mut().expect("opened above");
                let mut buf = vec![0; want];
                file.read_exact(&mut buf).await?;
                Bytes::from(buf)
            }
        };
        self.at += want as u64;
        Ok(Some(bytes))
    }
}

/// A tus request to `url`: origin-form, with its `Host`.
fn request(method: Method, url: &str) -> Result<http::request::Builder, TusError> {
    let uri: Uri = url.parse().map_err(network)?;
    let host = uri.authority().ok_or_else(|| network("no host"))?.as_str();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header("tus-resumable", "1.0.0"))
}

/// A request's connection task: stopped when the request's caller is done
/// (after an early answer hyper would go on writing the body).
pub(crate) struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one request on a new connection to `url`'s host.
async fn send(
    http: &Http,
    url: &str,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Connection), TusError> {
    let uri: Uri = url.parse().map_err(network)?;
    let secure = uri.scheme_str() == Some("https");
    let port = if secure { 443 } else { 80 };
    let (tcp, host) = tls::dial(&uri, port).await.map_err(network)?;
    if !secure {
        return exchange(tcp, request).await;
    }
    let config = http.tls.websocket().map_err(network)?;
    let stream = tls::secure(config, host, tcp).await.map_err(network)?;
    exchange(stream, request).await
}

async fn exchange<S>(
    stream: S,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Connection), TusError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(network)?;
    let connection = Connection(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let answer = sender.send_request(request).await.map_err(network)?;
    Ok((answer, connection))
}

/// The `Upload-Offset` of a 2xx answer, or the answer's error.
async fn offset_of(answer: Response<Incoming>) -> Result<u64, TusError> {
    let status = answer.status().as_u16();
    let offset = answer
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if (200..300).contains(&status) {
        return offset.ok_or_else(|| network("no Upload-Offset in the answer"));
    }
    let body = rt::timeout(STALLED, answer.into_body().collect())
        .await
        .ok_or_else(|| network("no answer"))?
        .map_err(network)?;
    let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    Err(TusError::Status(status, status_error(status, &body)))
}

fn network(e: impl std::fmt::Display) -> TusError {
    TusError::Network(e.to_string())
}
