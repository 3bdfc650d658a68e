//! Files: `client.upload(…)` and its `Upload` handle, and `attachmentUrls`.

use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::client::{json, promise, JsClient};
use crate::convert::invalid;
use crate::options;

#[wasm_bindgen(js_class = Client)]
impl JsClient {
    /// Uploads a `File` or `Blob` into a conversation, in the background.
    /// Options: `name` and `contentType` (the `File`'s by default),
    /// `onProgress(sent, total)`. Name `await upload.id` in `attachmentIds`.
    pub fn upload(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: String,
        #[wasm_bindgen(unchecked_param_type = "Blob")] file: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "import('./index.js').UploadOptions")]
        options: Option<JsValue>,
    ) -> Result<JsUpload, JsValue> {
        let file = file
            .dyn_into::<web_sys::Blob>()
            .map_err(|_| invalid("file: a File or Blob"))?;
        let (upload, progress) = options::new_upload(conversation_id, file, options)?;
        let progress = progress.map(|f| -> mkondo_sdk::ProgressFn {
            Rc::new(move |sent, total| {
                let _ = f.call2(
                    &JsValue::UNDEFINED,
                    &(sent as f64).into(),
                    &(total as f64).into(),
                );
            })
        });
        Ok(JsUpload {
            core: self.core.upload(upload, progress),
        })
    }

    /// Signed links (absolute, valid about an hour) to read attachments of
    /// messages in a conversation: `{urls: [{id, url, thumbnailUrl}], expiresAt}`.
    #[wasm_bindgen(js_name = attachmentUrls, unchecked_return_type = "Promise<import('./index.js').AttachmentUrls>")]
    pub fn attachment_urls(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = attachmentIds)] attachment_ids: Vec<String>,
    ) -> Promise {
        let ids: Vec<&str> = attachment_ids.iter().map(String::as_str).collect();
        promise(self.core.attachment_urls(conversation_id, &ids), json)
    }
}

/// An upload in progress (`client.upload(…)`).
#[wasm_bindgen(js_name = Upload)]
pub struct JsUpload {
    core: mkondo_sdk::Upload,
}

#[wasm_bindgen(js_class = Upload)]
impl JsUpload {
    /// The upload's id, once the server granted it: name it in
    /// `sendMessage(…, { attachmentIds })` (the message waits for the bytes).
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<string>")]
    pub fn id(&self) -> Promise {
        let core = self.core.clone();
        promise(async move { core.id().await }, |id| id.into())
    }

    /// Resolves with the id once the server holds every byte; rejects with
    /// the server's refusal, or `cancelled`.
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<string>")]
    pub fn done(&self) -> Promise {
        let core = self.core.clone();
        promise(async move { core.finished().await }, |id| id.into())
    }

    /// Bytes sent so far.
    #[wasm_bindgen(getter)]
    pub fn sent(&self) -> f64 {
        self.core.status().sent as f64
    }

    /// The file's size.
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> f64 {
        self.core.status().total as f64
    }

    /// Stops it: `done`, and a message waiting for it, reject with `cancelled`.
    pub fn cancel(&self) {
        self.core.cancel();
    }
}
