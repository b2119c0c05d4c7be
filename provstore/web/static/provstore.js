// provstore serve: draws the lineage graph (laid out by the vendored dagre) and filters
// distribution tables as you type. The pages read fine without it; no inline script anywhere.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    return node;
  }

  function nodeText(node) {
    const label = node.label === null || node.label === undefined ? "(unknown)" : node.label;
    // long paths keep their end (the file name), long names their start
    const shown = label.length <= 40 ? label
      : label.includes("/") ? "…" + label.slice(-39) : label.slice(0, 39) + "…";
    return node.group ? `${node.count} × ${shown}` : shown;
  }

  // A product opens its page; a group redraws this lineage with its level unfolded, or,
  // when that would exceed the largest budget, lists the products of its name.
  function nodeHref(node) {
    if (!node.group) return "/products/" + node.id;
    if (node.unfold) {
      const here = new URL(window.location.href);
      here.searchParams.set("budget", String(node.unfold));
      return here.pathname + here.search;
    }
    return node.search ? "/products?name=" + encodeURIComponent(node.search) : null;
  }

  function draw(box, data) {
    const g = new dagre.graphlib.Graph({ multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 60, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const node of data.nodes) {
      const text = nodeText(node);
      g.setNode(node.id, { width: Math.max(80, 7.2 * text.length + 20), height: 28, text: text, node: node });
    }
    for (const edge of data.edges) g.setEdge(edge.parent, edge.child);
    dagre.layout(g);
    const size = g.graph();
    const svg = el("svg", { width: size.width, height: size.height, role: "img",
                            "aria-label": "lineage graph" });
    const defs = el("defs");
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
                                  markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const e of g.edges()) {
      const points = g.edge(e).points;
      const d = points.map((p, i) => (i ? "L" : "M") + p.x.toFixed(1) + "," + p.y.toFixed(1)).join(" ");
      svg.appendChild(el("path", { d: d, class: "edge", "marker-end": "url(#arrow)",
                                   "data-parent": e.v, "data-child": e.w }));
    }
    for (const id of g.nodes()) {
      const n = g.node(id);
      const classes = ["node"];
      if (n.node.group) classes.push("group");
      if (id === data.root) classes.push("root");
      const link = el("a", { href: nodeHref(n.node), class: classes.join(" "), "data-id": id });
      link.appendChild(el("rect", { x: n.x - n.width / 2, y: n.y - n.height / 2,
                                    width: n.width, height: n.height, rx: 5 }));
      const text = el("text", { x: n.x, y: n.y + 4, "text-anchor": "middle" });
      text.textContent = n.text;  // text, never markup
      const title = el("title");
      title.textContent = (n.node.label || "(unknown)") + (n.node.group ? "" : "\n" + id);
      link.appendChild(title);
      link.appendChild(text);
      svg.appendChild(link);
    }
    box.replaceChildren(svg);
    box.dataset.ready = "true";
  }

  function loadGraph() {
    const box = document.getElementById("graph");
    if (!box || typeof dagre === "undefined") return;
    box.textContent = "laying out…";
    fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then((data) => draw(box, data))
      .catch((err) => { box.textContent = "could not draw the graph: " + err.message; });
  }

  function filterTable() {
    const input = document.getElementById("dist-filter");
    const table = document.getElementById("distributions");
    if (!input || !table) return;
    input.addEventListener("input", () => {
      const wanted = input.value.trim().toLowerCase();
      for (const row of table.tBodies[0].rows) {
        row.hidden = wanted !== "" && !row.dataset.name.includes(wanted);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => { loadGraph(); filterTable(); });
})();
