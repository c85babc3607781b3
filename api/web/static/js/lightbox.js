// The full image with its metadata and labels; "more like this"; keyboard navigation.
import { api, apiKey, setImage, thumb } from "./api.js";

const $ = (id) => document.getElementById(id);

export class Lightbox {
  constructor({ onMoreLikeThis, onDetect }) {
    this.dialog = $("lightbox");
    this.items = [];
    this.index = 0;
    $("lb-close").addEventListener("click", () => this.dialog.close());
    $("lb-prev").addEventListener("click", () => this.step(-1));
    $("lb-next").addEventListener("click", () => this.step(1));
    $("lb-more").addEventListener("click", () => { this.dialog.close(); onMoreLikeThis(this.current); });
    $("lb-detect").addEventListener("click", () => { this.dialog.close(); onDetect(this.current); });
    this.dialog.addEventListener("click", (e) => { if (e.target === this.dialog) this.dialog.close(); });
    // A plain link cannot send the API key: fetch the original with it and open the blob.
    $("lb-open").addEventListener("click", async (e) => {
      if (!apiKey.get()) return;
      e.preventDefault();
      const tab = window.open("", "_blank");
      const res = await fetch(this.current.image, { headers: { "X-API-Key": apiKey.get() } });
      if (tab && res.ok) tab.location = URL.createObjectURL(await res.blob());
    });
    this.dialog.addEventListener("keydown", (e) => {
      if (e.key === "ArrowLeft") this.step(-1);
      if (e.key === "ArrowRight") this.step(1);
    });
  }

  get current() { return this.items[this.index]; }

  open(index, items) {
    this.items = items;
    this.index = index;
    if (!this.dialog.open) this.dialog.showModal();
    this.show();
  }

  step(delta) {
    const next = this.index + delta;
    if (next >= 0 && next < this.items.length) { this.index = next; this.show(); }
  }

  async show() {
    const hit = this.current;
    const img = $("lb-img");
    img.alt = hit.name;
    // The grid's thumbnail is cached: show it at once, then the large one over it.
    setImage(img, thumb(hit.id)).then(() => setImage(img, thumb(hit.id, 1024)));
    $("lb-name").textContent = hit.name;
    $("lb-score").textContent = hit.score !== undefined ? `score ${hit.score.toFixed(4)}` : "";
    $("lb-open").href = hit.image;
    $("lb-prev").disabled = this.index === 0;
    $("lb-next").disabled = this.index === this.items.length - 1;
    const meta = $("lb-meta");
    meta.replaceChildren();
    $("lb-labels").replaceChildren();
    try {
      const item = await api(`/items/${hit.id}`);
      if (this.current !== hit) return;
      renderMeta(meta, item);
      renderLabels($("lb-labels"), item.labels);
    } catch (err) {
      meta.textContent = err.message;
    }
  }
}

function renderMeta(dl, item) {
  const rows = [
    ["id", `#${item.id}`],
    ["size", item.width ? `${item.width} × ${item.height} px` : null],
    ["file", `${(item.size / 1024).toFixed(0)} KB ${item.format || ""}`],
    ["taken", item.taken_at ? new Date(item.taken_at).toLocaleString() : null],
    ["camera", item.camera],
    ["path", item.path],
  ];
  for (const [k, v] of rows) {
    if (!v) continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

function renderLabels(box, labels) {
  for (const l of labels) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.title = `label set ${l.set}`;
    chip.textContent = l.label;
    const b = document.createElement("b");
    b.textContent = l.score.toFixed(2);
    chip.append(b);
    box.append(chip);
  }
}
