// The detect view: an image (picked, dropped, or an item from the results), queries,
// and the boxes drawn over the image, coloured per query.
import { api, setImage, thumb } from "./api.js";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#7aa2ff", "#ffb86b", "#6be3a4", "#ff7eb6", "#c3a6ff", "#f1fa8c", "#66d9ef", "#ff6b6b"];

export class DetectView {
  constructor() {
    this.source = null; // {file} or {id}
    $("detect-file").addEventListener("change", (e) => {
      if (e.target.files[0]) this.setSource({ file: e.target.files[0] });
      e.target.value = "";
    });
    $("detect-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
  }

  setSource(source) {
    this.source = source;
    $("detect-boxes").replaceChildren();
    $("detections").replaceChildren();
    $("detect-frame").hidden = false;
    $("detect-empty").hidden = true;
    const img = $("detect-img");
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    if (source.file) {
      img.dataset.url = URL.createObjectURL(source.file);
      img.src = img.dataset.url;
    } else {
      delete img.dataset.url;
      setImage(img, thumb(source.id, 1024));
    }
    $("detect-status").textContent = "";
    if ($("detect-queries").value.trim()) this.run();
    else $("detect-queries").focus();
  }

  async run() {
    const queries = $("detect-queries").value.split(",").map((s) => s.trim()).filter(Boolean);
    const status = $("detect-status");
    status.className = "status";
    if (!this.source) { status.textContent = "Pick or drop an image first."; return; }
    if (!queries.length) { status.textContent = "Say what to find, e.g. “a dog, a ball”."; return; }
    const threshold = $("detect-threshold").value;
    status.textContent = "detecting…";
    const started = performance.now();
    try {
      let result;
      if (this.source.file) {
        const form = new FormData();
        for (const q of queries) form.append("queries", q);
        if (threshold) form.append("threshold", threshold);
        form.append("image", this.source.file);
        result = await api("/detect", { method: "POST", body: form });
      } else {
        const body = { queries, item: this.source.id };
        if (threshold) body.threshold = Number(threshold);
        result = await api("/detect", { method: "POST", body });
      }
      this.draw(result, queries);
      const n = result.detections.length;
      status.textContent = `${n} box${n === 1 ? "" : "es"} · ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      status.className = "status error";
      status.textContent = err.message;
    }
  }

  draw(result, queries) {
    const colour = (label) => COLOURS[Math.max(0, queries.indexOf(label)) % COLOURS.length];
    const boxes = result.detections.map((d) => {
      const el = document.createElement("div");
      el.className = "det-box";
      // Percentages of the original image: right at any displayed size.
      el.style.left = `${(100 * d.box.xmin) / result.width}%`;
      el.style.top = `${(100 * d.box.ymin) / result.height}%`;
      el.style.width = `${(100 * (d.box.xmax - d.box.xmin)) / result.width}%`;
      el.style.height = `${(100 * (d.box.ymax - d.box.ymin)) / result.height}%`;
      el.style.setProperty("--c", colour(d.label));
      el.dataset.label = d.label;
      const tag = document.createElement("span");
      tag.textContent = `${d.label} ${d.score.toFixed(2)}`;
      el.append(tag);
      return el;
    });
    $("detect-boxes").replaceChildren(...boxes);
    $("detections").replaceChildren(...result.detections.map((d) => {
      const li = document.createElement("li");
      li.style.setProperty("--c", colour(d.label));
      li.textContent = `${d.label} · ${d.score.toFixed(3)} · [${[d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax].map(Math.round).join(", ")}]`;
      return li;
    }));
  }
}
