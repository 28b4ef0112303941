// Reference logits (tests/reference) and the tolerances of its README, for the
// browser test. Plain functions over Float32Arrays; no browser here.

import fs from 'node:fs';
import path from 'node:path';

/** The tensors of a safetensors file, as { name: { shape, data: Float32Array } } (F32 only). */
export function readSafetensors(file) {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const base = 8 + headerLength;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${file}: tensor ${name} is ${t.dtype}, expected F32`);
    const [start, end] = t.data_offsets;
    const copy = new Uint8Array(bytes.subarray(base + start, base + end));
    out[name] = { shape: t.shape, data: new Float32Array(copy.buffer) };
  }
  return out;
}

/** The reference of one model: its JSON (prompts, ids) and logits. */
export function loadReference(dir, stem) {
  return {
    json: JSON.parse(fs.readFileSync(path.join(dir, `${stem}.json`), 'utf8')),
    logits: readSafetensors(path.join(dir, `${stem}.logits.safetensors`)),
  };
}

export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

export function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Indices of the k largest values, largest first. */
export function topK(v, k) {
  const best = [];
  for (let i = 0; i < v.length; i++) {
    if (best.length < k || v[i] > v[best[best.length - 1]]) {
      best.push(i);
      best.sort((x, y) => v[y] - v[x]);
      if (best.length > k) best.pop();
    }
  }
  return best;
}

/**
 * Problems of `ours` against llama.cpp's `theirs` at one position, by the README's rule:
 * cosine >= 0.999; the same top-1 wherever llama.cpp's top-2 margin is over 0.5; at
 * least 4 of llama.cpp's top 5 in our top 5. Empty when it passes.
 */
export function llamacppProblems(ours, theirs) {
  const problems = [];
  const cos = cosine(ours, theirs);
  if (!(cos >= 0.999)) problems.push(`cosine ${cos.toFixed(6)} < 0.999`);
  const [t1, t2] = topK(theirs, 2);
  const [o1] = topK(ours, 1);
  if (theirs[t1] - theirs[t2] > 0.5 && o1 !== t1) problems.push(`top-1 ${o1} instead of llama.cpp's ${t1} (margin ${(theirs[t1] - theirs[t2]).toFixed(3)})`);
  const ourTop5 = new Set(topK(ours, 5));
  const shared = topK(theirs, 5).filter((i) => ourTop5.has(i)).length;
  if (shared < 4) problems.push(`only ${shared} of llama.cpp's top 5 in ours`);
  return problems;
}

/** Problems against the exact f32 reference for f32 activations: cosine >= 0.99999, max |Δ| <= 0.05. */
export function f32refProblems(ours, ref) {
  const problems = [];
  const cos = cosine(ours, ref);
  const diff = maxAbsDiff(ours, ref);
  if (!(cos >= 0.99999)) problems.push(`cosine ${cos.toFixed(7)} < 0.99999`);
  if (!(diff <= 0.05)) problems.push(`max |Δ| ${diff.toFixed(4)} > 0.05`);
  return problems;
}
