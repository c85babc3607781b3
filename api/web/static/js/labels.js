// The label view: pick a label set, see how many photos got each label, browse a label;
// label the collection with a new set.
import { api } from "./api.js";
import { PagedGrid } from "./grid.js";

const $ = (id) => document.getElementById(id);

export class LabelsView {
  constructor({ openItem, onSetsChanged }) {
    this.sets = [];
    this.onSetsChanged = onSetsChanged;
    this.grid = new PagedGrid($("label-grid"), $("label-sentinel"), {
      onOpen: openItem,
      onPage: (page, shown) => {
        $("label-status").className = "status";
        $("label-status").textContent = `${page.total} photos labelled “${page.label}” · showing ${shown}`;
      },
      onError: (err) => { $("label-status").className = "status error"; $("label-status").textContent = err.message; },
    });
    $("set-select").addEventListener("change", () => this.showSet($("set-select").value));
    $("label-form").addEventListener("submit", (e) => { e.preventDefault(); this.labelCollection(); });
  }

  async load(select) {
    this.sets = await api("/labels");
    const sel = $("set-select");
    sel.replaceChildren(...this.sets.map((s) => new Option(s.name, s.name)));
    this.onSetsChanged(this.sets);
    if (!this.sets.length) {
      $("set-meta").textContent = "No label sets yet: label the collection below.";
      $("label-counts").replaceChildren();
      return;
    }
    const name = select || sel.value || this.sets[0].name;
    sel.value = name;
    this.showSet(name);
  }

  showSet(name) {
    const set = this.sets.find((s) => s.name === name);
    if (!set) return;
    $("set-meta").textContent = `${set.labels.length} labels · ${set.labelled_items} photos labelled · `
      + `${set.none_of_these} none of these · ${set.params.mode || ""}`;
    const chips = Object.entries(set.counts).sort((a, b) => b[1] - a[1]).map(([label, n]) => {
      const chip = document.createElement("button");
      chip.className = "chip";
      chip.type = "button";
      chip.dataset.label = label;
      chip.setAttribute("aria-pressed", "false");
      chip.textContent = label;
      const b = document.createElement("b");
      b.textContent = n;
      chip.append(b);
      chip.addEventListener("click", () => this.browse(set.name, label));
      return chip;
    });
    $("label-counts").replaceChildren(...chips);
    const first = chips.find((c) => Number(c.querySelector("b").textContent) > 0);
    if (first) this.browse(set.name, first.dataset.label);
    else this.grid.clear();
  }

  browse(set, label) {
    for (const c of $("label-counts").children) c.setAttribute("aria-pressed", String(c.dataset.label === label));
    this.grid.reset((offset) => api(`/labels/${encodeURIComponent(set)}/items`, { params: { label, offset, k: 40 } }));
  }

  async labelCollection() {
    const name = $("ls-name").value.trim();
    const labels = $("ls-labels").value.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
    const status = $("ls-status");
    status.className = "status";
    status.textContent = `labelling with ${labels.length} labels…`;
    try {
      const run = await api(`/labels/${encodeURIComponent(name)}`, {
        method: "POST", body: { labels, multi_label: $("ls-multi").checked },
      });
      status.textContent = `${run.labelled} of ${run.scored} photos labelled in ${run.seconds.toFixed(1)} s`;
      await this.load(name);
    } catch (err) {
      status.className = "status error";
      status.textContent = err.message;
    }
  }
}
