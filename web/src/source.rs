//! Model bytes from JavaScript: the page's [`ByteSource`] (an HTTP range reader, the
//! Cache API, a `File`) read piece by piece. The GGUF header comes first, from a prefix
//! that grows until the parser has what it needs; then [`JsTensors`] hands the engine
//! each tensor, large matrices in pieces of a few MiB, so beyond the header and the
//! tokenizer the wasm heap holds one piece at a time, never the file.

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wisp_core::Error;
use wisp_core::gguf::{GgufError, GgufFile, TensorInfo};
use wisp_core::model::{TensorFuture, TensorSource};

#[wasm_bindgen]
extern "C" {
    /// `{ size: number, read(offset: number, length: number): Promise<Uint8Array> }`:
    /// a model file that is read in pieces.
    #[wasm_bindgen(
        typescript_type = "{ size: number, read(offset: number, length: number): Promise<Uint8Array> }"
    )]
    pub type ByteSource;

    #[wasm_bindgen(method, getter, structural)]
    fn size(this: &ByteSource) -> f64;

    #[wasm_bindgen(method, catch, structural)]
    fn read(this: &ByteSource, offset: f64, length: f64) -> Result<js_sys::Promise, JsValue>;
}

/// The text of a JavaScript exception, for error messages.
pub fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

impl ByteSource {
    /// The file's length in bytes.
    pub fn byte_len(&self) -> Result<u64, Error> {
        let size = self.size();
        if !(size.is_finite() && size >= 0.0 && size.fract() == 0.0) {
            return Err(Error::Source(format!(
                "the source's size is {size}, not a byte count"
            )));
        }
        Ok(size as u64)
    }

    /// Bytes `offset..offset + length`, all of them (a short read is an error).
    pub async fn read_exact(&self, offset: u64, length: u64) -> Result<Vec<u8>, Error> {
        let what = || format!("bytes {offset}..{}", offset + length);
        let promise = self
            .read(offset as f64, length as f64)
            .map_err(|e| Error::Source(format!("{}: {}", what(), js_message(&e))))?;
        let value = JsFuture::from(promise)
            .await
            .map_err(|e| Error::Source(format!("{}: {}", what(), js_message(&e))))?;
        let array = value.dyn_into::<Uint8Array>().map_err(|_| {
            Error::Source(format!("{}: read() must resolve to a Uint8Array", what()))
        })?;
        if array.length() as u64 != length {
            return Err(Error::Source(format!(
                "{}: got {} bytes (is the file truncated?)",
                what(),
                array.length()
            )));
        }
        Ok(array.to_vec())
    }
}

/// Parses the GGUF header from the first bytes of `source`: 1 MiB, then as much as the
/// parser says it needs. Returns the header and the number of bytes it took.
pub async fn read_header(source: &ByteSource) -> Result<(GgufFile, u64), Error> {
    let size = source.byte_len()?;
    let mut want = size.min(1 << 20);
    loop {
        let prefix = source.read_exact(0, want).await?;
        match GgufFile::parse_header(&prefix, Some(size)) {
            Ok(file) => return Ok((file, want)),
            // Past the end of the file is a truncated file, reported as such.
            Err(GgufError::Truncated { needed, .. }) if needed > want && needed <= size => {
                // Headers grow in big arrays (vocabularies): over-read to need few rounds.
                want = needed.saturating_add(needed / 2).min(size);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The tensors of a GGUF file in a [`ByteSource`], each fetched when the loader asks,
/// with `on_progress("weights", bytes so far, total)` after each piece and
/// `on_progress("kernels", 0, 0)` after the last.
pub struct JsTensors<'a> {
    pub source: &'a ByteSource,
    pub file: &'a GgufFile,
    pub on_progress: &'a Function,
    pub total: u64,
    pub done: Cell<u64>,
}

impl JsTensors<'_> {
    /// Bytes `part` (offsets within the tensor) of a tensor.
    async fn fetch_part(&self, info: &TensorInfo, part: Range<u64>) -> Result<Vec<u8>, Error> {
        let whole = self.file.tensor_range(info)?;
        if part.start > part.end || part.end > whole.end - whole.start {
            return Err(Error::Source(format!(
                "bytes {part:?} of tensor {} (it has {})",
                info.name,
                whole.end - whole.start
            )));
        }
        let bytes = self
            .source
            .read_exact(whole.start + part.start, part.end - part.start)
            .await?;
        self.done.set(self.done.get() + bytes.len() as u64);
        report(self.on_progress, "weights", self.done.get(), self.total);
        if self.done.get() >= self.total {
            // The engine now builds its pipelines, which takes a while on a software adapter.
            report(self.on_progress, "kernels", 0, 0);
        }
        Ok(bytes)
    }
}

/// Bytes fetched at once: few enough that the wasm heap stays small, many enough that
/// each read's overhead (a range request, a `Blob.slice`) is paid rarely.
const PIECE_BYTES: u64 = 4 << 20;

impl TensorSource for JsTensors<'_> {
    fn max_piece(&self) -> u64 {
        PIECE_BYTES
    }

    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a> {
        Box::pin(async move {
            self.fetch_part(info, 0..info.n_bytes())
                .await
                .map(Cow::Owned)
        })
    }

    fn fetch_range<'a>(&'a self, info: &'a TensorInfo, range: Range<u64>) -> TensorFuture<'a> {
        Box::pin(async move { self.fetch_part(info, range).await.map(Cow::Owned) })
    }
}

/// Calls `on_progress(phase, done, total)`; a throwing callback does not stop the load.
pub fn report(on_progress: &Function, phase: &str, done: u64, total: u64) {
    let _ = on_progress.call3(
        &JsValue::NULL,
        &phase.into(),
        &(done as f64).into(),
        &(total as f64).into(),
    );
}
