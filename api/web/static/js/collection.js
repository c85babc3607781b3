// The collection view: counts, model, index kind; roots the server may index, with an
// "Index now" button and live job progress; skipped files and why.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);

export class CollectionView {
  constructor({ onIndexed }) {
    this.onIndexed = onIndexed;
    this.polling = new Map(); // root name -> timer
  }

  render(info) {
    const stats = [
      ["photos", info.indexed.toLocaleString()], ["skipped", info.skipped.toLocaleString()],
      ["model", info.model || "—"], ["index", `${info.index.kind} · ${info.index.vectors.toLocaleString()}`],
      ["collection", info.collection], ["version", info.version],
    ];
    $("collection-info").replaceChildren(...stats.map(([k, v]) => {
      const div = document.createElement("div");
      div.className = "stat";
      div.innerHTML = '<div class="v"></div><div class="k"></div>';
      div.firstChild.textContent = v;
      if (String(v).length > 14) div.firstChild.classList.add("long");
      div.lastChild.textContent = k;
      return div;
    }));
    const roots = info.roots.map((r) => this.root(r));
    if (!roots.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No roots configured. Start the server with `clipfind serve --root PATH` to index from here.";
      roots.push(p);
    }
    $("roots").replaceChildren(...roots);
    const skipped = (info.skipped_files || []).slice(0, 200).map((s) => `${s.path}: ${s.reason}`);
    $("skipped").replaceChildren(...(skipped.length ? skipped : ["none"]).map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
  }

  root(r) {
    const row = document.createElement("div");
    row.className = "root";
    row.innerHTML = '<b></b><span class="path"></span><span class="job muted"></span>'
      + '<div class="progress"><i></i></div><button type="button">Index now</button>';
    row.querySelector("b").textContent = r.name;
    row.querySelector(".path").textContent = r.path + (r.exists ? "" : " (missing)");
    row.querySelector("button").addEventListener("click", () => this.index(r.name, row));
    return row;
  }

  async index(name, row) {
    const label = row.querySelector(".job");
    try {
      const job = await api("/index", { method: "POST", body: { root: name } });
      this.poll(job.id, row);
    } catch (err) {
      label.textContent = err.message;
    }
  }

  poll(id, row) {
    const label = row.querySelector(".job");
    const bar = row.querySelector(".progress i");
    const tick = async () => {
      const job = await api(`/jobs/${id}`).catch((e) => ({ status: "failed", error: e.message }));
      bar.style.width = job.total ? `${(100 * job.done) / job.total}%` : "0";
      if (job.status === "queued" || job.status === "running") {
        label.textContent = `${job.status} ${job.done}/${job.total || "?"}`;
        setTimeout(tick, 700);
        return;
      }
      const s = job.summary;
      label.textContent = job.status === "done"
        ? `done: +${s.added} ~${s.updated} −${s.removed}, ${s.skipped} skipped`
        : `${job.status}: ${job.error || ""}`;
      this.onIndexed();
    };
    tick();
  }
}
