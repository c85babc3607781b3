// A grid of thumbnails that loads further pages as it scrolls into view.
import { setImage, thumb } from "./api.js";

export class PagedGrid {
  /** fetchPage(offset) -> Promise<{results, next_offset}>; onOpen(index, items). */
  constructor(grid, sentinel, { onOpen, onPage, onError }) {
    this.grid = grid;
    this.sentinel = sentinel;
    this.onOpen = onOpen;
    this.onPage = onPage || (() => {});
    this.onError = onError || (() => {});
    this.items = [];
    this.generation = 0;
    this.loading = false;
    this.next = null;
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.more();
    }, { rootMargin: "900px" }).observe(sentinel);
  }

  /** Start over with a new source of pages. */
  async reset(fetchPage) {
    this.generation += 1;
    this.fetchPage = fetchPage;
    this.items = [];
    this.grid.replaceChildren();
    this.next = 0;
    this.loading = false;
    await this.more();
  }

  clear() { this.generation += 1; this.items = []; this.next = null; this.grid.replaceChildren(); }

  async more() {
    if (this.loading || this.next === null || !this.fetchPage) return;
    const gen = this.generation;
    this.loading = true;
    try {
      const started = performance.now();
      const page = await this.fetchPage(this.next);
      if (gen !== this.generation) return; // a newer search replaced this one
      this.append(page.results);
      this.next = page.next_offset ?? null;
      this.onPage(page, this.items.length, performance.now() - started);
    } catch (err) {
      if (gen === this.generation) { this.next = null; this.onError(err); }
    } finally {
      if (gen === this.generation) this.loading = false;
    }
    // A short page on a tall screen leaves the sentinel visible: keep filling.
    if (gen === this.generation && this.next !== null && this.sentinelVisible()) this.more();
  }

  sentinelVisible() {
    const r = this.sentinel.getBoundingClientRect();
    return r.top < window.innerHeight + 900;
  }

  append(results) {
    const frag = document.createDocumentFragment();
    for (const hit of results) {
      const index = this.items.length;
      this.items.push(hit);
      frag.append(card(hit, () => this.onOpen(index, this.items)));
    }
    this.grid.append(frag);
  }
}

export function card(hit, onClick) {
  const btn = document.createElement("button");
  btn.className = "card";
  btn.type = "button";
  btn.dataset.id = hit.id;
  btn.title = hit.name;
  const img = document.createElement("img");
  img.alt = hit.name;
  img.loading = "lazy";
  img.decoding = "async";
  setImage(img, thumb(hit.id));
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.name;
  btn.append(img, score, name);
  btn.addEventListener("click", onClick);
  return btn;
}
