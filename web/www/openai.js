// OpenAI's chat completions, in the shapes WebLLM's `engine.chat.completions.create` takes and
// returns, mapped onto the worker's 'chatMessages' request (client.js): the request's fields
// become the engine's options, and what the engine reports becomes a ChatCompletion or a
// stream of chat.completion.chunk objects.

// Request fields this maps, and how. Any other field (tools, logprobs, response_format, …)
// is refused by name unless it is absent, null or false, rather than silently ignored.
const SAMPLING_FIELDS = {
  temperature: 'temperature',
  top_p: 'top_p',
  presence_penalty: 'presence_penalty',
  frequency_penalty: 'frequency_penalty',
  repetition_penalty: 'repeat_penalty', // WebLLM's name for llama.cpp's repeat penalty
  seed: 'seed',
};
const OTHER_FIELDS = new Set(['messages', 'model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'stop', 'n']);

function messageText(message, index) {
  const { content } = message;
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => {
      if (part?.type !== 'text') throw new Error(`messages[${index}].content: only text parts are supported, not ${JSON.stringify(part?.type)}`);
      return part.text;
    }).join('');
  }
  throw new Error(`messages[${index}].content must be a string or an array of text parts`);
}

/**
 * The worker request for an OpenAI chat completion `request` on the loaded `model` (its
 * summary): `{ messages: [{ role, content }], options: { maxTokens, stop, sampling } }`.
 * Without `max_tokens` the reply may run to the end of the context; without `seed` a
 * fresh one is drawn, as OpenAI's API does.
 */
export function workerRequest(request, model) {
  if (!request || !Array.isArray(request.messages)) throw new Error('chat.completions.create needs { messages: [...] }');
  for (const [key, value] of Object.entries(request)) {
    if (value === undefined || value === null || value === false) continue;
    if (!(key in SAMPLING_FIELDS) && !OTHER_FIELDS.has(key)) throw new Error(`chat.completions.create does not support ${key}`);
  }
  if ((request.n ?? 1) !== 1) throw new Error('chat.completions.create gives one choice: n must be 1');
  const messages = request.messages.map((m, i) => ({ role: String(m.role), content: messageText(m, i) }));
  const sampling = {};
  for (const [field, name] of Object.entries(SAMPLING_FIELDS)) {
    if (request[field] !== undefined && request[field] !== null) sampling[name] = request[field];
  }
  sampling.seed ??= Math.floor(Math.random() * 2 ** 32);
  const stop = request.stop === undefined || request.stop === null ? [] : [request.stop].flat();
  const maxTokens = request.max_completion_tokens ?? request.max_tokens ?? model?.contextSize;
  return { messages, options: { maxTokens, stop, sampling } };
}

/** OpenAI's finish_reason for the engine's stop reason. */
export function finishReason(stopReason) {
  switch (stopReason) {
    case 'end_of_generation':
    case 'stop_string': return 'stop';
    case 'max_tokens':
    case 'context_full': return 'length';
    case 'cancelled': return 'abort'; // WebLLM's reason for an interrupted generation
    default: throw new Error(`unknown stop reason ${stopReason}`);
  }
}

/** `usage` from the engine's stats, WebLLM's speed figures in `extra`. */
export function usage(stats) {
  return {
    prompt_tokens: stats.promptTokens,
    completion_tokens: stats.generatedTokens,
    total_tokens: stats.promptTokens + stats.generatedTokens,
    extra: {
      prefill_tokens_per_s: stats.prefillTokensPerSecond,
      decode_tokens_per_s: stats.decodeTokensPerSecond,
      time_to_first_token_s: stats.prefillMs / 1000,
    },
  };
}

/** What every completion object and chunk of one request share. */
export function header(request, model) {
  const id = `chatcmpl-${Math.random().toString(36).slice(2, 12)}`;
  return { id, created: Math.floor(Date.now() / 1000), model: request.model ?? model?.name ?? '' };
}

/** A non-streaming reply: a ChatCompletion. */
export function completion(head, stats) {
  return {
    ...head,
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: stats.text }, finish_reason: finishReason(stats.stopReason), logprobs: null }],
    usage: usage(stats),
  };
}

/**
 * A streaming reply: chat.completion.chunk objects, one per text piece as it comes
 * (the first with the assistant's role), then one with `finish_reason` and an empty delta,
 * then, with `includeUsage`, OpenAI's last chunk: no choices, the usage.
 * `run` is the client's stream of pieces with `done`, the engine's stats.
 */
export async function* chunks(head, run, includeUsage) {
  const chunk = (delta, reason) => ({ ...head, object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, finish_reason: reason, logprobs: null }] });
  let first = true;
  for await (const piece of run) {
    yield chunk(first ? { role: 'assistant', content: piece } : { content: piece }, null);
    first = false;
  }
  const stats = await run.done;
  yield chunk(first ? { role: 'assistant', content: '' } : {}, finishReason(stats.stopReason));
  if (includeUsage) yield { ...head, object: 'chat.completion.chunk', choices: [], usage: usage(stats) };
}
