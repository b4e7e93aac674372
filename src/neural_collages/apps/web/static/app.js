// The page's behaviour: tabs, forms posted as multipart, results (data URLs) shown and offered for download.
"use strict";

const $ = (id) => document.getElementById(id);
let settings = null;

function option(value, label, selected) {
  const o = document.createElement("option");
  o.value = String(value);
  o.textContent = label ?? String(value);
  o.selected = Boolean(selected);
  return o;
}

function fill(select, values, chosen, suffix = "") {
  select.replaceChildren(...values.map((v) => option(v, `${v}${suffix}`, v === chosen)));
}

function fillQualities() {
  const codec = $("codec-codec").value;
  const levels = settings ? settings.qualities[codec] : [1, 2, 3, 4, 5, 6, 7, 8];
  const middle = levels[Math.floor(levels.length / 2)];
  fill($("codec-quality"), levels, middle);
}

function megabytes(n) { return `${(n / 2 ** 20).toFixed(0)} MB`; }
function bytes(n) { return n < 10240 ? `${n.toLocaleString()} bytes` : `${(n / 1024).toFixed(1)} KiB`; }
function db(v) { return v === null || v === undefined ? "\u221e dB" : `${v.toFixed(2)} dB`; }
function secs(v) { return `${v.toFixed(2)} s`; }
function stem(name) {
  const base = (name || "image").replace(/^the bundled sample$/, "sample").replace(/\.[^.]*$/, "");
  return base.replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 60) || "image";
}

async function loadSettings() {
  try {
    const response = await fetch("/api/settings");
    settings = await response.json();
  } catch (err) {
    settings = null;
  }
  fill($("art-zoom"), settings ? settings.zooms : [1, 2, 3, 4, 5, 6, 7, 8], 4, "\u00d7");
  fill($("codec-scale"), settings ? settings.zooms : [1, 2, 3, 4, 5, 6, 7, 8], 4, "\u00d7");
  fillQualities();
  fill($("ifs-maps"), settings ? settings.ifs_maps : [2, 3, 4, 5, 6, 7, 8], 4);
  fill($("vae-count"), settings ? settings.vae_counts : [4, 9, 16], 16);
  fill($("vae-scale"), settings ? settings.vae_scales : [1, 2, 4, 10, 20, 40], 10, "\u00d7");
  fill($("vae-temperature"), settings ? settings.vae_temperatures : ["0.5", "0.7", "0.85", "1.0"], "1.0");
  if (settings) {
    document.querySelectorAll(".ifs-max-points").forEach((e) => { e.textContent = settings.ifs_max_points.toLocaleString(); });
    document.querySelectorAll(".art-max-side").forEach((e) => { e.textContent = settings.art_max_side; });
    document.querySelectorAll(".codec-max-side").forEach((e) => { e.textContent = settings.codec_max_side; });
    $("art-steps").value = settings.default_steps;
    $("limits").textContent = `Limits: ${settings.formats.join(", ")} images, at most ${megabytes(settings.max_upload_bytes)} and `
      + `${settings.max_upload_pixels / 1e6} megapixels, no transparency; the IFS tab also reads .npy, .xyz, .txt and .ply `
      + "point files. One job runs at a time; others wait their turn.";
  }
}

function selectTab(name) {
  for (const tab of ["art", "codec", "ifs", "vae"]) {
    const on = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(on));
    $(`panel-${tab}`).hidden = !on;
  }
}

function showError(prefix, message) {
  const box = $(`${prefix}-error`);
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(prefix, busy) {
  for (const id of ["run", "sample"]) if ($(`${prefix}-${id}`)) $(`${prefix}-${id}`).disabled = busy;
  const status = $(`${prefix}-status`);
  clearInterval(status._timer);
  if (busy) {
    const start = performance.now();
    const tick = () => { status.textContent = `working\u2026 ${((performance.now() - start) / 1000).toFixed(0)} s`; };
    tick();
    status._timer = setInterval(tick, 500);
    status.classList.add("busy");
  } else {
    status.textContent = "";
    status.classList.remove("busy");
  }
}

async function run(prefix, url, useSample, render) {
  showError(prefix, "");
  const form = $(`${prefix}-form`);
  const data = new FormData(form);
  const file = $(`${prefix}-file`) ? $(`${prefix}-file`).files[0] : null;
  if (prefix === "vae") {
    // settings only: no file
  } else if (useSample) {
    data.delete("image");
    data.set("sample", "1");
  } else if (!file) {
    showError(prefix, prefix === "ifs" ? "Choose a drawing or a point file first, or use the fern cloud."
      : "Choose an image file first, or use the bundled sample.");
    return;
  } else if (settings && file.size > settings.max_upload_bytes) {
    showError(prefix, `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the limit is ${megabytes(settings.max_upload_bytes)}.`);
    return;
  }
  setBusy(prefix, true);
  try {
    const response = await fetch(url, { method: "POST", body: data });
    const body = await response.json().catch(() => null);
    if (!response.ok || !body) {
      showError(prefix, (body && body.error) || `The server answered ${response.status} ${response.statusText}.`);
      return;
    }
    render(body);
  } catch (err) {
    showError(prefix, `The server could not be reached (${err.message}).`);
  } finally {
    setBusy(prefix, false);
  }
}

function show(id, src) {
  const img = $(id);
  img.onload = () => { img.classList.toggle("small", img.naturalWidth < 256); };
  img.src = src;
}

function notes(id, list) {
  $(id).replaceChildren(...list.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
}

function metrics(id, pairs) {
  $(id).replaceChildren(...pairs.flatMap(([term, value]) => {
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }));
}

function downloads(id, links) {
  $(id).replaceChildren(...links.map(([label, href, filename]) => {
    const a = document.createElement("a");
    a.href = href; a.download = filename; a.textContent = label; a.className = "button";
    return a;
  }));
}

function renderArt(r) {
  const base = stem(r.name);
  const W = r.width * r.zoom, H = r.height * r.zoom;
  notes("art-notes", [`${r.name}: ${r.width}\u00d7${r.height}`, ...r.notes]);
  metrics("art-metrics", [
    ["fit time", `${secs(r.fit_seconds)} (${r.steps} fine-tuning steps)`],
    ["render time", `${secs(r.render_seconds)} at ${r.zoom}\u00d7`],
    ["fixed point PSNR", `${db(r.psnr_closed_form)} closed form \u2192 ${db(r.psnr)}`],
    ["collage loss", `${r.collage_loss_closed_form.toFixed(5)} closed form \u2192 ${r.collage_loss.toFixed(5)}`],
    ["code", bytes(r.code_bytes)],
  ]);
  show("art-original", r.original);
  $("art-original-cap").textContent = `original, ${r.width}\u00d7${r.height}`;
  show("art-animation", r.animation);
  show("art-output", r.result);
  $("art-output-cap").textContent = `fractalized, rendered at ${r.zoom}\u00d7: ${W}\u00d7${H}`;
  downloads("art-downloads", [
    [`PNG (${W}\u00d7${H})`, r.result, `${base}-fractal-x${r.zoom}.png`],
    ["GIF (decode from noise)", r.animation, `${base}-decode.gif`],
    [`code (.clg, ${bytes(r.code_bytes)})`, r.code, `${base}-fractal.clg`],
  ]);
  $("art-result").hidden = false;
}

function renderCodec(r) {
  const base = stem(r.name);
  notes("codec-notes", [`${r.name}: ${r.width}\u00d7${r.height}`, ...r.notes,
    `encoded in ${secs(r.encode_seconds)}, decoded in ${secs(r.decode_seconds)}`]);
  const rows = [[`${r.codec} (.clg)`, r.bytes, r.bpp, r.psnr, `quality ${r.quality}`]];
  if (r.jpeg) rows.push(["JPEG (Pillow)", r.jpeg.bytes, r.jpeg.bpp, r.jpeg.psnr, `quality ${r.jpeg.quality}, optimize`]);
  $("codec-table").replaceChildren(...rows.map(([name, size, bpp, psnr, setting]) => {
    const tr = document.createElement("tr");
    for (const text of [name, bytes(size), bpp.toFixed(3), db(psnr), setting]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    return tr;
  }));
  if (!r.jpeg) {
    const tr = document.createElement("tr");
    const td = document.createElement("td"); td.colSpan = 5;
    td.textContent = "JPEG cannot make a file this small at any quality.";
    tr.append(td); $("codec-table").append(tr);
  }
  show("codec-original", r.original);
  show("codec-decoded", r.decoded);
  $("codec-decoded-cap").textContent = `${r.codec}, quality ${r.quality}: ${bytes(r.bytes)}, ${db(r.psnr)}`;
  $("codec-jpeg").closest("figure").hidden = !r.jpeg;
  if (r.jpeg) {
    show("codec-jpeg", r.jpeg.image);
    $("codec-jpeg-cap").textContent = `JPEG, quality ${r.jpeg.quality}: ${bytes(r.jpeg.bytes)}, ${db(r.jpeg.psnr)}`;
  }
  show("codec-zoomed", r.zoomed);
  $("codec-zoomed-cap").textContent = `decoded at ${r.scale}\u00d7: ${r.width * r.scale}\u00d7${r.height * r.scale}`;
  const links = [
    [`code (.clg, ${bytes(r.bytes)})`, r.code, `${base}-${r.codec}-q${r.quality}.clg`],
    ["decoded PNG", r.decoded, `${base}-${r.codec}-q${r.quality}.png`],
    [`${r.scale}\u00d7 decode PNG`, r.zoomed, `${base}-${r.codec}-q${r.quality}-x${r.scale}.png`],
  ];
  if (r.jpeg) links.push(["JPEG", r.jpeg.image, `${base}-jpeg-q${r.jpeg.quality}.jpg`]);
  downloads("codec-downloads", links);
  $("codec-result").hidden = false;
}

function renderIfs(r) {
  const base = stem(r.name);
  notes("ifs-notes", [`${r.name}: ${r.points.toLocaleString()} ${r.dim}-D points`, ...r.notes]);
  metrics("ifs-metrics", [
    ["method", r.method === "encoder" ? "encoder + 200 refinement steps" : "fit from random restarts"],
    ["time", secs(r.seconds)],
    ["attractor Chamfer", `${r.attractor_chamfer.toPrecision(3)} (cloud units)`],
    ["contraction bound", r.contraction_bound.toFixed(3)],
  ]);
  show("ifs-cloud", r.cloud);
  show("ifs-attractor", r.attractor);
  $("ifs-attractor-cap").textContent = `attractor of ${r.maps} fitted maps`;
  downloads("ifs-downloads", [
    ["ifs.json", r.ifs, `${base}-ifs.json`],
    ["attractor PNG", r.attractor, `${base}-attractor.png`],
  ]);
  $("ifs-result").hidden = false;
}

function renderVae(r) {
  metrics("vae-metrics", [
    ["digits", `${r.count} at ${r.side}\u00d7${r.side} px (${r.scale}\u00d7)`],
    ["temperature", String(r.temperature)],
    ["seed", String(r.seed)],
    ["time", secs(r.seconds)],
  ]);
  show("vae-small", r.small);
  show("vae-samples", r.samples);
  $("vae-samples-cap").textContent = `the same latents decoded at ${r.scale}\u00d7`;
  downloads("vae-downloads", [
    [`PNG (${r.scale}\u00d7)`, r.samples, `digits-seed${r.seed}-x${r.scale}.png`],
    ["PNG (1\u00d7)", r.small, `digits-seed${r.seed}-x1.png`],
  ]);
  $("vae-result").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-vae").addEventListener("click", () => selectTab("vae"));
  $("vae-form").addEventListener("submit", (e) => { e.preventDefault(); run("vae", "/api/vae", false, renderVae); });
  $("tab-ifs").addEventListener("click", () => selectTab("ifs"));
  $("ifs-form").addEventListener("submit", (e) => { e.preventDefault(); run("ifs", "/api/ifs", false, renderIfs); });
  $("ifs-sample").addEventListener("click", () => run("ifs", "/api/ifs", true, renderIfs));
  $("tab-art").addEventListener("click", () => selectTab("art"));
  $("tab-codec").addEventListener("click", () => selectTab("codec"));
  $("codec-codec").addEventListener("change", fillQualities);
  $("art-form").addEventListener("submit", (e) => { e.preventDefault(); run("art", "/api/fractalize", false, renderArt); });
  $("art-sample").addEventListener("click", () => run("art", "/api/fractalize", true, renderArt));
  $("codec-form").addEventListener("submit", (e) => { e.preventDefault(); run("codec", "/api/codec", false, renderCodec); });
  $("codec-sample").addEventListener("click", () => run("codec", "/api/codec", true, renderCodec));
  loadSettings();
});
