//! tus requests in browsers (see `uploads.rs`): `XMLHttpRequest`, whose
//! upload progress `fetch` does not report. The body is a slice of the
//! `File` or `Blob`, which the browser reads itself: the file never passes
//! through wasm memory. Dropping a request's future aborts it (a cancel).

use std::time::Duration;

use tokio::sync::mpsc;
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
    request.answer(0, 0, STALLED, &|_| {}).await
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
    request.answer(from, total, PROCESSING, on_sent).await
}

/// What a request's handlers report.
enum Report {
    /// Bytes of the body sent.
    Progress(u64),
    /// It ended: answered, failed or aborted.
    End,
}

/// One request and its handlers. Dropped, it detaches them and aborts the
/// request if it has not ended.
struct Request {
    xhr: XmlHttpRequest,
    ended: bool,
    reports: mpsc::UnboundedReceiver<Report>,
    _on_end: Closure<dyn FnMut()>,
    _on_progress: Closure<dyn FnMut(ProgressEvent)>,
}

impl Request {
    fn open(method: &str, url: &str) -> Result<Self, TusError> {
        let xhr = XmlHttpRequest::new().map_err(js)?;
        xhr.open(method, url).map_err(js)?;
        xhr.set_request_header("tus-resumable", "1.0.0")
            .map_err(js)?;
        let (tx, reports) = mpsc::unbounded_channel();
        let end_tx = tx.clone();
        let on_end = Closure::<dyn FnMut()>::new(move || {
            let _ = end_tx.send(Report::End);
        });
        xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
            let _ = tx.send(Report::Progress(e.loaded() as u64));
        });
        xhr.upload()
            .map_err(js)?
            .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        Ok(Self {
            xhr,
            ended: false,
            reports,
            _on_end: on_end,
            _on_progress: on_progress,
        })
    }

    /// Waits for the answer, telling `on_sent` the body's progress: given up
    /// after [`STALLED`] without progress, or `processing` once it is all sent.
    async fn answer(
        &mut self,
        from: u64,
        total: u64,
        processing: Duration,
        on_sent: &dyn Fn(u64),
    ) -> Result<u64, TusError> {
        let mut sent = from;
        loop {
            let wait = if sent < total { STALLED } else { processing };
            match rt::timeout(wait, self.reports.recv()).await {
                Some(Some(Report::Progress(loaded))) => {
                    sent = (from + loaded).min(total);
                    on_sent(sent);
                }
                Some(Some(Report::End)) => {
                    self.ended = true;
                    return self.result();
                }
                Some(None) | None => return Err(TusError::Network("no answer".into())),
            }
        }
    }

    /// The `Upload-Offset` of a 2xx, or the error.
    fn result(&self) -> Result<u64, TusError> {
        let xhr = &self.xhr;
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
        Err(TusError::Status(status, status_error(status, &body)))
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.xhr.set_onloadend(None);
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
        }
        if !self.ended {
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
