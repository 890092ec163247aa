// The gallery page: every text node is set with textContent, never parsed as HTML
// (keys and labels are user data).
"use strict";

const state = { photos: [], label: null, query: "" };
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fold(text) {
  return text.normalize("NFKC").toLowerCase();
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
  photo.node = figure;
  photo.text = fold([photo.key, ...photo.labels.map(([name]) => name)].join("\n"));
  return figure;
}

function cloud(labels) {
  const nav = $("cloud");
  const most = labels.length ? labels[0][1] : 1;
  for (const [name, count] of labels) {
    const button = labelButton(name, count, count + " photos");
    button.style.fontSize = (0.85 + 0.6 * (count / most)).toFixed(2) + "em";
    nav.append(button);
  }
}

function toggleLabel(name) {
  state.label = state.label === name ? null : name;
  apply();
}

function apply() {
  const query = fold(state.query.trim());
  let shown = 0;
  for (const photo of state.photos) {
    const hasLabel = state.label === null || photo.labels.some(([name]) => name === state.label);
    const visible = hasLabel && (query === "" || photo.text.includes(query));
    photo.node.hidden = !visible;
    if (visible) shown += 1;
  }
  for (const button of document.querySelectorAll("button.label")) {
    button.classList.toggle("active", button.dataset.label === state.label);
  }
  const status = $("status");
  status.replaceChildren(shown + " of " + state.photos.length + " photos");
  if (state.label !== null) {
    status.append(" · label: " + state.label);
    const clear = element("button", "clear", "show all");
    clear.type = "button";
    clear.addEventListener("click", () => toggleLabel(state.label));
    status.append(clear);
  }
}

async function main() {
  const response = await fetch("/api/photos");
  if (!response.ok) throw new Error("GET /api/photos: " + response.status);
  const data = await response.json();
  $("where").textContent = data.bucket + "/" + data.prefix;
  document.title = "cos-autotag · " + data.bucket + "/" + data.prefix;
  state.photos = data.photos;
  const cards = document.createDocumentFragment();
  for (const photo of state.photos) cards.append(card(photo));
  $("grid").append(cards);
  cloud(data.labels);
  $("search").addEventListener("input", (event) => {
    state.query = event.target.value;
    apply();
  });
  apply();
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  $("status").textContent = "Could not load the gallery: " + error.message;
});
