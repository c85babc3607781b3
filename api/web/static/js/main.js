// Wiring: tabs, the server's info and features, the API key prompt, drag and drop, and
// the URL: it carries the tab and every view's state, so reload and back/forward work.
import { api, apiKey, onKeyNeeded } from "./api.js";
import { CollectionView } from "./collection.js";
import { DetectView } from "./detect.js";
import { LabelsView } from "./labels.js";
import { Lightbox } from "./lightbox.js";
import { SearchView } from "./search.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["search", "labels", "detect", "collection"];
let view = "search";
let restoring = false; // while the page follows the URL, it does not write it

function toast(message) {
  const t = $("toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

function show(name, record = true) {
  view = name;
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const section of document.querySelectorAll("main .view")) section.hidden = section.dataset.view !== name;
  if (name === "labels") labels.load().catch((e) => toast(e.message));
  if (name === "collection") refreshInfo();
  if (record) recordUrl();
}

/** Write the page's state into the URL: a new history entry when it changed. */
function recordUrl() {
  if (restoring) return;
  const qs = new URLSearchParams();
  if (view !== "search") qs.set("view", view);
  for (const [k, v] of Object.entries({ ...search.state(), ...labels.state(), ...detect.state() })) {
    if (v !== "" && v !== null && v !== undefined) qs.set(k, v);
  }
  const wanted = qs.toString() ? `?${qs}` : "";
  if (wanted !== location.search) history.pushState(null, "", wanted || location.pathname);
}

/** Follow the URL: on load, and on back/forward. */
function restoreUrl() {
  restoring = true;
  try {
    const qs = new URLSearchParams(location.search);
    const name = VIEWS.includes(qs.get("view")) ? qs.get("view") : "search";
    labels.fromUrl(qs);
    detect.fromUrl(qs, name === "detect");
    search.fromUrl(qs);
    show(name, false);
  } finally {
    restoring = false;
  }
}

function askForKey() {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-btn").hidden = false;
    $("key-input").value = apiKey.get();
    dialog.onclose = () => {
      if (dialog.returnValue === "ok") apiKey.set($("key-input").value.trim());
      resolve(dialog.returnValue === "ok" && Boolean(apiKey.get()));
    };
    if (!dialog.open) dialog.showModal();
  });
}

async function refreshInfo() {
  try {
    const info = await api("/info");
    $("stats").textContent = `${info.indexed.toLocaleString()} photos · ${info.model || "no model yet"}`;
    for (const el of document.querySelectorAll("[data-feature]")) {
      el.hidden = !info.features.includes(el.dataset.feature);
    }
    $("key-btn").hidden = !info.auth_required;
    collection.render(info);
    return info;
  } catch (err) {
    toast(err.message);
    return null;
  }
}

function labelOptions(sets) {
  const select = $("f-label");
  const current = select.value;
  const options = [new Option("any", "")];
  for (const s of sets) {
    for (const label of s.labels) options.push(new Option(`${s.name}: ${label}`, `${s.name}:${label}`));
  }
  select.replaceChildren(...options);
  select.value = current;
}

const lightbox = new Lightbox({
  onMoreLikeThis: (hit) => { show("search", false); search.moreLike(hit); },
  onDetect: (hit) => { show("detect", false); detect.setSource({ id: hit.id }); },
});
const openItem = (index, items) => lightbox.open(index, items);
const search = new SearchView({ openItem, toast, onChange: recordUrl });
const labels = new LabelsView({ openItem, onSetsChanged: labelOptions, onChange: recordUrl });
const detect = new DetectView({ onChange: recordUrl });
const collection = new CollectionView({ onIndexed: refreshInfo });

onKeyNeeded(askForKey);
$("key-btn").addEventListener("click", () => askForKey().then((ok) => ok && refreshInfo()));
for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => show(tab.dataset.view));

// Drop a photo anywhere: search by it (or detect in it on the detect view).
let dragDepth = 0;
const hasFile = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
window.addEventListener("dragenter", (e) => { if (hasFile(e)) { dragDepth += 1; $("dropzone").hidden = false; } });
window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) $("dropzone").hidden = true; });
window.addEventListener("dragover", (e) => { if (hasFile(e)) e.preventDefault(); });
window.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("dropzone").hidden = true;
  const file = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  if (view === "detect") detect.setSource({ file });
  else { show("search", false); search.setExample({ file }); }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && document.activeElement?.tagName !== "INPUT" && !$("lightbox").open) {
    e.preventDefault();
    show("search");
    $("q").focus();
  }
});

window.addEventListener("popstate", restoreUrl);
// The label filter's options must exist before the URL can select one. A bare URL has
// nothing to restore (and must not clear what the user typed meanwhile).
refreshInfo()
  .then(() => api("/labels").then(labelOptions).catch(() => {}))
  .then(() => { if (location.search) restoreUrl(); });
