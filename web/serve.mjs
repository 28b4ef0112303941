// The demo's dev server: the page (web/www), the wasm-bindgen output (/pkg) and models
// (/models/NAME.gguf) on localhost, with HTTP range requests (the page falls back to them
// when it cannot cache a model) and a count of model bytes served at /__stats (the
// browser test reads it to see that a reload took the model from the browser cache).
//
//   node web/serve.mjs --pkg target/web/pkg --model smollm2=/path/to/model.gguf [--port 8080]
//
// scripts/web.sh builds everything and runs this.

import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain', '.gguf': 'application/octet-stream' };

/** Parses one `bytes=a-b` range against `size`: [start, end] inclusive, or null if unsatisfiable. */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size - 1; } // suffix: last N bytes
  else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
  return start <= end && start < size ? [start, end] : null;
}

/** Starts the server; resolves with { url, stats, close }. `port` 0 picks a free port. */
export function startServer({ port = 8080, host = '127.0.0.1', pkgDir, models = {} }) {
  const roots = { '/pkg/': path.resolve(pkgDir), '/': path.join(here, 'www') };
  const stats = { modelRequests: 0, modelBytes: 0 };

  async function serveFile(req, res, file, counted) {
    let info;
    try { info = await fs.stat(file); } catch { info = null; }
    if (!info?.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${req.url}\n`); return; }
    const headers = { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'accept-ranges': 'bytes',
      'cache-control': 'no-cache' };
    let [start, end, status] = [0, info.size - 1, 200];
    if (req.headers.range) {
      const range = parseRange(req.headers.range, info.size);
      if (!range) { res.writeHead(416, { 'content-range': `bytes */${info.size}` }).end(); return; }
      [start, end, status] = [range[0], range[1], 206];
      headers['content-range'] = `bytes ${start}-${end}/${info.size}`;
    }
    headers['content-length'] = end - start + 1;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || info.size === 0) { res.end(); return; }
    if (counted) { stats.modelRequests += 1; stats.modelBytes += end - start + 1; }
    createReadStream(file, { start, end }).pipe(res);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const name = decodeURIComponent(url.pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return; }
    if (name === '/__stats') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats)); return; }
    const model = /^\/models\/([^/]+)\.gguf$/.exec(name);
    if (model) {
      const file = models[model[1]];
      if (!file) { res.writeHead(404, { 'content-type': 'text/plain' }).end(`no model ${model[1]} (served: ${Object.keys(models).join(', ')})\n`); return; }
      serveFile(req, res, file, true);
      return;
    }
    const prefix = name.startsWith('/pkg/') ? '/pkg/' : '/';
    const relative = name.slice(prefix.length) || 'index.html';
    const file = path.resolve(roots[prefix], relative);
    if (!file.startsWith(roots[prefix] + path.sep)) { res.writeHead(403).end(); return; }
    serveFile(req, res, file, false);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolve({ url: `http://${host === '127.0.0.1' ? 'localhost' : host}:${actual}/`, stats, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

function parseArgs(argv) {
  const out = { port: 8080, pkgDir: null, models: {} };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--port') { out.port = Number(value); i++; }
    else if (flag === '--pkg') { out.pkgDir = value; i++; }
    else if (flag === '--model') {
      const eq = value?.indexOf('=') ?? -1;
      if (eq < 1) throw new Error(`--model takes NAME=PATH, not ${value}`);
      out.models[value.slice(0, eq)] = value.slice(eq + 1); i++;
    } else throw new Error(`unknown option ${flag} (options: --port N, --pkg DIR, --model NAME=PATH)`);
  }
  if (!out.pkgDir) throw new Error('--pkg DIR (the wasm-bindgen output) is required');
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const server = await startServer(parseArgs(process.argv.slice(2)));
    console.log(`Wisp demo on ${server.url} (Ctrl-C stops it)`);
  } catch (e) {
    console.error(`serve.mjs: ${e.message}`);
    process.exit(2);
  }
}
