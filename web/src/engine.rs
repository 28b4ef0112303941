//! [`WispEngine`]: one WebGPU device and at most one loaded model, with the calls the
//! demo's worker makes. One request runs at a time; [`WispEngine::stop`] may come at any
//! moment (between two tokens the worker's event loop runs and delivers it).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use js_sys::{Float32Array, Function, Uint32Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_time::Instant;
use wisp_core::defaults::ModelDefaults;
use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::generate::{ChatSession, ChatTurn, GenerateOptions, Generation, Generator};
use wisp_core::gpu::{DeviceOptions, Gpu, KernelTotal, VariantOverrides, totals_by_kernel};
use wisp_core::model::ModelConfig;
use wisp_core::speculative::SpeculationStats;
use wisp_core::tokenizer::{ChatMessage, Tokenizer};

use crate::request::{
    CreateRequest, Drafters, GenerateRequest, LoadRequest, conversation_to_answer,
};
use crate::source::{ByteSource, JsTensors, read_header, report};

/// The adapter, as [`WispEngine::adapter_info`] describes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdapterInfo {
    name: String,
    backend: String,
    /// The kernel variant the engine takes here (activations/reduction/tier).
    variant: String,
    shader_f16: bool,
    subgroups: bool,
    cpu_like: bool,
    max_storage_buffer_binding_size: u64,
    max_buffer_size: u64,
    max_compute_invocations_per_workgroup: u32,
    max_compute_workgroup_storage_size: u32,
    features: Vec<String>,
}

/// A loaded model, as [`WispEngine::load`] describes it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelSummary {
    name: String,
    architecture: String,
    file_bytes: u64,
    header_bytes: u64,
    weight_bytes: u64,
    kv_bytes: u64,
    context_size: u32,
    layers: u32,
    /// The layers of the self-drafting pass (`selfDraft`), if it was recorded.
    self_draft_layers: Option<u32>,
    vocab: u32,
    has_chat_template: bool,
    /// What generations run with when a request leaves a value out, each value with its
    /// source, and the system prompt of the conversation.
    defaults: ModelDefaults,
    load_ms: f64,
    /// The wasm heap once loaded (it only grows, so this is its peak during the load).
    wasm_heap_bytes: u64,
}

/// What a generation did, as [`WispEngine::chat`] and [`WispEngine::complete`] return it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationStats {
    text: String,
    stop_reason: &'static str,
    prompt_tokens: usize,
    reused_tokens: usize,
    generated_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
    prefill_tokens_per_second: f64,
    decode_tokens_per_second: f64,
    /// With speculation: verification steps, drafted, accepted and produced tokens.
    speculation: Option<SpeculationStats>,
}

struct Loaded {
    chat: ChatSession,
    summary: ModelSummary,
}

impl Loaded {
    fn defaults(&self) -> &ModelDefaults {
        &self.summary.defaults
    }

    fn drafters(&self) -> Drafters {
        let generator = self.chat.generator();
        Drafters {
            self_draft_layers: generator.engine().self_draft_layers(),
            draft_model: generator.has_draft_model(),
        }
    }
}

/// Where the model is: a request that works on it takes it out (`Busy`) and puts it back.
enum Slot {
    Empty,
    Busy,
    Ready(Box<Loaded>),
}

/// The engine of one page (in its worker): a WebGPU device and at most one model.
#[wasm_bindgen]
pub struct WispEngine {
    gpu: Arc<Gpu>,
    slot: RefCell<Slot>,
    cancel: AtomicBool,
    /// `unload` came while a request was running: drop the model when it ends.
    unload_pending: Cell<bool>,
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("could not describe the result: {e}")))
}

fn parse<T: for<'de> serde::Deserialize<'de> + Default>(
    value: JsValue,
    what: &str,
) -> Result<T, JsError> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("invalid {what}: {e}")))
}

fn ms(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64() * 1000.0
}

/// Bytes of the wasm module's linear memory (its heap). Memory only grows, so this is
/// the peak so far.
#[wasm_bindgen(js_name = wasmHeapBytes)]
pub fn wasm_heap_bytes() -> f64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| {
            m.buffer()
                .unchecked_into::<js_sys::ArrayBuffer>()
                .byte_length() as f64
        })
        .unwrap_or(0.0)
}

#[wasm_bindgen]
impl WispEngine {
    /// Opens the WebGPU device, with shader-f16 and the adapter's own limits (larger
    /// storage bindings than WebGPU's defaults) when offered. `options`:
    /// `{ maxStorageBinding }` (bytes; a smaller limit than the adapter's, for testing).
    pub async fn create(options: JsValue) -> Result<WispEngine, JsError> {
        let request: CreateRequest = parse(options, "engine options")?;
        let gpu = Gpu::new(&DeviceOptions {
            max_binding_override: request.max_storage_binding,
            ..DeviceOptions::default()
        })
        .await?;
        // `Engine` shares its device by `Arc` (natively across threads); the browser has one
        // thread, where wgpu's types are not `Send`.
        #[allow(clippy::arc_with_non_send_sync)]
        let gpu = Arc::new(gpu);
        Ok(WispEngine {
            gpu,
            slot: RefCell::new(Slot::Empty),
            cancel: AtomicBool::new(false),
            unload_pending: Cell::new(false),
        })
    }

    /// `{ name, backend, variant, shaderF16, subgroups, cpuLike, maxStorageBufferBindingSize, … , features }`.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsError> {
        let caps = &self.gpu.caps;
        let variant = VariantOverrides::default().resolve(caps, &self.gpu.adapter_name())?;
        let mut features: Vec<String> = self
            .gpu
            .device
            .features()
            .iter_names()
            .map(|(n, _)| n.to_string())
            .collect();
        features.sort();
        to_js(&AdapterInfo {
            name: self.gpu.info.name.clone(),
            backend: format!("{:?}", self.gpu.info.backend),
            variant: variant.to_string(),
            shader_f16: caps.shader_f16,
            subgroups: caps.subgroups,
            cpu_like: caps.cpu_like,
            max_storage_buffer_binding_size: caps.max_storage_binding,
            max_buffer_size: caps.max_buffer_size,
            max_compute_invocations_per_workgroup: caps.max_invocations_per_workgroup,
            max_compute_workgroup_storage_size: caps.max_workgroup_storage,
            features,
        })
    }

    /// Calls `callback(reason)` once if the device is lost. The engine is unusable then;
    /// create a new one.
    #[wasm_bindgen(js_name = onDeviceLost)]
    pub fn on_device_lost(&self, callback: Function) {
        let lost = self.gpu.lost_signal().wait();
        spawn_local(async move {
            let reason = lost.await;
            let _ = callback.call1(&JsValue::NULL, &JsValue::from_str(&reason));
        });
    }

    /// Destroys the device, as a driver reset or the browser would lose it: for testing
    /// that the page reports it and recovers.
    #[wasm_bindgen(js_name = destroyDevice)]
    pub fn destroy_device(&self) {
        self.gpu.device.destroy();
    }

    /// Loads a GGUF model from `source`, replacing the one loaded (and its draft model).
    /// `options`: `{ contextSize, act, reduce, tier, tune, selfDraft }` (see
    /// [`LoadRequest`]). The summary's `defaults` are what generations run with when a
    /// request leaves a value out (each with its `source`) and the conversation's system
    /// prompt. `on_progress(phase, done, total)` is called with phase
    /// `"header"`, then `"weights"` (bytes), then `"kernels"` (pipelines being built).
    pub async fn load(
        &self,
        source: ByteSource,
        options: JsValue,
        on_progress: Function,
    ) -> Result<JsValue, JsError> {
        let request: LoadRequest = parse(options, "load options")?;
        match &*self.slot.borrow() {
            Slot::Busy => {
                return Err(JsError::new(
                    "the engine is busy: stop the running request before loading a model",
                ));
            }
            Slot::Empty | Slot::Ready(_) => {}
        }
        // The old model's buffers go before the new ones are made.
        *self.slot.borrow_mut() = Slot::Busy;
        self.unload_pending.set(false);
        let result = self.load_model(&source, &request, &on_progress).await;
        let (slot, out) = match result {
            Ok(loaded) => {
                let summary = to_js(&loaded.summary);
                (Slot::Ready(Box::new(loaded)), summary)
            }
            Err(e) => (Slot::Empty, Err(e)),
        };
        self.settle(slot);
        out
    }

    async fn load_model(
        &self,
        source: &ByteSource,
        request: &LoadRequest,
        on_progress: &Function,
    ) -> Result<Loaded, JsError> {
        let (engine, tokenizer, summary) =
            self.load_engine(source, request, None, on_progress).await?;
        let system_prompt = summary.defaults.system_prompt.value.clone();
        let chat = ChatSession::new(Generator::new(engine, tokenizer), system_prompt);
        Ok(Loaded { chat, summary })
    }

    /// Reads and uploads a model: with `context` (a draft model's), that context size
    /// instead of the request's.
    async fn load_engine(
        &self,
        source: &ByteSource,
        request: &LoadRequest,
        context: Option<u32>,
        on_progress: &Function,
    ) -> Result<(Engine, Tokenizer, ModelSummary), JsError> {
        let started = Instant::now();
        let file_bytes = source.byte_len()?;
        report(on_progress, "header", 0, file_bytes);
        let (file, header_bytes) = read_header(source).await?;
        let config = ModelConfig::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file.metadata)?;
        let self_draft_layers = match &request.self_draft {
            Some(layers) => Some(
                layers
                    .layers(config.n_layer)
                    .map_err(|e| JsError::new(&e))?,
            ),
            None => None,
        };
        let total = file.tensors.iter().map(|t| t.n_bytes()).sum();
        let tensors = JsTensors {
            source,
            file: &file,
            on_progress,
            total,
            done: Cell::new(0),
        };
        let options = EngineOptions {
            n_ctx: context.unwrap_or(request.context_size.min(config.n_ctx_train.max(1))),
            variant: request.variant()?,
            tuning: request.tuning()?,
            self_draft_layers,
            ..EngineOptions::default()
        };
        let engine = Engine::load(self.gpu.clone(), &file, &tensors, &options).await?;
        let summary = ModelSummary {
            name: file
                .metadata
                .get("general.name")
                .and_then(|v| v.as_str())
                .unwrap_or("(unnamed)")
                .to_string(),
            architecture: file.architecture()?.to_string(),
            file_bytes,
            header_bytes,
            weight_bytes: engine.weights.bytes,
            kv_bytes: engine.kv_bytes(),
            context_size: engine.context_size(),
            layers: config.n_layer,
            self_draft_layers,
            vocab: config.vocab_size,
            has_chat_template: tokenizer.chat_template().is_some(),
            defaults: ModelDefaults::for_model(&file.metadata),
            load_ms: ms(started, Instant::now()),
            wasm_heap_bytes: wasm_heap_bytes() as u64,
        };
        Ok((engine, tokenizer, summary))
    }

    /// Loads a draft model for the loaded one, for `speculation: { draftModel: true }`
    /// (`--draft MODEL` natively): a smaller model with the same vocabulary, on this
    /// device, with the loaded model's context size. `options` as in `load`, without
    /// `contextSize` or `selfDraft`. It replaces an earlier draft model; an unfit one is
    /// refused with what differs, and the loaded model stays as it was. Resolves with the
    /// draft's summary.
    #[wasm_bindgen(js_name = loadDraft)]
    pub async fn load_draft(
        &self,
        source: ByteSource,
        options: JsValue,
        on_progress: Function,
    ) -> Result<JsValue, JsError> {
        let request: LoadRequest = parse(options, "draft load options")?;
        if request.self_draft.is_some() {
            return Err(JsError::new(
                "selfDraft is an option of the model, not of its draft model",
            ));
        }
        let mut loaded = self.take()?;
        let context = loaded.summary.context_size;
        let result = match self
            .load_engine(&source, &request, Some(context), &on_progress)
            .await
        {
            Ok((engine, tokenizer, summary)) => loaded
                .chat
                .generator_mut()
                .set_draft_model(engine, tokenizer)
                .map(|()| summary)
                .map_err(JsError::from),
            Err(e) => Err(e),
        };
        self.settle(Slot::Ready(loaded));
        to_js(&result?)
    }

    /// Drops the model and its GPU buffers (after the running request, if one is running:
    /// that one is stopped).
    pub fn unload(&self) {
        let mut slot = self.slot.borrow_mut();
        match *slot {
            Slot::Busy => {
                self.unload_pending.set(true);
                self.cancel.store(true, Ordering::Relaxed);
            }
            _ => *slot = Slot::Empty,
        }
    }

    /// Stops the running generation before its next token; its text so far is kept.
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The loaded model's summary, or `undefined`.
    pub fn model(&self) -> Result<JsValue, JsError> {
        match &*self.slot.borrow() {
            Slot::Ready(l) => to_js(&l.summary),
            _ => Ok(JsValue::UNDEFINED),
        }
    }

    fn take(&self) -> Result<Box<Loaded>, JsError> {
        let mut slot = self.slot.borrow_mut();
        match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Ready(l) => Ok(l),
            other => {
                let error = unavailable(&other);
                *slot = other;
                Err(error)
            }
        }
    }

    /// The options of `request` on the loaded model, checked before the request starts:
    /// a bad value is an error that leaves the conversation as it was.
    fn options(&self, request: &GenerateRequest) -> Result<GenerateOptions, JsError> {
        match &*self.slot.borrow() {
            Slot::Ready(l) => request
                .options(l.defaults(), l.drafters())
                .map_err(|e| JsError::new(&e)),
            other => Err(unavailable(other)),
        }
    }

    /// Ends a request: the model goes back in its slot, unless `unload` came meanwhile.
    fn settle(&self, slot: Slot) {
        *self.slot.borrow_mut() = if self.unload_pending.replace(false) {
            Slot::Empty
        } else {
            slot
        };
    }

    /// Runs `work` on the loaded model, one request at a time. A failed request (a lost
    /// device) may leave a KV cache that neither the generator nor the conversation
    /// mirrors: both start over.
    async fn on_model<T>(
        &self,
        work: impl AsyncFnOnce(&mut Loaded) -> Result<T, wisp_core::Error>,
    ) -> Result<T, JsError> {
        let mut loaded = self.take()?;
        self.cancel.store(false, Ordering::Relaxed);
        let result = work(&mut loaded).await;
        if result.is_err() {
            loaded.chat.generator_mut().reset();
            loaded.chat.clear();
        }
        self.settle(Slot::Ready(loaded));
        Ok(result?)
    }

    /// Sends `message` as the user's turn of the conversation (rendered with the model's
    /// chat template; the KV cache keeps the conversation so far) and streams the reply to
    /// `on_text(piece)`. `options`: `{ maxTokens, stop, sampling: { temperature, … } }`.
    pub async fn chat(
        &self,
        message: String,
        options: JsValue,
        on_text: Function,
    ) -> Result<JsValue, JsError> {
        let request: GenerateRequest = parse(options, "generation options")?;
        let options = self.options(&request)?;
        let stats = self
            .on_model(async |m| {
                let turn = m.chat.send(&message, &options)?.with_cancel(&self.cancel);
                stream_reply(turn, &on_text).await
            })
            .await?;
        to_js(&stats)
    }

    /// Answers a whole conversation: `messages` (`[{ role, content }]`, the last one the
    /// user's; the model's default system message goes first when there is none) replaces
    /// the running one, and the reply streams to `on_text(piece)` as in `chat` (the KV cache
    /// keeps whatever prefix the new conversation shares with the old). What OpenAI-style
    /// chat completions run on; `options` as in `chat`.
    #[wasm_bindgen(js_name = chatMessages)]
    pub async fn chat_messages(
        &self,
        messages: JsValue,
        options: JsValue,
        on_text: Function,
    ) -> Result<JsValue, JsError> {
        let request: GenerateRequest = parse(options, "generation options")?;
        let options = self.options(&request)?;
        let messages: Vec<ChatMessage> = parse(messages, "messages")?;
        let default_system = match &*self.slot.borrow() {
            Slot::Ready(l) => l.defaults().system_prompt.value.clone(),
            other => return Err(unavailable(other)),
        };
        let mut conversation = conversation_to_answer(messages, default_system.as_deref())
            .map_err(|e| JsError::new(&e))?;
        let Some(user) = conversation.pop() else {
            return Err(JsError::new("messages is empty"));
        };
        let stats = self
            .on_model(async |m| {
                m.chat.set_messages(conversation);
                let turn = m
                    .chat
                    .send(&user.content, &options)?
                    .with_cancel(&self.cancel);
                stream_reply(turn, &on_text).await
            })
            .await?;
        to_js(&stats)
    }

    /// Forgets the conversation (the next `chat` starts a new one).
    #[wasm_bindgen(js_name = resetChat)]
    pub async fn reset_chat(&self) -> Result<(), JsError> {
        self.on_model(async |m| {
            m.chat.clear();
            Ok(())
        })
        .await
    }

    /// Continues `prompt` as raw text (no chat template), streaming to `on_text(piece)`.
    pub async fn complete(
        &self,
        prompt: String,
        options: JsValue,
        on_text: Function,
    ) -> Result<JsValue, JsError> {
        let request: GenerateRequest = parse(options, "generation options")?;
        let options = self.options(&request)?;
        let stats = self
            .on_model(async |m| {
                let generator = m.chat.generator_mut();
                let ids = generator.tokenizer().encode_prompt(&prompt)?;
                let mut run = generator.start(&ids, &options)?.with_cancel(&self.cancel);
                while run
                    .next_token(&mut |s| emit_text(&on_text, s))
                    .await?
                    .is_some()
                {}
                Ok(stats(run.finish()))
            })
            .await?;
        to_js(&stats)
    }

    /// The logits at every position of `prompt` (tokenized as `wisp logits` does, the
    /// model's BOS rule included): `{ ids: Uint32Array, vocab, logits: Float32Array }`
    /// with `logits` of `ids.length × vocab` values, position-major.
    pub async fn logits(&self, prompt: String) -> Result<JsValue, JsError> {
        let (ids, rows) = self
            .on_model(async |m| {
                let generator = m.chat.generator_mut();
                let ids = generator.tokenizer().encode_prompt(&prompt)?;
                generator.reset();
                let rows = generator.engine_mut().prefill_logits(&ids).await;
                // The cache now holds this prompt, which the generator's mirror does not know.
                generator.reset();
                Ok((ids, rows?))
            })
            .await?;
        let vocab = rows.first().map_or(0, Vec::len);
        let flat: Vec<f32> = rows.concat();
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"ids".into(), &Uint32Array::from(ids.as_slice()))
            .map_err(|_| JsError::new("building the result"))?;
        js_sys::Reflect::set(&out, &"vocab".into(), &(vocab as f64).into())
            .map_err(|_| JsError::new("building the result"))?;
        js_sys::Reflect::set(&out, &"logits".into(), &Float32Array::from(flat.as_slice()))
            .map_err(|_| JsError::new("building the result"))?;
        Ok(out.into())
    }

    /// Where the GPU time goes: `prompt` as one step, then one decode step, each with a
    /// timestamp around every dispatch: `{ prefill, decode }`, each `{ tokens, totalMs,
    /// kernels: [{ kernel, dispatches, ms }] }` (largest first). `undefined` without
    /// timestamp queries. One pass per dispatch, so totals run above a normal step's.
    pub async fn profile(&self, prompt: String) -> Result<JsValue, JsError> {
        let result = self
            .on_model(async |m| {
                let generator = m.chat.generator_mut();
                let ids = generator.tokenizer().encode_prompt(&prompt)?;
                generator.reset();
                let engine = generator.engine_mut();
                let prefill = engine.profile_step(&ids).await;
                let decode = match prefill {
                    Ok(Some(_)) => engine.profile_step(&ids[ids.len() - 1..]).await,
                    _ => Ok(None),
                };
                generator.reset();
                Ok((ids.len(), prefill?, decode?))
            })
            .await;
        match result? {
            (n, Some(prefill), Some(decode)) => {
                #[derive(Serialize)]
                struct Profile {
                    prefill: StepProfile,
                    decode: StepProfile,
                }
                to_js(&Profile {
                    prefill: step_profile(n, prefill),
                    decode: step_profile(1, decode),
                })
            }
            _ => Ok(JsValue::UNDEFINED),
        }
    }
}

/// Why a request finds no model to work on.
fn unavailable(slot: &Slot) -> JsError {
    JsError::new(if matches!(slot, Slot::Busy) {
        "the engine is busy with another request"
    } else {
        "no model is loaded"
    })
}

/// GPU time per kernel over one step, largest first.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepProfile {
    tokens: usize,
    total_ms: f64,
    kernels: Vec<KernelTotal>,
}

fn step_profile(tokens: usize, times: Vec<wisp_core::gpu::KernelTime>) -> StepProfile {
    let kernels = totals_by_kernel(times);
    StepProfile {
        tokens,
        total_ms: kernels.iter().map(|k| k.ms).sum(),
        kernels,
    }
}

/// Streams a chat turn's reply to `on_text(piece)` and returns its statistics (the reply
/// joins the conversation).
async fn stream_reply(
    mut turn: ChatTurn<'_>,
    on_text: &Function,
) -> Result<GenerationStats, wisp_core::Error> {
    while turn
        .next_token(&mut |s| emit_text(on_text, s))
        .await?
        .is_some()
    {}
    Ok(stats(turn.finish()))
}

/// Passes a piece of text to the page; a throwing callback does not stop generation.
fn emit_text(on_text: &Function, piece: &str) {
    if !piece.is_empty() {
        let _ = on_text.call1(&JsValue::NULL, &JsValue::from_str(piece));
    }
}

fn stats(g: Generation) -> GenerationStats {
    let generated = g.n_generated();
    GenerationStats {
        stop_reason: g.stop_reason.as_str(),
        prompt_tokens: g.prompt_ids.len(),
        reused_tokens: g.n_reused,
        generated_tokens: generated,
        prefill_ms: g.timing.first_token_s * 1e3,
        decode_ms: g.timing.decode_s * 1e3,
        prefill_tokens_per_second: g.timing.prefill_tokens_per_second(g.n_prefilled),
        decode_tokens_per_second: g.timing.decode_tokens_per_second(generated),
        speculation: g.speculation,
        text: g.text,
    }
}
