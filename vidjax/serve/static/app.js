// The search and labelling page: plain JS over the JSON API of vidjax/serve/app.py.
'use strict';

const $ = (selector) => document.querySelector(selector);
const state = {
  hits: [], focus: -1, mode: '', queryId: '', histogram: null, seq: 0,
  labels: [], label: localStorage.getItem('vidjax.label') || '',
  query: null,  // {kind: 'image', file} or {kind: 'frame', video, time}: what a click searches.
};

// ---- The API: JSON in and out; a non-2xx answer throws its `detail`. ----
async function api(path, {method = 'GET', json, form} = {}) {
  const options = {method, headers: {}};
  if (json !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(json);
  } else if (form) {
    options.body = form;
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`the server did not answer ${method} ${path} (${error.message})`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: reported below */ }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : text.slice(0, 200) || response.statusText;
    throw new Error(`${method} ${path}: ${response.status} ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

function setStatus(message, kind = '') {
  const status = $('#status');
  status.textContent = message;
  status.className = kind;
}

// Runs an action, shows it as busy, and shows any error in the status line.
async function run(busyMessage, action) {
  setStatus(busyMessage, 'busy');
  try {
    const done = await action();
    setStatus(done || 'Ready.');
  } catch (error) {
    console.error(error);
    setStatus(error.message, 'error');
  }
}

// ---- Formatting ----
function formatTime(seconds) {
  const tenths = Math.round(seconds * 10);
  const minutes = Math.floor(tenths / 600);
  const rest = ((tenths % 600) / 10).toFixed(1).padStart(4, '0');
  return `${String(minutes).padStart(2, '0')}:${rest}`;
}
const baseName = (path) => path.split(/[\\/]/).pop();
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

// ---- Labels and counts ----
async function loadLabels(select) {
  state.labels = await api('/api/labels');
  if (select !== undefined) state.label = select;
  if (!state.labels.some((l) => l.name === state.label)) {
    state.label = state.labels.length ? state.labels[state.labels.length - 1].name : '';
  }
  const picker = $('#label-select');
  picker.replaceChildren(...(state.labels.length ? state.labels.map((l) => el('option', {value: l.name, textContent: l.name}))
    : [el('option', {value: '', textContent: '(create a label)'})]));
  picker.value = state.label;
  labelChanged();
}

function labelChanged() {
  localStorage.setItem('vidjax.label', state.label);
  showCounts(state.labels.find((l) => l.name === state.label));
  $('#grid').querySelectorAll('.tile').forEach((tile, i) => showAnswer(tile, state.hits[i]));
}

function showCounts(counts) {
  for (const answer of ['accept', 'reject', 'skip']) {
    $(`#count-${answer}`).textContent = counts ? counts[answer] : 0;
  }
  $('#counts').dataset.label = counts ? counts.name : '';
}

async function createLabel(event) {
  event.preventDefault();
  const name = $('#new-label').value.trim();
  if (!name) return setStatus('Type a name for the new label first.', 'error');
  await run(`Creating label “${name}”…`, async () => {
    const counts = await api('/api/labels', {method: 'POST', json: {name, who: who()}});
    $('#new-label').value = '';
    await loadLabels(counts.name);
    return `Label “${counts.name}” selected: answer the tiles for it.`;
  });
}

const who = () => $('#who').value.trim() || 'anonymous';

// ---- Results: the grid of tiles ----
function showHits(hits, mode, info) {
  state.hits = hits;
  state.mode = mode;
  const grid = $('#grid');
  grid.dataset.mode = mode;
  grid.replaceChildren(...hits.map(makeTile));
  $('#result-info').replaceChildren(...info);
  setFocus(hits.length ? 0 : -1, false);
  drawHistogram();
}

function makeTile(hit, i) {
  const thumb = el('img', {className: 'thumb', src: `${hit.thumbnail}?size=192`, loading: 'lazy',
    alt: `${hit.kind} of ${hit.video} at ${formatTime(hit.timestamp)}`,
    title: 'Click to see the whole frame'});
  thumb.addEventListener('click', () => { setFocus(i); openLightbox(hit); });
  const button = (answer, text, title) => {
    const b = el('button', {type: 'button', className: answer, textContent: text, title});
    b.addEventListener('click', () => { setFocus(i, false); answerTile(i, answer); });
    return b;
  };
  const similar = el('button', {type: 'button', className: 'similar', textContent: '⌕',
    title: 'Search by this crop'});
  similar.addEventListener('click', () => searchByHit(hit));
  const tile = el('div', {className: 'tile'},
    thumb, el('span', {className: 'badge'}),
    el('div', {className: 'meta'},
      el('span', {className: 'score', textContent: hit.score.toFixed(3), title: 'Similarity'}),
      el('span', {className: 'kind', textContent: hit.kind})),
    el('div', {className: 'where', title: `${hit.video} frame ${hit.frame}`,
      textContent: `${baseName(hit.video)} · ${formatTime(hit.timestamp)}`}),
    el('div', {className: 'actions'}, button('accept', 'Accept', 'Accept (a)'),
      button('reject', 'Reject', 'Reject (r)'), button('skip', 'Skip', 'Skip (s)'), similar));
  tile.dataset.id = hit.id;
  tile.dataset.testid = 'tile';
  tile.addEventListener('click', (event) => { if (event.target === tile) setFocus(i, false); });
  showAnswer(tile, hit);
  return tile;
}

function showAnswer(tile, hit) {
  const answer = (hit && hit.answers[state.label]) || '';
  if (answer) tile.dataset.answer = answer; else delete tile.dataset.answer;
  tile.querySelector('.badge').textContent = answer ? {accept: '✓ accepted',
    reject: '✗ rejected', skip: 'skipped'}[answer] : '';
}

function setFocus(i, scroll = true) {
  const tiles = $('#grid').querySelectorAll('.tile');
  tiles.forEach((t) => t.classList.remove('focused'));
  state.focus = tiles.length ? Math.max(0, Math.min(i, tiles.length - 1)) : -1;
  if (state.focus < 0) return;
  tiles[state.focus].classList.add('focused');
  if (scroll) tiles[state.focus].scrollIntoView({block: 'nearest', behavior: 'smooth'});
}

function columns() {  // Tiles per row of the grid, to move up and down.
  const tiles = [...$('#grid').querySelectorAll('.tile')];
  return Math.max(1, tiles.filter((t) => t.offsetTop === tiles[0].offsetTop).length);
}

async function answerTile(i, answer) {
  const hit = state.hits[i];
  if (!hit) return;
  if (!state.label) return setStatus('Create or pick a label first (the bar at the top).', 'error');
  const label = state.label;
  if (state.focus === i) setFocus(i + 1);  // At once, so quick keys answer the next tiles.
  await run(`Saving ${answer}…`, async () => {
    const answered = await api('/api/answers', {method: 'POST',
      json: {id: hit.id, label, answer, who: who()}});
    hit.answers[label] = answer;
    if (state.hits[i] === hit) showAnswer($('#grid').querySelectorAll('.tile')[i], hit);
    if (answered.seq > state.seq) {  // Answers may come back out of order: newest counts win.
      state.seq = answered.seq;
      state.labels = state.labels.map((l) => (l.name === label ? answered.label : l));
      if (label === state.label) showCounts(answered.label);
    }
    return `${{accept: 'Accepted', reject: 'Rejected', skip: 'Skipped'}[answer]} #${hit.id} for “${label}” (answer ${answered.seq}).`;
  });
}

// ---- Proposals: unanswered crops to review next ----
async function propose() {
  if (!state.label) return setStatus('Create or pick a label first (the bar at the top).', 'error');
  const label = state.label;
  await run(`Fetching proposals for “${label}”…`, async () => {
    const params = new URLSearchParams({k: $('#k').value, kinds: $('#kinds').value});
    if (state.queryId) params.set('seed', state.queryId);
    const found = await api(`/api/labels/${encodeURIComponent(label)}/proposals?${params}`);
    showHits(found.hits, 'proposals', [el('b', {textContent: `${found.hits.length} proposals`}),
      ` for “${found.label}”, ranked by `, el('b', {id: 'method', textContent: found.method}),
      found.method === 'probe' ? ' (a linear probe on your answers)' : ' (nearest to the accepted crops and the query)']);
    return found.hits.length ? `Proposals by ${found.method}: answer them, then n for more.`
      : 'No unanswered crops left to propose.';
  });
}

// ---- Searching ----
function showSearch(result, what) {
  state.queryId = result.query_id;
  state.histogram = result.histogram;
  showHits(result.hits, 'search', [el('b', {textContent: `${result.hits.length} neighbours`}),
    ` of ${what} in ${result.milliseconds.toFixed(0)} ms`]);
  return `Found ${result.hits.length} neighbours. Answer them for “${state.label || '(no label yet)'}”, or Propose more.`;
}

const searchOptions = () => ({k: Number($('#k').value), kinds: $('#kinds').value});

async function searchImage(box) {
  const {file} = state.query;
  await run(`Searching by ${file.name}…`, async () => {
    const form = new FormData();
    form.append('image', file);
    form.append('k', $('#k').value);
    form.append('kinds', $('#kinds').value);
    if (box) form.append('box', box.map((v) => v.toFixed(1)).join(','));
    const result = await api('/api/search', {method: 'POST', form});
    return showSearch(result, box ? `a box of ${file.name}` : file.name);
  });
}

async function searchFrame(box) {
  const {video, time, name} = state.query;
  const {k, kinds} = searchOptions();
  await run(`Searching by ${name} at ${formatTime(time)}…`, async () => {
    const result = await api('/api/search/frame', {method: 'POST', json: {
      video, time, box, k, kinds: kinds ? kinds.split(',') : []}});
    return showSearch(result, `${box ? 'a box of ' : ''}${baseName(name)} at ${formatTime(time)}`);
  });
}

async function searchByHit(hit) {
  const {k, kinds} = searchOptions();
  await run(`Searching by crop #${hit.id}…`, async () => {
    const result = await api('/api/search/region', {method: 'POST', json: {
      id: hit.id, k, kinds: kinds ? kinds.split(',') : []}});
    return showSearch(result, `crop #${hit.id} (${baseName(hit.video)} at ${formatTime(hit.timestamp)})`);
  });
}

function searchQuery(box) {
  if (!state.query) return setStatus('Pick an image or a video frame first.', 'error');
  return state.query.kind === 'image' ? searchImage(box) : searchFrame(box);
}

// ---- Lightbox ----
function openLightbox(hit) {
  $('#lightbox-img').src = hit.frame_url;
  $('#lightbox-caption').textContent = `${hit.video} · frame ${hit.frame} · ${formatTime(hit.timestamp)} · ${hit.kind} [${hit.box.map((v) => Math.round(v)).join(', ')}] · score ${hit.score.toFixed(3)}`;
  $('#lightbox').hidden = false;
}
const closeLightbox = () => { $('#lightbox').hidden = true; };

// ---- Keyboard ----
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === 'Escape') return closeLightbox();
  if (event.target.closest('input, select, textarea')) return;
  const n = state.hits.length, i = state.focus;
  const moves = {ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1, ArrowDown: columns(), ArrowUp: -columns()};
  if (event.key in moves) {
    if (n) setFocus(Math.max(0, Math.min(n - 1, (i < 0 ? 0 : i + moves[event.key]))));
  } else if ({a: 'accept', r: 'reject', s: 'skip'}[event.key]) {
    if (i >= 0) answerTile(i, {a: 'accept', r: 'reject', s: 'skip'}[event.key]);
  } else if (event.key === 'n') {
    propose();
  } else if (event.key === 'Enter' && i >= 0 && !event.target.closest('button')) {
    openLightbox(state.hits[i]);
  } else {
    return;
  }
  event.preventDefault();
}

// ---- Export ----
async function exportLabels() {
  const out = $('#export-result');
  await run('Exporting…', async () => {
    try {
      const done = await api('/api/export', {method: 'POST'});
      const counts = Object.entries(done.written).map(([label, n]) => `${label}: ${n}`).join(', ') || 'no labels';
      out.replaceChildren('Wrote ', el('code', {id: 'export-path', textContent: done.path}),
        ` (${counts} accepted crops) · `, el('a', {href: done.download, download: 'labelled.zip', textContent: 'download zip'}));
      out.className = '';
      out.hidden = false;
      return `Exported to ${done.path}.`;
    } catch (error) {
      out.textContent = `Export failed: ${error.message}`;
      out.className = 'error';
      out.hidden = false;
      throw error;
    }
  });
}

// ---- Start ----
async function start() {
  $('#who').value = localStorage.getItem('vidjax.who') || '';
  $('#who').addEventListener('input', () => localStorage.setItem('vidjax.who', $('#who').value.trim()));
  $('#new-label-form').addEventListener('submit', createLabel);
  $('#label-select').addEventListener('change', (event) => { state.label = event.target.value; labelChanged(); });
  $('#propose').addEventListener('click', propose);
  $('#export').addEventListener('click', exportLabels);
  $('#time-slider').addEventListener('input', showFrame);
  $('#lightbox').addEventListener('click', closeLightbox);
  document.addEventListener('keydown', onKey);
  dropZone();
  boxDrawing();
  await run('Loading…', async () => {
    const health = await api('/api/health');
    $('#health').textContent = `${health.vectors} vectors · ${health.dim}-d · ${health.factory} · corpus ${health.corpus}`;
    await Promise.all([loadLabels(), loadVideos()]);
    document.body.dataset.ready = 'true';
    return 'Ready: drop a photo of what you are looking for, or pick a video frame.';
  });
}

start();
