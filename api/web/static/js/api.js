// Talking to the API: JSON in and out, the optional API key, images behind the key.
const KEY = "clipfind.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : formatDetail(detail));
    this.status = status;
  }
}

function formatDetail(detail) {
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "input"}: ${d.msg}`).join("; ");
  }
  return String(detail ?? "request failed");
}

export const apiKey = {
  get: () => localStorage.getItem(KEY) || "",
  set: (v) => (v ? localStorage.setItem(KEY, v) : localStorage.removeItem(KEY)),
};

let askKey = null; // set by main.js: () => Promise<boolean> (true when a key was entered)
export function onKeyNeeded(fn) { askKey = fn; }

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey.get();
  if (key) h["X-API-Key"] = key;
  return h;
}

/** fetch JSON; `body` may be an object (sent as JSON) or FormData (multipart). */
export async function api(path, { method = "GET", body, params, signal, retry = true } = {}) {
  let url = path;
  if (params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      for (const one of Array.isArray(v) ? v : [v]) {
        if (one !== undefined && one !== null && one !== "") qs.append(k, one);
      }
    }
    url += (url.includes("?") ? "&" : "?") + qs;
  }
  const init = { method, signal, headers: headers() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, init);
  if (res.status === 401 && retry && askKey && (await askKey())) {
    return api(path, { method, body, params, signal, retry: false });
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new ApiError(res.status, data?.detail ?? res.statusText);
  return data;
}

/** Show an API image in an <img>: a plain URL without a key (the browser caches it),
 *  a blob fetched with the key header otherwise (an <img> cannot send headers). */
export async function setImage(img, url) {
  img.classList.remove("loaded");
  img.onload = () => img.classList.add("loaded");
  if (img.dataset.blob) { URL.revokeObjectURL(img.dataset.blob); delete img.dataset.blob; }
  if (!apiKey.get()) { img.src = url; return; }
  const res = await fetch(url, { headers: headers() });
  if (!res.ok) return;
  const blob = URL.createObjectURL(await res.blob());
  img.dataset.blob = blob;
  img.src = blob;
}

export function thumb(id, size = 384) { return `/items/${id}/thumbnail?size=${size}`; }
