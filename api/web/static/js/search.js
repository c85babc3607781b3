// The search view: text, "not" terms, an example image (picked or dropped), filters,
// "more like this"; results in an infinitely scrolling grid. state()/fromUrl() carry the
// whole search (text, not-terms, filters, example item) through the page's URL.
import { api, setImage } from "./api.js";
import { PagedGrid } from "./grid.js";

const $ = (id) => document.getElementById(id);
const PAGE = 40;
// URL parameter -> the input that holds it.
const FIELDS = { q: "q", not: "not", path: "f-path", after: "f-after", before: "f-before", label: "f-label", min_score: "f-min" };
const FILTERS = ["path", "after", "before", "label", "min_score"];

export class SearchView {
  constructor({ openItem, toast, onChange }) {
    this.example = null; // {file} or {id, name}
    this.toast = toast;
    this.onChange = onChange; // the search state changed: record it in the URL
    this.grid = new PagedGrid($("grid"), $("sentinel"), {
      onOpen: openItem,
      onPage: (page, shown, ms) => this.status(page, shown, ms),
      onError: (err) => this.error(err),
    });
    $("search-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
    $("file-input").addEventListener("change", (e) => {
      const file = e.target.files[0];
      if (file) this.setExample({ file });
      e.target.value = "";
    });
    $("example-clear").addEventListener("click", () => { this.setExample(null); });
    $("filters-btn").addEventListener("click", () => {
      const f = $("filters");
      f.hidden = !f.hidden;
      $("filters-btn").setAttribute("aria-expanded", String(!f.hidden));
    });
    for (const el of $("filters").querySelectorAll("input, select")) {
      el.addEventListener("change", () => { if (this.hasQuery()) this.run(); else this.onChange(); });
    }
  }

  hasQuery() { return Boolean($("q").value.trim() || this.example); }

  setExample(example, run = true) {
    const old = $("example-img").dataset.url;
    if (old) URL.revokeObjectURL(old);
    this.example = example;
    $("example").hidden = !example;
    if (example?.file) {
      const url = URL.createObjectURL(example.file);
      $("example-img").dataset.url = url;
      $("example-img").src = url;
    } else if (example?.id) {
      delete $("example-img").dataset.url;
      setImage($("example-img"), example.thumb);
    }
    if (run) this.run();
  }

  /** Search for items like `hit` ("more like this"). */
  moreLike(hit) {
    $("q").value = "";
    this.setExample({ id: hit.id, name: hit.name, thumb: `/items/${hit.id}/thumbnail?size=128` });
  }

  params() {
    const nots = $("not").value.split(",").map((s) => s.trim()).filter(Boolean);
    return {
      q: $("q").value.trim(), not: nots,
      path: $("f-path").value.trim(), after: $("f-after").value.trim(),
      before: $("f-before").value.trim(), label: $("f-label").value,
      min_score: $("f-min").value,
    };
  }

  run(pushUrl = true) {
    if (pushUrl) this.onChange();
    if (!this.hasQuery()) {
      this.grid.clear();
      $("search-empty").hidden = false;
      $("search-status").textContent = "";
      return;
    }
    $("search-empty").hidden = true;
    const p = this.params();
    $("search-status").className = "status";
    $("search-status").textContent = "searching…";
    const ex = this.example;
    this.grid.reset((offset) => {
      if (ex?.file) {
        const form = new FormData();
        for (const [k, v] of Object.entries({ ...p, k: PAGE, offset })) {
          for (const one of Array.isArray(v) ? v : [v]) if (one !== "") form.append(k, one);
        }
        form.append("image", ex.file);
        return api("/search", { method: "POST", body: form });
      }
      return api("/search", { params: { ...p, item: ex?.id, k: PAGE, offset } });
    });
  }

  status(page, shown, ms) {
    const what = page.query.map((t) => t.replace(/^1:/, "").replace(/^-1:/, "not ")).join(" · ");
    const more = page.next_offset !== null ? "+" : "";
    $("search-status").textContent = shown
      ? `${shown}${more} results for ${what} · ${Math.round(ms)} ms`
      : `no results for ${what}`;
  }

  error(err) {
    $("search-status").className = "status error";
    $("search-status").textContent = err.message;
  }

  /** What the URL keeps (an uploaded example cannot be kept; an item can). */
  state() {
    const state = Object.fromEntries(Object.entries(FIELDS).map(([k, id]) => [k, $(id).value.trim()]));
    return { ...state, item: this.example?.id ?? "" };
  }

  /** Restore the search from the URL's parameters and run it. */
  fromUrl(qs) {
    for (const [k, id] of Object.entries(FIELDS)) $(id).value = qs.get(k) || "";
    const filtered = FILTERS.some((k) => qs.get(k));
    if (filtered) {
      $("filters").hidden = false;
      $("filters-btn").setAttribute("aria-expanded", "true");
    }
    const item = Number(qs.get("item"));
    if (Number.isInteger(item) && item > 0) this.setExample({ id: item, thumb: `/items/${item}/thumbnail?size=128` }, false);
    else if (this.example) this.setExample(null, false);
    this.run(false);
  }
}
