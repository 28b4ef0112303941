// The page's handle on the engine: a Web Worker (worker.js) running wisp-web, so the page
// never freezes. Every call is a message { id, op, args }; the worker answers with
// 'progress', 'notice' and 'text' messages for that id, then one 'result' or 'error'.
//
//   const wisp = await Wisp.create();          // wisp.adapter: name, variant, limits…
//   await wisp.load({ url }, { onProgress });   // or { blob: file }
//   const reply = wisp.chat('Hi', { sampling: { temperature: 0 } });
//   for await (const piece of reply) show(piece);
//   const stats = await reply.done;             // tokens/s, stop reason…
//   wisp.stop();                                // ends the running generation
//
// OpenAI-style, as WebLLM's engine offers it (openai.js maps the shapes):
//   const c = await wisp.chat.completions.create({ messages, temperature: 0, max_tokens: 64 });
//   c.choices[0].message.content; c.choices[0].finish_reason; c.usage;
//   for await (const chunk of await wisp.chat.completions.create({ messages, stream: true }))
//     show(chunk.choices[0]?.delta.content ?? '');

import * as openai from './openai.js';

export class Wisp {
  #worker;
  #next = 1;
  #pending = new Map();
  #lostListeners = [];
  #options = {};
  /** The loaded model's summary (its name and context size name completions). */
  #model = null;

  constructor(worker) {
    this.#worker = worker;
    this.adapter = null;
    /**
     * `wisp.chat(message, options)`: a reply to `message` in the running conversation, as a
     * stream (see #stream). `options`: `{ maxTokens, stop, sampling: { temperature, top_k,
     * top_p, min_p, repeat_penalty, seed, … }, speculation: { lookup: N | selfDraft: true |
     * draftModel: true, draftMax, draftMin, fixed } }`; sampling values left out take the
     * model's defaults.
     *
     * `wisp.chat.completions.create(request)`: OpenAI's chat completions as WebLLM offers
     * them. `request`: `{ messages, stream, stream_options: { include_usage }, temperature,
     * top_p, max_tokens, seed, stop, presence_penalty, frequency_penalty, repetition_penalty,
     * model, n: 1 }` (values left out take the model's defaults; without max_tokens the reply
     * may fill the context). The messages, whose last is the user's, replace the running
     * conversation. Resolves with a ChatCompletion, or with `stream` an async iterable of
     * chat.completion.chunk objects. `stop()` ends either (finish_reason 'abort').
     */
    const chat = (message, options = {}) => this.#stream('chat', { message, options });
    chat.completions = { create: (request) => this.#createChatCompletion(request) };
    this.chat = chat;
    worker.onmessage = ({ data }) => this.#receive(data);
    worker.onerror = (event) => {
      const error = new Error(`the engine's worker failed: ${event.message ?? 'unknown error'}`);
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
  }

  /**
   * Starts the worker and opens the WebGPU device. `options.maxStorageBinding` (bytes)
   * lowers the storage-binding limit the engine plans for (tests of split matrices).
   */
  static async create(options = {}, workerUrl = new URL('./worker.js', import.meta.url)) {
    const wisp = new Wisp(new Worker(workerUrl, { type: 'module' }));
    wisp.#options = options;
    wisp.adapter = await wisp.#call('create', options);
    return wisp;
  }

  /** Opens the device again (after it was lost); a loaded model must be loaded again. */
  async recreate() {
    this.adapter = await this.#call('create', this.#options);
    return this.adapter;
  }

  /** `callback(reason)` when the GPU device is lost. */
  onDeviceLost(callback) {
    this.#lostListeners.push(callback);
  }

  #receive(message) {
    if (message.type === 'lost') {
      for (const listener of this.#lostListeners) listener(message.reason);
      return;
    }
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    switch (message.type) {
      case 'progress': pending.onProgress?.(message.phase, message.done, message.total); break;
      case 'notice': pending.onNotice?.(message.text); break;
      case 'text': pending.onText?.(message.piece); break;
      case 'result': this.#pending.delete(message.id); pending.resolve(message.value); break;
      case 'error': this.#pending.delete(message.id); pending.reject(new Error(message.message)); break;
    }
  }

  #call(op, args = {}, hooks = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...hooks });
      this.#worker.postMessage({ id, op, args });
    });
  }

  /**
   * Loads a model: `{ url }` (kept in the browser cache after the first download) or
   * `{ blob }` (a File). `onProgress(phase, done, total)` with phase 'download', 'header',
   * 'weights' or 'kernels'; `onNotice(text)` for things the user should know (a full
   * storage quota). Other options go to the engine: `contextSize`, kernel variant overrides
   * `act` ('f32'|'f16'), `reduce` ('subgroup'|'workgroup'), `tier` ('cpu'|'gpu') and `tune`
   * (as WISP_TUNE natively), and `selfDraft` (a number of layers, or 'auto' for three
   * quarters of them) to record the drafting pass of `speculation: { selfDraft: true }`.
   * Resolves with the model's summary (sizes, load time, origin,
   * and `defaults`: the sampling values a request that leaves them out gets, each with its
   * `source`, and the conversation's system prompt).
   */
  async load(model, { onProgress, onNotice, ...options } = {}) {
    this.#model = null;
    this.#model = await this.#call('load', { ...model, ...options }, { onProgress, onNotice });
    return this.#model;
  }

  /**
   * Loads a draft model for the loaded one (`speculation: { draftModel: true }`): a
   * smaller model with the same vocabulary, with the loaded model's context size. `model`
   * and the options as in `load`, without `contextSize` and `selfDraft`. Resolves with
   * the draft's summary; an unfit draft is refused with what differs.
   */
  loadDraft(model, { onProgress, onNotice, ...options } = {}) {
    return this.#call('loadDraft', { ...model, ...options }, { onProgress, onNotice });
  }

  async #createChatCompletion(request) {
    const { messages, options } = openai.workerRequest(request, this.#model);
    const head = openai.header(request, this.#model);
    const run = this.#stream('chatMessages', { messages, options });
    if (request.stream) return openai.chunks(head, run, Boolean(request.stream_options?.include_usage));
    for await (const piece of run) void piece;
    return openai.completion(head, await run.done);
  }

  /** A continuation of raw `prompt` (no chat template), as a stream. */
  complete(prompt, options = {}) {
    return this.#stream('complete', { prompt, options });
  }

  // An async iterable of text pieces with `done`: a promise of the generation's stats.
  #stream(op, args) {
    const queue = [];
    let wake = null;
    let finished = false;
    let failure = null;
    const done = this.#call(op, args, {
      onText: (piece) => { queue.push(piece); wake?.(); },
    });
    done.then(() => { finished = true; wake?.(); }, (e) => { failure = e; finished = true; wake?.(); });
    return {
      done,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          if (queue.length) { yield queue.shift(); continue; }
          if (failure) throw failure;
          if (finished) return;
          await new Promise((resolve) => { wake = resolve; });
          wake = null;
        }
      },
    };
  }

  /** Stops the running generation before its next token. */
  stop() { return this.#call('stop'); }
  /** Forgets the conversation. */
  resetChat() { return this.#call('resetChat'); }
  /** Frees the model's GPU memory. */
  unload() { return this.#call('unload'); }
  /** `{ ids, vocab, logits }`: the logits at every position of `prompt`. */
  logits(prompt) { return this.#call('logits', { prompt }); }
  /** GPU time per kernel of `prompt` as one step and of one decode step (timestamp queries). */
  profile(prompt) { return this.#call('profile', { prompt }); }
  /** Whether the model at `url` is in the browser cache. */
  isCached(url) { return this.#call('isCached', { url }); }
  /** Removes the model at `url` from the browser cache. */
  forget(url) { return this.#call('forget', { url }); }
  /** Bytes of the wasm heap (its peak: it never shrinks). */
  heapBytes() { return this.#call('heap'); }
  /** Destroys the GPU device, as a lost device would be (for testing recovery). */
  destroyDevice() { return this.#call('destroyDevice'); }
  /** Ends the worker. */
  terminate() { this.#worker.terminate(); }
}
