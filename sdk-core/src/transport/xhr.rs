//! tus requests in browsers (see `uploads.rs`): `XMLHttpRequest`, whose
//! upload progress `fetch` does not report. The body is a slice of the
//! `File` or `Blob`, which the browser reads itself: the file never passes
//! through wasm memory. Dropping a request's future aborts it (a cancel).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{ProgressEvent, XmlHttpRequest};

use crate::rt;
use crate::uploads::{status_error, Http, TusError, UploadSource};

/// A body that makes no progress for this long is given up (and resumed).
const STALLED: Duration = Duration::from_secs(30);
/// How long the server may take to answer once it has every byte.
const PROCESSING: Duration = Duration::from_secs(300);

/// `HEAD`: the bytes the server holds.
pub(crate) async fn head(_http: &Http, url: &str) -> Result<u64, TusError> {
    let mut request = Request::open("HEAD", url)?;
    request.xhr.send().map_err(js)?;
    rt::timeout(STALLED, done(&request.xhr, &mut request.ended))
        .await
        .ok_or_else(|| TusError::Network("no answer".into()))?
}

/// `PATCH` from `from`: the rest of the source; `on_sent` is told the bytes
/// that left. Returns the bytes the server then holds.
pub(crate) async fn patch(
    _http: &Http,
    url: &str,
    source: &UploadSource,
    from: u64,
    total: u64,
    on_sent: &dyn Fn(u64),
) -> Result<u64, TusError> {
    let mut request = Request::open("PATCH", url)?;
    let xhr = &request.xhr;
    xhr.set_request_header("upload-offset", &from.to_string())
        .map_err(js)?;
    xhr.set_request_header("content-type", "application/offset+octet-stream")
        .map_err(js)?;
    match source {
        UploadSource::Blob(blob) => {
            let rest = blob
                .slice_with_f64_and_f64(from as f64, total as f64)
                .map_err(js)?;
            xhr.send_with_opt_blob(Some(&rest)).map_err(js)?;
        }
        UploadSource::Bytes(bytes) => {
            let rest = js_sys::Uint8Array::from(&bytes[from as usize..]);
            xhr.send_with_opt_buffer_source(Some(&rest)).map_err(js)?;
        }
    }
    let mut sent = from;
    loop {
        let wait = if sent < total { STALLED } else { PROCESSING };
        tokio::select! {
            answer = done(&request.xhr, &mut request.ended) => return answer,
            loaded = rt::timeout(wait, request.progress.recv()) => match loaded {
                Some(Some(loaded)) => {
                    sent = (from + loaded).min(total);
                    on_sent(sent);
                }
                Some(None) => sent = total,
                None => return Err(TusError::Network("the upload stalled".into())),
            },
        }
    }
}

/// One request: its handlers, and what they report. Dropped, it detaches its
/// handlers and aborts the request if it has not ended.
struct Request {
    xhr: XmlHttpRequest,
    ended: Option<oneshot::Receiver<()>>,
    progress: mpsc::UnboundedReceiver<u64>,
    _on_end: Closure<dyn FnMut()>,
    _on_progress: Closure<dyn FnMut(ProgressEvent)>,
}

impl Request {
    fn open(method: &str, url: &str) -> Result<Self, TusError> {
        let xhr = XmlHttpRequest::new().map_err(js)?;
        xhr.open(method, url).map_err(js)?;
        xhr.set_request_header("tus-resumable", "1.0.0")
            .map_err(js)?;
        let (end_tx, ended) = oneshot::channel();
        let mut end_tx = Some(end_tx);
        let on_end = Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = end_tx.take() {
                let _ = tx.send(());
            }
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
            let _ = progress_tx.send(e.loaded() as u64);
        });
        xhr.upload()
            .map_err(js)?
            .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        Ok(Self {
            xhr,
            ended: Some(ended),
            progress,
            _on_end: on_end,
            _on_progress: on_progress,
        })
    }
}

/// A request's answer: the `Upload-Offset` of a 2xx, or the error.
async fn done(
    xhr: &XmlHttpRequest,
    ended: &mut Option<oneshot::Receiver<()>>,
) -> Result<u64, TusError> {
    let Some(waiting) = ended.as_mut() else {
        return Err(TusError::Network("the request ended".into()));
    };
    let _ = waiting.await;
    *ended = None;
    let status = xhr.status().map_err(js)?;
    if status == 0 {
        return Err(TusError::Network("the connection failed".into()));
    }
    if (200..300).contains(&status) {
        let offset = xhr.get_response_header("upload-offset").map_err(js)?;
        return (offset.and_then(|o| o.parse().ok()))
            .ok_or_else(|| TusError::Network("no Upload-Offset in the answer".into()));
    }
    let body = xhr.response_text().ok().flatten().unwrap_or_default();
    Err(TusError::Status(
        status,
        status_error(status, body.as_bytes()),
    ))
}

impl Drop for Request {
    fn drop(&mut self) {
        self.xhr.set_onloadend(None);
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
        }
        if self.ended.is_some() {
            let _ = self.xhr.abort();
        }
    }
}

fn js(e: wasm_bindgen::JsValue) -> TusError {
    TusError::Network(
        e.as_string()
            .unwrap_or_else(|| "the browser refused the request".into()),
    )
}
