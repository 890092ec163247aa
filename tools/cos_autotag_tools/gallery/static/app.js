// The gallery page: every text node is set with textContent, never parsed as HTML
// (keys and labels are user data). The server evaluates the query (find's language) and pages
// the answer; the filter lives in the URL (?q=...&label=...), so a view can be bookmarked.
"use strict";

const PAGE = 100;
const POLL_MS = 5000;
const state = { query: "", label: null, shown: 0, generation: -1, pending: 0, timer: null };
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function busy(delta) {
  state.pending += delta;
  document.body.dataset.pending = String(state.pending);
}

function quoted(name) {
  return '="' + name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

function effectiveQuery() {
  const text = state.query.trim();
  if (state.label === null) return text;
  return text ? "(" + text + ") AND " + quoted(state.label) : quoted(state.label);
}

function labelButton(name, number, title) {
  const button = element("button", "label");
  button.type = "button";
  button.dataset.label = name;
  button.title = title;
  button.append(name, " ", element("span", "n", String(number)));
  button.addEventListener("click", () => toggleLabel(name));
  return button;
}

function card(photo) {
  const figure = element("figure", "photo");
  figure.dataset.key = photo.key;
  const img = element("img");
  img.loading = "lazy";
  img.alt = photo.key;
  img.src = "/thumb?key=" + encodeURIComponent(photo.key);
  const caption = element("figcaption");
  caption.append(element("div", "key", photo.key));
  if (photo.labels.length === 0) caption.append(element("span", "none", "no labels · 无标签"));
  for (const [name, confidence] of photo.labels) {
    caption.append(labelButton(name, confidence, "confidence " + confidence));
  }
  figure.append(img, caption);
  return figure;
}

function cloud(labels) {
  const nav = $("cloud");
  nav.replaceChildren();
  const most = labels.length ? labels[0][1] : 1;
  for (const [name, count] of labels) {
    const button = labelButton(name, count, count + " photos");
    button.style.fontSize = (0.85 + 0.6 * (count / most)).toFixed(2) + "em";
    nav.append(button);
  }
}

function toggleLabel(name) {
  state.label = state.label === name ? null : name;
  load();
}

function keepInUrl() {
  const params = new URLSearchParams();
  if (state.query.trim()) params.set("q", state.query);
  if (state.label !== null) params.set("label", state.label);
  const search = params.toString();
  history.replaceState(null, "", search ? "?" + search : location.pathname);
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

async function fetchPage(offset) {
  const params = new URLSearchParams({ q: effectiveQuery(), offset: String(offset), limit: String(PAGE) });
  const response = await fetch("/api/photos?" + params.toString());
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || "GET /api/photos: " + response.status);
  return data;
}

function render(data, append) {
  $("where").textContent = data.bucket + "/" + data.prefix;
  document.title = "cos-autotag · " + data.bucket + "/" + data.prefix;
  if (data.generation !== state.generation) {
    state.generation = data.generation;
    cloud(data.labels);
  }
  const cards = document.createDocumentFragment();
  for (const photo of data.photos) cards.append(card(photo));
  if (append) $("grid").append(cards);
  else $("grid").replaceChildren(cards);
  state.shown = (append ? state.shown : 0) + data.photos.length;
  // From a dataset (`gallery --dataset`) the total is known only at the answer's end: `more` says.
  const more = data.more === undefined ? state.shown < data.total : data.more;
  $("more").hidden = !more;
  for (const button of document.querySelectorAll("button.label")) {
    button.classList.toggle("active", button.dataset.label === state.label);
  }
  const status = $("status");
  const total = data.more ? state.shown + "+" : String(data.total);
  status.replaceChildren(total + " of " + data.shown + (data.more === undefined ? " photos" : " files"));
  if (state.label !== null) {
    status.append(" · label: " + state.label);
    const clear = element("button", "clear", "show all");
    clear.type = "button";
    clear.addEventListener("click", () => toggleLabel(state.label));
    status.append(clear);
  }
  $("asof").textContent = "labels as of " + clock(data.labels_as_of);
  $("error").textContent = "";
}

async function load(append = false) {
  keepInUrl();
  busy(1);
  try {
    render(await fetchPage(append ? state.shown : 0), append);
  } catch (error) {
    $("error").textContent = error.message;
  } finally {
    busy(-1);
  }
}

async function poll() {
  try {
    const response = await fetch("/api/status");
    const status = await response.json();
    if (status.generation !== state.generation && state.pending === 0) await load();
  } catch (error) {
    // the server is gone or busy: try again at the next round
  }
}

async function refresh() {
  const button = $("refresh");
  button.disabled = true;
  busy(1);
  try {
    const response = await fetch("/api/refresh", { method: "POST", headers: { "X-Gallery": "1" } });
    if (!response.ok) throw new Error("refresh: " + response.status);
    await load();
  } catch (error) {
    $("error").textContent = error.message;
  } finally {
    button.disabled = false;
    busy(-1);
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  state.query = params.get("q") || "";
  state.label = params.get("label");
  $("search").value = state.query;
  $("search").addEventListener("input", (event) => {
    state.query = event.target.value;
    if (state.timer !== null) clearTimeout(state.timer);
    else busy(1);
    state.timer = setTimeout(() => {
      state.timer = null;
      busy(-1);
      load();
    }, 150);
  });
  $("more").addEventListener("click", () => load(true));
  $("refresh").addEventListener("click", refresh);
  await load();
  setInterval(poll, POLL_MS);
  document.body.dataset.ready = "true";
}

busy(0);
main().catch((error) => {
  $("status").textContent = "Could not load the gallery: " + error.message;
});
