// The engine's thread: owns the WispEngine (wasm + WebGPU) and answers the page's
// requests (see client.js for the protocol). Generation streams text back as messages;
// between two tokens the event loop runs, so a 'stop' message takes effect at once.

import init, { WispEngine, wasmHeapBytes } from './pkg/wisp_web.js';
import { openUrl, blobSource, isCached, forget } from './model-store.js';

let engine = null;
const ready = init();
const loadOptions = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

function post(message) {
  self.postMessage(message);
}

function describe(error) {
  return error?.message ?? String(error);
}

async function create(options) {
  await ready;
  if (!self.navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  engine?.free();
  engine = null;
  const created = await WispEngine.create(loadOptions(options));
  created.onDeviceLost((reason) => {
    if (engine === created) engine = null;
    post({ type: 'lost', reason });
  });
  engine = created;
  const info = engine.adapterInfo();
  if (!info.name) {
    // wgpu leaves the name empty on the web; the browser's own adapter info has it.
    const browserInfo = (await navigator.gpu.requestAdapter())?.info;
    info.name = [browserInfo?.vendor, browserInfo?.architecture, browserInfo?.description].filter(Boolean).join(' — ');
  }
  return info;
}

function need() {
  if (!engine) throw new Error('the engine is not created (or its device was lost): create it again');
  return engine;
}

// Opens `url` (through the browser cache) or `blob`, posting progress and notices for `id`.
async function openModel(id, url, blob) {
  const progress = (phase, done, total) => post({ id, type: 'progress', phase, done, total });
  const opened = blob ? { source: blobSource(blob), origin: 'file' } : await openUrl(url, progress);
  if (opened.notice) post({ id, type: 'notice', text: opened.notice });
  return { opened, progress };
}

async function load(id, { url, blob, ...options }) {
  const e = need();
  const started = performance.now();
  const { opened, progress } = await openModel(id, url, blob);
  return timed(await e.load(opened.source, loadOptions(options), progress), started, opened);
}

// loadMs: the whole request, the download into the cache included (engineLoadMs: from
// the first header byte to the last pipeline).
function timed(summary, started, opened) {
  return { ...summary, engineLoadMs: summary.loadMs, loadMs: performance.now() - started, origin: opened.origin, notice: opened.notice };
}

async function loadDraft(id, { url, blob, ...options }) {
  const e = need();
  const started = performance.now();
  const { opened, progress } = await openModel(id, url, blob);
  return timed(await e.loadDraft(opened.source, loadOptions(options), progress), started, opened);
}

const handlers = {
  create: (id, options) => create(options),
  load: (id, args) => load(id, args),
  loadDraft: (id, args) => loadDraft(id, args),
  chat: (id, { message, options }) => need().chat(message, options, (piece) => post({ id, type: 'text', piece })),
  chatMessages: (id, { messages, options }) => need().chatMessages(messages, options, (piece) => post({ id, type: 'text', piece })),
  complete: (id, { prompt, options }) => need().complete(prompt, options, (piece) => post({ id, type: 'text', piece })),
  logits: (id, { prompt }) => need().logits(prompt),
  profile: (id, { prompt }) => need().profile(prompt),
  resetChat: () => need().resetChat(),
  unload: () => need().unload(),
  destroyDevice: () => need().destroyDevice(),
  isCached: (id, { url }) => isCached(new URL(url, self.location.href).href),
  forget: (id, { url }) => forget(new URL(url, self.location.href).href),
  heap: () => wasmHeapBytes(),
};

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  // Stop must not wait behind the generation it stops.
  if (op === 'stop') {
    engine?.stop();
    post({ id, type: 'result', value: null });
    return;
  }
  try {
    const handler = handlers[op];
    if (!handler) throw new Error(`unknown request ${op}`);
    const value = await handler(id, args ?? {});
    post({ id, type: 'result', value });
  } catch (error) {
    post({ id, type: 'error', message: describe(error) });
  }
};
