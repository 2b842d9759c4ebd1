// inspector dashboard: keyboard shortcuts, the attention opacity slider and the live queue.
(() => {
  "use strict";
  const typing = (e) => e.target.closest("input:not([type=range]):not([type=checkbox]), textarea, select") || e.altKey || e.ctrlKey || e.metaKey;
  let busy = false; // one label per key press: the page is about to move on

  // Frame view: the attention layer's opacity follows the slider.
  const slider = document.getElementById("opacity");
  const layer = document.getElementById("attention-layer");
  if (slider && layer) {
    const shown = document.getElementById("opacity-value");
    const apply = () => { layer.style.opacity = slider.value / 100; shown.textContent = `${slider.value}%`; };
    slider.addEventListener("input", apply);
    apply();
  }

  // Queue: rows open on click; j / k move the selection, Enter opens it.
  const table = document.getElementById("queue");
  const rows = () => [...document.querySelectorAll("#queue-rows tr[data-id]")];
  let selected = null;
  const select = (row) => {
    rows().forEach((r) => r.classList.toggle("selected", r === row));
    selected = row ? row.dataset.id : null;
    if (row) row.scrollIntoView({ block: "nearest" });
  };
  if (table) {
    table.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-href]");
      if (row && !e.target.closest("a")) location.href = row.dataset.href;
    });
  }

  document.addEventListener("keydown", (e) => {
    if (typing(e) || busy) return;
    if (table && ["j", "k", "Enter", "o"].includes(e.key)) {
      const all = rows();
      const at = all.findIndex((r) => r.dataset.id === selected);
      if (e.key === "Enter" || e.key === "o") { if (at >= 0) location.href = all[at].dataset.href; return; }
      const next = e.key === "j" ? Math.min(at + 1, all.length - 1) : Math.max(at - 1, 0);
      if (all.length) select(all[next]);
      e.preventDefault();
      return;
    }
    const target = document.querySelector(`[data-key="${e.key}"]`);
    if (!target) return;
    e.preventDefault();
    if (target.tagName === "BUTTON") {
      busy = true;
      target.form.requestSubmit(target);
    } else {
      target.click();
    }
  });

  // Live queue: poll the table body with the same filters and swap it in when it changed.
  if (table) {
    const body = document.getElementById("queue-rows");
    const count = document.getElementById("queue-count");
    let last = null;
    let known = new Set(rows().map((r) => r.dataset.id));
    const poll = async () => {
      try {
        const response = await fetch(table.dataset.rowsUrl, { cache: "no-store" });
        if (response.ok) {
          const html = await response.text();
          if (html !== last) {
            body.innerHTML = html;
            rows().forEach((r) => { if (!known.has(r.dataset.id)) r.classList.add("new"); });
            known = new Set(rows().map((r) => r.dataset.id));
            select(rows().find((r) => r.dataset.id === selected) || null);
          }
          last = html;
          count.textContent = response.headers.get("X-Queue-Count") ?? count.textContent;
          count.classList.toggle("empty", count.textContent === "0");
        }
      } catch (err) {
        // The server restarting is no reason to stop polling.
      }
      setTimeout(poll, Number(table.dataset.pollMs) || 5000);
    };
    poll();
  }
})();
