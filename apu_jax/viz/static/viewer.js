// apu viewer: browse fitted pairs in 3D with a small hand-written WebGL2 renderer (no dependencies).
// Geometry comes from the local server's JSON API (see apu_jax/viz/server.py). Coordinates are the fit's
// camera frame (OpenCV: x right, y down, z forward, metres); the view matrix maps them to GL's y-up, z-back.
"use strict";

const PERSON_COLOURS = [[0.93, 0.55, 0.32], [0.35, 0.58, 0.93]];
const CONTACT_COLOUR = [0.15, 0.85, 0.25];
const $ = (id) => document.getElementById(id);

const state = {
  pairs: [], losses: [], order: [], current: -1, faces: null,
  meshes: [null, null], joints: null, camera: null,
  orbit: { target: [0, 0, 3], yaw: 0, pitch: 0, distance: 3, pan: [0, 0] },
  requestId: 0,
};

// ---------- small matrix helpers (column-major 4x4, as WebGL expects) ----------
function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
}
function multiply(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) out[c * 4 + r] += a[k * 4 + r] * b[c * 4 + k];
  return out;
}
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const normalize = (a) => scale(a, 1 / Math.hypot(a[0], a[1], a[2]));

// Orbit camera in the OpenCV frame: yaw about the frame's vertical (y) axis, pitch about the camera's x axis.
// yaw = pitch = 0 looks along +z, as the fit camera does; "up" on screen is -y.
function cameraBasis(o) {
  const cy = Math.cos(o.yaw), sy = Math.sin(o.yaw), cp = Math.cos(o.pitch), sp = Math.sin(o.pitch);
  const forward = [sy * cp, sp, cy * cp];
  const right = normalize(cross(forward, [0, -1, 0]));
  const up = cross(right, forward);
  const target = add(o.target, add(scale(right, o.pan[0]), scale(up, o.pan[1])));
  const eye = sub(target, scale(forward, o.distance));
  return { forward, right, up, eye };
}
function viewMatrix(o) {
  const { forward: f, right: r, up: u, eye: e } = cameraBasis(o);
  return [r[0], u[0], -f[0], 0, r[1], u[1], -f[1], 0, r[2], u[2], -f[2], 0,
    -dot(r, e), -dot(u, e), dot(f, e), 1];
}

// ---------- WebGL ----------
const canvas = $("gl");
const gl = canvas.getContext("webgl2", { preserveDrawingBuffer: true, antialias: true });

const MESH_VS = `#version 300 es
in vec3 position; in float contact;
uniform mat4 view, proj; uniform vec3 base, contactColour; uniform float showContact;
out vec3 vColour; out vec3 vViewPos;
void main() {
  vec4 p = view * vec4(position, 1.0);
  vViewPos = p.xyz;
  vColour = mix(base, contactColour, clamp(contact * showContact, 0.0, 1.0));
  gl_Position = proj * p;
}`;
// Flat shading from screen-space derivatives; headlight Lambert, two-sided, as the CPU renderer does.
const MESH_FS = `#version 300 es
precision highp float;
in vec3 vColour; in vec3 vViewPos; out vec4 colour;
void main() {
  vec3 n = normalize(cross(dFdx(vViewPos), dFdy(vViewPos)));
  float shade = 0.35 + 0.65 * abs(dot(n, normalize(-vViewPos)));
  colour = vec4(vColour * shade, 1.0);
}`;
const POINT_VS = `#version 300 es
in vec3 position; uniform mat4 view, proj; uniform float size;
void main() { gl_Position = proj * view * vec4(position, 1.0); gl_PointSize = size; }`;
const POINT_FS = `#version 300 es
precision highp float; uniform vec3 base; out vec4 colour;
void main() { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; colour = vec4(base, 1.0); }`;

function program(vs, fs) {
  const compile = (type, src) => {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  };
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl.VERTEX_SHADER, vs));
  gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  return p;
}

let meshProgram = null, pointProgram = null, indexBuffer = null, indexCount = 0;
if (gl) {
  meshProgram = program(MESH_VS, MESH_FS);
  pointProgram = program(POINT_VS, POINT_FS);
}

function makeMesh(positions, contact) {
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const pos = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, pos);
  gl.bufferData(gl.ARRAY_BUFFER, positions, gl.STATIC_DRAW);
  let loc = gl.getAttribLocation(meshProgram, "position");
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
  const con = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, con);
  gl.bufferData(gl.ARRAY_BUFFER, contact, gl.STATIC_DRAW);
  loc = gl.getAttribLocation(meshProgram, "contact");
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 1, gl.FLOAT, false, 0, 0);
  gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, indexBuffer);
  gl.bindVertexArray(null);
  return { vao, buffers: [pos, con] };
}

function freeMesh(m) {
  if (!m) return;
  gl.deleteVertexArray(m.vao);
  m.buffers.forEach((b) => gl.deleteBuffer(b));
}

function setUniforms(p, view, proj) {
  gl.uniformMatrix4fv(gl.getUniformLocation(p, "view"), false, view);
  gl.uniformMatrix4fv(gl.getUniformLocation(p, "proj"), false, proj);
}

function draw() {
  if (!gl || !state.camera) return;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  gl.viewport(0, 0, canvas.width, canvas.height);
  gl.clearColor(0.92, 0.92, 0.92, 1);
  gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
  gl.enable(gl.DEPTH_TEST);
  const [imgW, imgH] = state.camera.image_size;
  const fovy = 2 * Math.atan(imgH / 2 / state.camera.focal[1]);
  const near = Math.max(0.01, state.orbit.distance * 0.05);
  const proj = perspective(fovy, canvas.width / canvas.height, near, state.orbit.distance * 20 + 10);
  const view = viewMatrix(state.orbit);
  gl.useProgram(meshProgram);
  setUniforms(meshProgram, view, proj);
  gl.uniform3fv(gl.getUniformLocation(meshProgram, "contactColour"), CONTACT_COLOUR);
  gl.uniform1f(gl.getUniformLocation(meshProgram, "showContact"), $("show-contact").checked ? 1 : 0);
  for (let p = 0; p < 2; p++) {
    if (!state.meshes[p] || !$(`show-p${p}`).checked) continue;
    gl.uniform3fv(gl.getUniformLocation(meshProgram, "base"), PERSON_COLOURS[p]);
    gl.bindVertexArray(state.meshes[p].vao);
    gl.drawElements(gl.TRIANGLES, indexCount, gl.UNSIGNED_INT, 0);
  }
  gl.bindVertexArray(null);
  if (state.joints && $("show-keypoints").checked) {
    // Keypoints stay visible through the bodies so a misplaced joint is never hidden.
    gl.disable(gl.DEPTH_TEST);
    gl.useProgram(pointProgram);
    setUniforms(pointProgram, view, proj);
    gl.uniform1f(gl.getUniformLocation(pointProgram, "size"), 7 * (window.devicePixelRatio || 1));
    for (let p = 0; p < 2; p++) {
      if (!$(`show-p${p}`).checked) continue;
      gl.uniform3fv(gl.getUniformLocation(pointProgram, "base"), PERSON_COLOURS[p].map((c) => c * 0.45));
      gl.bindVertexArray(state.joints[p].vao);
      gl.drawArrays(gl.POINTS, 0, state.joints[p].count);
    }
    gl.bindVertexArray(null);
  }
  document.body.dataset.state = "drawn";
}

function makePoints(points) {
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const buf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buf);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(points.flat()), gl.STATIC_DRAW);
  const loc = gl.getAttribLocation(pointProgram, "position");
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
  gl.bindVertexArray(null);
  return { vao, buffers: [buf], count: points.length };
}

// ---------- data ----------
function decode(b64, Type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Type(bytes.buffer);
}

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function status(text) { $("status").textContent = text; }

function resetView() {
  if (!state.centroid) return;
  const c = state.centroid;
  // Start at the fit camera: looking from the origin at the pair's centroid.
  state.orbit = {
    target: c, distance: Math.hypot(c[0], c[1], c[2]),
    yaw: Math.atan2(c[0], c[2]), pitch: Math.asin(c[1] / Math.hypot(c[0], c[1], c[2])), pan: [0, 0],
  };
  draw();
}

async function showPair(index) {
  const req = ++state.requestId;
  state.current = index;
  renderList();
  const row = state.pairs[index];
  $("title").textContent = `${row.pair_id}${row.label ? "  [" + row.label + "]" : ""}`;
  updateBadge();
  $("losses").textContent = Object.entries(row.losses).map(([k, v]) => `${k} = ${v === null ? "n/a" : v.toPrecision(4)}`).join("   ")
    + (row.keep === null ? "" : row.keep ? "   (kept by the automatic filter)" : "   (rejected by the automatic filter)");
  $("overlay").src = $("show-image").checked ? `/api/pair/${index}/overlay.png` : "";
  status("loading…");
  document.body.dataset.state = "loading";
  let pair;
  try {
    pair = await api(`/api/pair/${index}`);
  } catch (err) { status(`error: ${err.message}`); return; }
  if (req !== state.requestId) return;  // a newer request superseded this one
  state.camera = pair.camera;
  const verts = decode(pair.vertices, Float32Array);
  const contact = pair.contact ? decode(pair.contact, Float32Array) : new Float32Array(2 * pair.num_vertices);
  const n = pair.num_vertices;
  let sum = [0, 0, 0];
  for (let i = 0; i < 2 * n; i++) sum = [sum[0] + verts[3 * i], sum[1] + verts[3 * i + 1], sum[2] + verts[3 * i + 2]];
  state.centroid = scale(sum, 1 / (2 * n));
  if (gl) {
    state.meshes.forEach(freeMesh);
    if (state.joints) state.joints.forEach(freeMesh);
    state.meshes = [0, 1].map((p) => makeMesh(verts.subarray(p * n * 3, (p + 1) * n * 3), contact.subarray(p * n, (p + 1) * n)));
    state.joints = pair.joints3d ? pair.joints3d.map(makePoints) : null;
  }
  status("");
  resetView();
}

function updateBadge() {
  const row = state.pairs[state.current];
  const b = $("mark-badge");
  b.textContent = row && row.mark ? row.mark : "";
  b.className = row && row.mark ? row.mark : "";
}

async function setMark(mark) {
  const row = state.pairs[state.current];
  if (!row) return;
  try {
    await api("/api/mark", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pair_id: row.pair_id, mark }) });
    row.mark = mark;
    updateBadge();
    renderList();
    status(mark ? `${row.pair_id} ${mark}` : `${row.pair_id} unmarked`);
    document.body.dataset.lastMark = `${row.pair_id}:${mark}`;
  } catch (err) { status(`could not save the mark: ${err.message}`); }
}

function computeOrder() {
  const key = $("sort").value, desc = $("descending").checked, show = $("show").value;
  let idx = state.pairs.map((_, i) => i).filter((i) => {
    const m = state.pairs[i].mark;
    return show === "all" || (show === "unmarked" ? !m : m === show);
  });
  if (key !== "index") {
    const v = (i) => state.pairs[i].losses[key];
    // Missing values (null) sort last either way.
    idx.sort((a, b) => (v(a) === null) - (v(b) === null) || (desc ? v(b) - v(a) : v(a) - v(b)));
  } else if (desc) idx.reverse();
  state.order = idx;
}

function renderList() {
  const ol = $("pairs");
  const key = $("sort").value;
  ol.replaceChildren(...state.order.map((i) => {
    const row = state.pairs[i];
    const li = document.createElement("li");
    li.dataset.index = i;
    li.className = [i === state.current ? "current" : "", row.mark || ""].join(" ");
    const value = key !== "index" && row.losses[key] !== null ? row.losses[key].toPrecision(3) : "";
    li.innerHTML = `<span></span><span class="muted">${value}</span>`;
    li.firstChild.textContent = row.pair_id;
    li.onclick = () => showPair(i);
    return li;
  }));
}

function step(delta) {
  if (!state.order.length) return;
  const pos = state.order.indexOf(state.current);
  const next = pos < 0 ? 0 : Math.min(state.order.length - 1, Math.max(0, pos + delta));
  showPair(state.order[next]);
}

// ---------- interaction ----------
let drag = null;
canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, pan: e.button !== 0 || e.shiftKey }; e.preventDefault(); });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  drag.x = e.clientX; drag.y = e.clientY;
  const o = state.orbit;
  if (drag.pan) {
    const s = o.distance / canvas.clientHeight;
    o.pan = [o.pan[0] - dx * s, o.pan[1] + dy * s];
  } else {
    o.yaw -= dx * 0.01;
    o.pitch = Math.max(-1.5, Math.min(1.5, o.pitch - dy * 0.01));
  }
  draw();
});
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  state.orbit.distance = Math.max(0.2, state.orbit.distance * Math.exp(e.deltaY * 0.001));
  draw();
  e.preventDefault();
}, { passive: false });
window.addEventListener("keydown", (e) => {
  if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
  const actions = { ArrowRight: () => step(1), ArrowLeft: () => step(-1), j: () => step(1), k: () => step(-1),
    a: () => setMark("accepted"), r: () => setMark("rejected"), u: () => setMark(null), v: resetView };
  if (actions[e.key]) { actions[e.key](); e.preventDefault(); }
});
["show-p0", "show-p1", "show-contact", "show-keypoints"].forEach((id) => $(id).addEventListener("change", draw));
$("show-image").addEventListener("change", () => {
  $("overlay").style.display = $("show-image").checked ? "" : "none";
  if ($("show-image").checked && state.current >= 0) $("overlay").src = `/api/pair/${state.current}/overlay.png`;
});
["sort", "descending", "show"].forEach((id) => $(id).addEventListener("change", () => { computeOrder(); renderList(); }));
$("prev").onclick = () => step(-1);
$("next").onclick = () => step(1);
$("accept").onclick = () => setMark("accepted");
$("reject").onclick = () => setMark("rejected");
$("clear").onclick = () => setMark(null);
$("reset-view").onclick = resetView;
window.addEventListener("resize", draw);

async function main() {
  if (!gl) status("WebGL2 is not available in this browser: only the image overlay is shown.");
  try {
    const [list, faces] = await Promise.all([api("/api/pairs"), api("/api/faces")]);
    state.pairs = list.pairs;
    state.losses = list.losses;
    $("source").textContent = `${list.source} (${list.count} pairs)`;
    document.title = `apu viewer — ${list.source}`;
    $("sort").replaceChildren(...["index", ...list.losses].map((k) => new Option(k, k)));
    if (gl) {
      const f = decode(faces.faces, Int32Array);
      indexBuffer = gl.createBuffer();
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, indexBuffer);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, new Uint32Array(f.buffer), gl.STATIC_DRAW);
      indexCount = f.length;
    }
    computeOrder();
    renderList();
    if (state.order.length) await showPair(state.order[0]);
    else { status("no pairs"); document.body.dataset.state = "empty"; }
  } catch (err) {
    status(`error: ${err.message}`);
    document.body.dataset.state = "error";
  }
}
main();
