//! What the HTTP handlers and the engine thread share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::admission::Admission;
use super::error::ApiError;
use super::job::Command;
use super::metrics::Metrics;
use super::model::ServedModel;

pub struct Shared {
    /// Set once, by the engine thread, when the model is loaded.
    pub model: OnceLock<Arc<ServedModel>>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub admission: Admission,
    /// Set on SIGTERM / Ctrl-C: new requests are refused from then on.
    pub draining: AtomicBool,
    pub metrics: Metrics,
    pub api_key: Option<String>,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The model, when requests can be taken: not while it loads, nor while draining.
    pub fn ready_model(&self) -> Result<Arc<ServedModel>, ApiError> {
        if self.is_draining() {
            return Err(ApiError::unavailable(
                "The server is shutting down and takes no new requests",
            ));
        }
        self.model
            .get()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("The model is loading; try again shortly"))
    }
}
