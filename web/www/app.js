// The demo page: model picker, progress, chat with streaming output, stop, sampling
// settings, adapter and speed. The engine runs in a worker (client.js); the page only
// shows what it says. `window.wisp` is the client, for tests and the console.

import { Wisp } from './client.js';

const $ = (id) => document.getElementById(id);
const ui = {
  adapter: document.querySelector('[data-testid=adapter]'),
  url: $('model-url'), file: $('model-file'), load: $('load'), progress: $('load-progress'),
  status: $('status'), notice: $('notice'), temperature: $('temperature'), topP: $('top-p'),
  maxTokens: $('max-tokens'), seed: $('seed'), transcript: $('transcript'), output: $('output'),
  speed: $('tokens-per-second'), form: $('chat-form'), prompt: $('prompt'), send: $('send'),
  stop: $('stop'), newChat: $('new-chat'), speculation: $('speculation'),
};

let wisp = null;
let loaded = false;
let generating = false;

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', isError);
}

function showNotice(text) {
  ui.notice.hidden = !text;
  ui.notice.textContent = text ?? '';
}

function refreshButtons() {
  ui.load.disabled = !wisp || generating;
  ui.send.disabled = !loaded || generating;
  ui.stop.disabled = !generating;
  ui.newChat.disabled = !loaded || generating;
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function describeAdapter(a) {
  return `${a.name || '(unnamed adapter)'} (${a.backend}) — kernels ${a.variant}; shader-f16 ${a.shaderF16 ? 'yes' : 'no'}; ` +
    `max storage binding ${mb(a.maxStorageBufferBindingSize)}; ${a.maxComputeInvocationsPerWorkgroup} invocations per workgroup`;
}

async function start() {
  try {
    wisp = await Wisp.create();
    window.wisp = wisp;
    ui.adapter.textContent = describeAdapter(wisp.adapter);
    wisp.onDeviceLost(onDeviceLost);
    setStatus('no model loaded');
  } catch (e) {
    ui.adapter.textContent = 'none';
    setStatus(`WebGPU is not available: ${e.message}`, true);
  }
  refreshButtons();
}

async function onDeviceLost(reason) {
  loaded = false;
  generating = false;
  refreshButtons();
  setStatus(`The GPU device was lost (${reason}). The model must be loaded again; the engine is being restarted…`, true);
  try {
    ui.adapter.textContent = describeAdapter(await wisp.recreate());
    setStatus(`The GPU device was lost (${reason}). The engine was restarted: press Load to load the model again.`, true);
  } catch (e) {
    setStatus(`The GPU device was lost (${reason}) and could not be opened again: ${e.message}. Reload the page.`, true);
  }
  refreshButtons();
}

const phases = { download: 'downloading', header: 'reading the header', weights: 'uploading weights', kernels: 'building kernels' };

async function loadModel() {
  const file = ui.file.files[0];
  const model = file ? { blob: file } : { url: ui.url.value.trim() };
  loaded = false;
  generating = true; // blocks the buttons while loading
  refreshButtons();
  showNotice(null);
  ui.progress.removeAttribute('value');
  setStatus(`loading ${file ? file.name : model.url}…`);
  try {
    const m = await wisp.load(model, {
      // Self-drafting needs its drafting pass recorded with the model.
      selfDraft: ui.speculation.value === 'selfDraft' ? 'auto' : undefined,
      onProgress(phase, done, total) {
        if (total > 0) ui.progress.value = done / total; else ui.progress.removeAttribute('value');
        setStatus(`${phases[phase] ?? phase}${total > 0 ? ` ${mb(done)} / ${mb(total)}` : '…'}`);
      },
      onNotice: showNotice,
    });
    ui.progress.value = 1;
    loaded = true;
    window.lastModel = m;
    showModelDefaults(m.defaults);
    const from = { cache: 'from the browser cache', network: 'downloaded and loaded', file: 'from the local file' }[m.origin];
    setStatus(`ready: ${m.name} (${m.architecture}, ${mb(m.fileBytes)}) ${from} in ${(m.loadMs / 1000).toFixed(1)} s; ` +
      `context ${m.contextSize}; wasm heap ${mb(m.wasmHeapBytes)}`);
    ui.status.dataset.origin = m.origin;
    ui.transcript.replaceChildren();
    ui.output.textContent = '';
  } catch (e) {
    ui.progress.value = 0;
    setStatus(`loading failed: ${e.message}`, true);
  }
  generating = false;
  refreshButtons();
}

// The sampling inputs start from the loaded model's defaults (its GGUF keys, else Wisp's
// table of known models, else llama.cpp's); one the user has typed into is theirs, kept
// across loads and sent with every request. The others are left out of requests, so the
// engine applies the model's own value.
const modelDefaultInputs = { temperature: ui.temperature, top_p: ui.topP };
for (const input of Object.values(modelDefaultInputs)) {
  input.addEventListener('input', () => { input.dataset.userSet = 'true'; });
}

function describeSource(source) {
  switch (source?.kind) {
    case 'gguf': return `the model file's ${source.key}`;
    case 'known_model': return `recommended for ${source.model}: ${source.reference}`;
    case 'explicit': return 'set explicitly';
    default: return "llama.cpp's generic default";
  }
}

function showModelDefaults(defaults) {
  for (const [name, input] of Object.entries(modelDefaultInputs)) {
    const value = defaults?.sampling?.[name];
    if (!value || input.dataset.userSet) continue;
    // An f32 widened to f64 (0.20000000298…): shown as its f32 digits (0.2).
    input.value = String(Number(value.value.toPrecision(7)));
    input.title = `model default: ${describeSource(value.source)}`;
  }
}

function settings() {
  const number = (input, fallback) => (Number.isFinite(input.valueAsNumber) ? input.valueAsNumber : fallback);
  const sampling = { seed: Math.max(0, Math.floor(number(ui.seed, 0))) };
  if (ui.temperature.dataset.userSet && Number.isFinite(ui.temperature.valueAsNumber)) sampling.temperature = Math.max(0, ui.temperature.valueAsNumber);
  if (ui.topP.dataset.userSet && Number.isFinite(ui.topP.valueAsNumber)) sampling.top_p = Math.min(1, Math.max(0.01, ui.topP.valueAsNumber));
  const options = { maxTokens: Math.max(1, Math.floor(number(ui.maxTokens, 256))), sampling };
  // Prompt lookup over trigrams down to single tokens, or the model's first layers; the
  // draft length adapted to the acceptance.
  if (ui.speculation.value === 'lookup') options.speculation = { lookup: 3 };
  if (ui.speculation.value === 'selfDraft') options.speculation = { selfDraft: true };
  return options;
}

// Self-drafting chosen after the load: the model must be loaded again with its pass.
function checkSpeculation() {
  const needsLoad = loaded && ui.speculation.value === 'selfDraft' && window.lastModel?.selfDraftLayers == null;
  showNotice(needsLoad ? 'Self-drafting needs the model loaded with its drafting pass: press Load again.' : null);
}

function addTurn(role, text) {
  const div = document.createElement('div');
  div.className = `turn ${role}`;
  div.textContent = `${role === 'user' ? 'You' : 'Assistant'}: ${text}`;
  ui.transcript.append(div);
}

async function send(event) {
  event.preventDefault();
  const message = ui.prompt.value.trim();
  if (!message || !loaded || generating) return;
  if (ui.output.textContent) addTurn('assistant', ui.output.textContent);
  addTurn('user', message);
  ui.prompt.value = '';
  ui.output.textContent = '';
  ui.speed.textContent = '…';
  generating = true;
  refreshButtons();
  setStatus('generating…');
  const started = performance.now();
  let pieces = 0;
  let first = null;
  try {
    const reply = wisp.chat(message, settings());
    for await (const piece of reply) {
      ui.output.textContent += piece;
      pieces += 1;
      first ??= performance.now();
      const seconds = (performance.now() - first) / 1000;
      if (seconds > 0) ui.speed.textContent = (pieces / seconds).toFixed(1);
    }
    const s = await reply.done;
    ui.speed.textContent = s.decodeTokensPerSecond.toFixed(1);
    ui.speed.title = `prefill ${s.prefillTokensPerSecond.toFixed(1)} tokens/s (${s.promptTokens - s.reusedTokens} tokens), ` +
      `decode ${s.decodeTokensPerSecond.toFixed(1)} tokens/s (${s.generatedTokens} tokens)`;
    const spec = s.speculation;
    // With speculation the drafts are shown even when there were none (the engine drafts
    // only where its measured step costs say drafting pays).
    const drafts = spec
      ? `; ${spec.accepted} of ${spec.drafted} drafts kept, ${(spec.produced / Math.max(1, spec.steps)).toFixed(2)} tokens per verification`
      : '';
    setStatus(`ready (${s.stopReason.replaceAll('_', ' ')}: ${s.generatedTokens} tokens in ${((performance.now() - started) / 1000).toFixed(1)} s${drafts})`);
  } catch (e) {
    setStatus(`generation failed: ${e.message}`, true);
  }
  generating = false;
  refreshButtons();
}

ui.load.addEventListener('click', loadModel);
ui.speculation.addEventListener('change', checkSpeculation);
ui.form.addEventListener('submit', send);
ui.prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) send(e); });
ui.stop.addEventListener('click', () => wisp?.stop());
ui.newChat.addEventListener('click', async () => {
  await wisp.resetChat();
  ui.transcript.replaceChildren();
  ui.output.textContent = '';
});
start();
