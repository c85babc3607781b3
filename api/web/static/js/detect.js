// The detect view: an image (picked, dropped, or an item from the results), queries,
// and the boxes drawn over the image, coloured per query. An item, the queries and the
// threshold live in the URL (a picked or dropped file cannot).
import { api, setImage, thumb } from "./api.js";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#7aa2ff", "#ffb86b", "#6be3a4", "#ff7eb6", "#c3a6ff", "#f1fa8c", "#66d9ef", "#ff6b6b"];

export class DetectView {
  constructor({ onChange }) {
    this.source = null; // {file} or {id}
    this.onChange = onChange;
    $("detect-file").addEventListener("change", (e) => {
      if (e.target.files[0]) this.setSource({ file: e.target.files[0] });
      e.target.value = "";
    });
    $("detect-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); this.onChange(); });
  }

  setSource(source, run = true) {
    this.source = source;
    if (!source) {
      $("detect-frame").hidden = true;
      $("detect-empty").hidden = false;
      $("detect-boxes").replaceChildren();
      $("detections").replaceChildren();
      return;
    }
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
    if (!run) return;
    if ($("detect-queries").value.trim()) this.run();
    else $("detect-queries").focus();
    this.onChange();
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
    this.runs = (this.runs || 0) + 1;
    const run = this.runs; // a newer run (other queries, another image) wins
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
      if (run !== this.runs) return;
      this.draw(result, queries);
      const n = result.detections.length;
      status.textContent = `${n} box${n === 1 ? "" : "es"} · ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      if (run !== this.runs) return;
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

  state() {
    return { detect: this.source?.id ?? "", find: $("detect-queries").value.trim(), min: $("detect-threshold").value };
  }

  /** Restore the item, queries and threshold; detect at once when the view shows. */
  fromUrl(qs, active) {
    $("detect-queries").value = qs.get("find") || "";
    $("detect-threshold").value = qs.get("min") || "";
    const item = Number(qs.get("detect"));
    if (Number.isInteger(item) && item > 0) {
      if (this.source?.id !== item) this.setSource({ id: item }, false);
      if (active && $("detect-queries").value.trim()) this.run();
    } else if (!this.source?.file) this.setSource(null);
  }
}
