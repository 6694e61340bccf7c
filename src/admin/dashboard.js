// portcullis ops dashboard. Polls the admin API and redraws in place.
// Every string from the API is attacker-influenced (principal names, identities): nodes are
// built with createElement + textContent only; data is never parsed as HTML.
"use strict";

const POLL_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function days(d) { // "YYYY-MM-DD" -> days since epoch
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(d || ""));
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3]) / DAY_MS : null;
}

function pct(x) { return typeof x === "number" ? (x * 100).toFixed(2) + "%" : "–"; }
function str(x) { return x === undefined || x === null ? "–" : String(x); }
function shortTime(ts) { return ts ? String(ts).replace("T", " ").replace("Z", " UTC") : "–"; }

function badge(status) {
  const s = String(status || "unknown");
  return el("span", "badge " + s.replace(/[^a-z-]/g, ""), s.replace(/-/g, " "));
}

// Phase timeline: observe → bridge → enforce, with today marked.
function timeline(plan, today) {
  const ph = plan.phases || {};
  const o = days(ph.observe), b = days(ph.bridge), e = days(ph.enforce), t = days(today);
  const W = 600, H = 72, L = 10, R = 10, Y = 18, BH = 14;
  const known = [o, b, e, t].filter((x) => x !== null);
  const end = e !== null ? e : (b !== null ? b : o);
  let lo = Math.min(...known), hi = Math.max(...known, end + 14);
  if (hi - lo < 30) hi = lo + 30;
  const pad = (hi - lo) * 0.04;
  lo -= pad; hi += pad;
  const x = (d) => L + ((d - lo) / (hi - lo)) * (W - L - R);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Phase timeline of ${plan.name}` });
  root.appendChild(svg("rect", { x: L, y: Y, width: W - L - R, height: BH, class: "bar-empty", rx: 3 }));
  const segs = [["observe", o, b !== null ? b : (e !== null ? e : hi)]];
  if (b !== null) segs.push(["bridge", b, e !== null ? e : hi]);
  if (e !== null) segs.push(["enforce", e, hi]);
  let lastEnd = -Infinity, row = 0;
  for (const [name, from, to] of segs) {
    if (from === null) continue;
    root.appendChild(svg("rect", { x: x(from), y: Y, width: Math.max(0, x(to) - x(from)), height: BH,
      class: "seg-" + name }));
    // Labels are ~120 units wide: keep them inside the chart and drop a line when they would collide.
    const label = `${name} ${dateOf(from)}`;
    const lx = Math.min(x(from) + 3, W - R - 120);
    row = lx < lastEnd + 6 ? row + 1 : 0;
    lastEnd = lx + 120;
    root.appendChild(svg("text", { x: lx, y: Y + BH + 13 + row * 13 }, label));
  }
  if (t !== null) {
    root.appendChild(svg("line", { x1: x(t), x2: x(t), y1: 4, y2: Y + BH + 2, class: "today" }));
    const anchor = x(t) > W - 60 ? "end" : (x(t) < 60 ? "start" : "middle");
    root.appendChild(svg("text", { x: x(t), y: 12, "text-anchor": anchor, class: "today-label" }, "today"));
  }
  return root;
}

function dateOf(d) { return new Date(d * DAY_MS).toISOString().slice(0, 10); }

// Legacy share per day over the plan's window, with the exit criterion as a dashed line.
function shareChart(plan) {
  const w = plan.window || {};
  const daily = Array.isArray(w.daily) ? w.daily : [];
  const W = 600, H = 130, L = 40, R = 8, T = 8, B = 22;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Legacy share per day for ${plan.name}` });
  const maxShare = typeof w.max_legacy_share === "number" ? w.max_legacy_share : 0;
  const peak = Math.max(maxShare, ...daily.map((d) => (typeof d.legacy_share === "number" ? d.legacy_share : 0)));
  const top = peak > 0 ? Math.min(1, Math.max(peak * 1.15, 0.05)) : 1;
  const y = (v) => T + (1 - v / top) * (H - T - B);
  root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }));
  root.appendChild(svg("text", { x: L - 4, y: y(top) + 8, "text-anchor": "end" }, pct(top).replace(".00", "")));
  root.appendChild(svg("text", { x: L - 4, y: y(0), "text-anchor": "end" }, "0%"));
  const n = Math.max(daily.length, 1);
  const slot = (W - L - R) / n;
  daily.forEach((d, i) => {
    const share = typeof d.legacy_share === "number" ? d.legacy_share : null;
    const bx = L + i * slot + slot * 0.15, bw = slot * 0.7;
    if (share === null) {
      root.appendChild(svg("rect", { x: bx, y: y(0) - 2, width: bw, height: 2, class: "bar-empty" }));
    } else {
      const r = svg("rect", { x: bx, y: y(share), width: bw, height: Math.max(1, y(0) - y(share)), class: "bar" });
      r.appendChild(svg("title", {}, `${d.day}: ${pct(share)} legacy (${d.legacy_requests} of ${d.total_requests})`));
      root.appendChild(r);
    }
  });
  if (daily.length) {
    root.appendChild(svg("text", { x: L, y: H - 6 }, str(daily[0].day)));
    root.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, str(daily[daily.length - 1].day)));
  }
  if (maxShare > 0) {
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(maxShare), y2: y(maxShare), class: "limit" }));
    root.appendChild(svg("text", { x: W - R, y: y(maxShare) - 3, "text-anchor": "end" }, `exit ≤ ${pct(maxShare)}`));
  }
  return root;
}

function fact(value, label) {
  const f = el("div", "fact");
  f.appendChild(el("b", null, value));
  f.appendChild(el("span", null, label));
  return f;
}

function planCard(p, today) {
  const card = el("article", "card");
  card.dataset.plan = String(p.name || "");
  const head = el("div", "card-head");
  head.appendChild(el("h3", null, p.name));
  head.appendChild(badge(p.status));
  card.appendChild(head);
  const meta = el("p", "meta");
  meta.appendChild(document.createTextNode("phase "));
  meta.appendChild(el("span", "phase " + String(p.phase || "").replace(/[^a-z]/g, ""), p.phase));
  if (p.phase_since) meta.appendChild(document.createTextNode(` since ${p.phase_since}`));
  if (p.next_phase) meta.appendChild(document.createTextNode(` · next ${p.next_phase} on ${p.next_date}`));
  if (p.owner) meta.appendChild(document.createTextNode(` · ${p.owner}`));
  card.appendChild(meta);
  if (p.description) card.appendChild(el("p", "meta", p.description));

  const facts = el("div", "facts");
  const sunset = typeof p.days_to_sunset === "number"
    ? (p.days_to_sunset >= 0 ? `${p.days_to_sunset} d` : `${-p.days_to_sunset} d ago`) : "none";
  facts.appendChild(fact(sunset, "to sunset"));
  const w = p.window || {};
  facts.appendChild(fact(pct(w.legacy_share), `legacy share, ${str(w.days)} d (max ${pct(w.max_legacy_share)})`));
  facts.appendChild(fact(str(w.legacy_requests), `legacy of ${str(w.total_requests)} requests`));
  const active = Array.isArray(p.active_legacy_principals) ? p.active_legacy_principals : [];
  facts.appendChild(fact(String(active.length), "legacy principals active"));
  card.appendChild(facts);

  card.appendChild(el("h4", null, "Timeline"));
  card.appendChild(timeline(p, today));
  card.appendChild(el("h4", null, "Legacy share per day"));
  card.appendChild(shareChart(p));

  if (p.exception) {
    card.appendChild(el("p", "whatif",
      `Exception: ${p.exception.reason} — review by ${p.exception.review_by} (${p.exception.days_to_review} d)`));
  }
  const wi = p.what_if_enforced;
  if (wi && wi.refused_callers > 0) {
    card.appendChild(el("p", "whatif",
      `Enforcing today would refuse ${wi.refused_requests} request(s) from ${wi.refused_callers} caller(s).`));
  }

  card.appendChild(el("h4", null, "Still on static credentials"));
  if (!active.length) {
    card.appendChild(el("p", "muted", "none in the window"));
  } else {
    const t = el("table");
    const hr = el("tr");
    for (const h of ["Principal", "Identity", "Last seen", "Requests", "Sources"]) {
      hr.appendChild(el("th", h === "Requests" || h === "Sources" ? "num" : null, h));
    }
    t.appendChild(el("thead")).appendChild(hr);
    const tb = el("tbody");
    for (const a of active) {
      const tr = el("tr", a.revoked ? "revoked" : null);
      const who = a.principal ? `${a.credential}:${a.principal}` : a.credential;
      const c = el("td");
      if (a.revoked) c.appendChild(el("span", "tag revoked", "revoked"));
      if (a.shared_suspected) c.appendChild(el("span", "tag shared", "shared"));
      if (a.grace_until) c.appendChild(el("span", "tag grace", `grace until ${a.grace_until}`));
      c.appendChild(document.createTextNode(who));
      tr.appendChild(c);
      tr.appendChild(el("td", "mono", a.identity));
      tr.appendChild(el("td", null, shortTime(a.last_seen)));
      tr.appendChild(el("td", "num", a.count));
      tr.appendChild(el("td", "num", (a.sources_capped ? "≥" : "") + str(a.distinct_sources)));
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    card.appendChild(t);
    card.appendChild(el("p", "meta contact", `Contact: ${str(p.owner)}${p.docs ? " · " + p.docs : ""}`));
  }
  insight(card, p);
  if (Array.isArray(p.reasons) && p.reasons.length) {
    const ul = el("ul", "reasons");
    for (const r of p.reasons) ul.appendChild(el("li", null, r));
    card.appendChild(ul);
  }
  if (p.docs && /^https?:\/\//i.test(String(p.docs))) {
    const a = el("a", null, "migration docs");
    a.href = String(p.docs);
    a.rel = "noopener noreferrer";
    const para = el("p", "meta");
    para.appendChild(a);
    card.appendChild(para);
  }
  return card;
}

// Shared credentials ("split before enforce", with their sources) and graces of one plan.
function insight(card, p) {
  const shared = Array.isArray(p.shared_credentials) ? p.shared_credentials : [];
  for (const s of shared) {
    const box = el("div", "split");
    box.dataset.principal = String(s.principal || "");
    box.appendChild(el("p", "whatif",
      `Split before enforce: ${s.principal} is used from ${s.sources_capped ? "at least " : ""}${s.distinct_sources} sources`));
    const ul = el("ul", "sources");
    for (const src of Array.isArray(s.sources) ? s.sources : []) {
      ul.appendChild(el("li", null,
        `${str(src.ip)} · ${src.user_agent ? src.user_agent : "(no User-Agent)"} · ${str(src.requests)} request(s)`));
    }
    box.appendChild(ul);
    card.appendChild(box);
  }
  const graces = Array.isArray(p.graces) ? p.graces : [];
  if (graces.length) {
    card.appendChild(el("h4", null, "Graces"));
    const ul = el("ul", "graces");
    for (const g of graces) {
      const li = el("li", g.expired ? "expired" : null);
      li.dataset.principal = String(g.principal || "");
      li.textContent = `${g.principal} until ${g.until}: ${g.reason}` +
        (g.expired ? " (expired: refused)" : ` (${g.days_left} d left)`) +
        (g.seen ? "" : " · not seen in the window");
      ul.appendChild(li);
    }
    card.appendChild(ul);
  }
}

function renderPlans(m) {
  const plans = Array.isArray(m.plans) ? m.plans : [];
  const box = document.getElementById("plans");
  box.replaceChildren(...(plans.length ? plans.map((p) => planCard(p, m.today)) : [el("p", "muted", "No migration plans configured.")]));
  const un = Array.isArray(m.unplanned_routes) ? m.unplanned_routes : [];
  document.getElementById("unplanned").textContent = un.length
    ? `Routes without a plan (bridge, standing exception): ${un.map((r) => r.route).join(", ")}`
    : "";
}

let inventory = [];

function renderInventory() {
  const q = document.getElementById("search").value.trim().toLowerCase();
  const rows = inventory.filter((e) => !q || [e.kind, e.credential, e.principal, e.identity, ...(e.routes || [])]
    .some((v) => v && String(v).toLowerCase().includes(q)));
  const tb = document.querySelector("#inventory tbody");
  tb.replaceChildren(...rows.map((e) => {
    const tr = el("tr", e.revoked ? "revoked" : null);
    tr.appendChild(el("td", null, e.kind));
    tr.appendChild(el("td", null, e.credential));
    tr.appendChild(el("td", null, e.principal === null || e.principal === undefined ? "–" : e.principal));
    tr.appendChild(el("td", "mono", e.identity));
    tr.appendChild(el("td", null, (e.routes || []).join(", ")));
    tr.appendChild(el("td", null, shortTime(e.first_seen)));
    tr.appendChild(el("td", null, shortTime(e.last_seen)));
    tr.appendChild(el("td", "num", e.count));
    tr.appendChild(el("td", "num", (e.sources_capped ? "≥" : "") + str(e.distinct_sources)));
    tr.appendChild(el("td", null, (Array.isArray(e.plans) ? e.plans : [])
      .map((c) => `${c.owner} (${c.plan})`).join("; ") || "–"));
    const notes = el("td");
    if (e.revoked) notes.appendChild(el("span", "tag revoked", "revoked"));
    if (e.shared_suspected) notes.appendChild(el("span", "tag shared", "shared: split before enforce"));
    if (e.cert_expiring) notes.appendChild(el("span", "tag expiring", `cert expires ${shortTime(e.cert_not_after)}`));
    tr.appendChild(notes);
    return tr;
  }));
  document.getElementById("inv-count").textContent =
    q ? `${rows.length} of ${inventory.length}` : `${inventory.length} ${inventory.length === 1 ? "entry" : "entries"}`;
}

async function fetchJson(path) {
  const r = await fetch(path, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function poll() {
  const status = document.getElementById("updated");
  try {
    const [m, inv] = await Promise.all([fetchJson("/admin/v1/migration"), fetchJson("/admin/v1/inventory")]);
    renderPlans(m);
    inventory = Array.isArray(inv.entries) ? inv.entries : [];
    renderInventory();
    status.className = "muted";
    status.textContent = `today ${m.today} · updated ${shortTime(m.generated_at)} · refreshes every ${POLL_MS / 1000} s`;
  } catch (err) {
    status.className = "error";
    status.textContent = `cannot reach the admin API (${err.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search").addEventListener("input", renderInventory);
  poll();
});
