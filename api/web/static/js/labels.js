// The label view: pick a label set, see how many photos got each label, browse a label;
// label the collection with a new set. The set and the label browsed live in the URL.
import { api } from "./api.js";
import { PagedGrid } from "./grid.js";

const $ = (id) => document.getElementById(id);

export class LabelsView {
  constructor({ openItem, onSetsChanged, onChange }) {
    this.sets = [];
    this.want = { set: "", label: "" }; // what the user picked (or the URL asked for)
    this.onSetsChanged = onSetsChanged;
    this.onChange = onChange;
    this.grid = new PagedGrid($("label-grid"), $("label-sentinel"), {
      onOpen: openItem,
      onPage: (page, shown) => {
        $("label-status").className = "status";
        $("label-status").textContent = `${page.total} photos labelled “${page.label}” · showing ${shown}`;
      },
      onError: (err) => { $("label-status").className = "status error"; $("label-status").textContent = err.message; },
    });
    $("set-select").addEventListener("change", () => {
      this.want = { set: $("set-select").value, label: "" };
      this.showSet(this.want.set);
      this.onChange();
    });
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
    const wanted = [select, this.want.set, sel.value].find((n) => n && this.sets.some((s) => s.name === n));
    const name = wanted || this.sets[0].name;
    sel.value = name;
    this.showSet(name, name === this.want.set ? this.want.label : "");
  }

  showSet(name, label = "") {
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
      chip.addEventListener("click", () => {
        this.want = { set: set.name, label };
        this.browse(set.name, label);
        this.onChange();
      });
      return chip;
    });
    $("label-counts").replaceChildren(...chips);
    const first = chips.find((c) => c.dataset.label === label)
      || chips.find((c) => Number(c.querySelector("b").textContent) > 0);
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
      this.want = { set: name, label: "" };
      await this.load(name);
      this.onChange();
    } catch (err) {
      status.className = "status error";
      status.textContent = err.message;
    }
  }

  state() { return { set: this.want.set, browse: this.want.label }; }

  /** Take the set and label from the URL; they show when the view loads. */
  fromUrl(qs) { this.want = { set: qs.get("set") || "", label: qs.get("browse") || "" }; }
}
