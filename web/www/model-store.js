// Where model bytes come from, in the worker: a URL (downloaded once into the Cache
// API, then read from there) or a File/Blob the user picked. Each is handed to the
// engine as a ByteSource { size, read(offset, length) }: the engine reads the GGUF
// header, then one tensor at a time, so the file is never copied whole into the wasm heap.

const CACHE_NAME = 'wisp-models-v1';

/** A Blob (a picked File, or a cached response's body) read by slices. */
export function blobSource(blob) {
  return {
    size: blob.size,
    async read(offset, length) {
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** A URL read with HTTP range requests (when the model could not be cached). */
export function rangeSource(url, size) {
  return {
    size,
    async read(offset, length) {
      const response = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (response.status !== 206) {
        throw new Error(`the server answered a range request for ${url} with HTTP ${response.status}, not 206 (it must support Range)`);
      }
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}

function megabytes(n) {
  return `${(n / 1e6).toFixed(0)} MB`;
}

async function openCache() {
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // No Cache API here (an insecure origin, a private window): load without it.
  }
}

/** Whether the model at `url` is in the browser cache. */
export async function isCached(url) {
  const cache = await openCache();
  return cache ? (await cache.match(url)) !== undefined : false;
}

/** Removes the model at `url` from the browser cache. */
export async function forget(url) {
  const cache = await openCache();
  return cache ? cache.delete(url) : false;
}

/**
 * Opens the model at `url`: from the browser cache when it is there; otherwise it is
 * downloaded into the cache (`onProgress('download', bytes, total)`) and read from there.
 * The Cache API stores an entry only once its whole body is written, so an interrupted or
 * refused download leaves nothing behind. When the quota is too small, the model is read
 * with range requests instead and `notice` says why it was not kept.
 * Returns { source, origin: 'cache' | 'network', notice? }.
 */
export async function openUrl(url, onProgress) {
  const absolute = new URL(url, self.location.href).href;
  const cache = await openCache();
  if (cache) {
    const hit = await cache.match(absolute);
    if (hit) return { source: blobSource(await hit.blob()), origin: 'cache' };
  }
  const head = await fetch(absolute, { method: 'HEAD' });
  if (!head.ok) throw new Error(`could not fetch the model at ${url}: HTTP ${head.status} ${head.statusText}`);
  const total = Number(head.headers.get('content-length')) || 0;
  if (!cache) {
    return { source: rangeSource(absolute, total), origin: 'network', notice: 'This browser offers no Cache API here: the model is not kept for the next visit.' };
  }
  const notKept = (why) => `The model (${megabytes(total)}) does not fit in this site's browser storage (${why}): ` +
    'it is loaded without being kept, and the next visit downloads it again.';
  const estimate = await navigator.storage?.estimate?.().catch(() => null);
  const free = estimate ? estimate.quota - estimate.usage : Infinity;
  if (total > free) {
    return { source: rangeSource(absolute, total), origin: 'network', notice: notKept(`${megabytes(Math.max(free, 0))} free of ${megabytes(estimate.quota)}`) };
  }
  const response = await fetch(absolute);
  if (!response.ok) throw new Error(`could not fetch the model at ${url}: HTTP ${response.status} ${response.statusText}`);
  let received = 0;
  const counted = response.body.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      received += chunk.byteLength;
      onProgress('download', received, total);
      controller.enqueue(chunk);
    },
  }));
  try {
    await cache.put(absolute, new Response(counted, { headers: response.headers }));
  } catch (e) {
    await cache.delete(absolute).catch(() => {});
    if (e?.name === 'QuotaExceededError') {
      return { source: rangeSource(absolute, total), origin: 'network', notice: notKept(`the browser refused it: ${e.message}`) };
    }
    throw new Error(`downloading the model from ${url} failed after ${megabytes(received)}: ${e?.message ?? e}`);
  }
  if (total && received !== total) {
    await cache.delete(absolute).catch(() => {});
    throw new Error(`the download of ${url} ended after ${received} of ${total} bytes`);
  }
  const stored = await cache.match(absolute);
  return { source: blobSource(await stored.blob()), origin: 'network' };
}
