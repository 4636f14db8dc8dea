// The query side of the page: the query image (an upload, or a video's frame) with a box
// drawn on it, and the histogram of a search's similarities. Loaded before app.js, whose
// helpers (api, run, state, searchQuery) these call.

// ---- Query image: an upload, or a video's frame; click or drag a box on it ----
function useFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith('image/')) {
    return setStatus(`${file.name} is not an image (${file.type}).`, 'error');
  }
  state.query = {kind: 'image', file};
  showQueryImage(URL.createObjectURL(file), 'image');
  searchQuery(null);
}

function showQueryImage(url, what) {
  const img = $('#query-img');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  img.src = url;
  $('#query-view').hidden = false;
  $('#query-view').dataset.query = what;  // 'image' | 'video/time': what a click searches.
  $('#query-box').hidden = true;
}

let frameRequest = 0;
async function showFrame() {
  const video = Number($('#video-select').value);
  const time = Number($('#time-slider').value);
  $('#time-label').textContent = formatTime(time);
  const request = ++frameRequest;
  try {
    const response = await fetch(`/api/videos/${video}/frame?time=${time}`);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`frame of video ${video} at ${time}s: ${response.status} ${body.detail || response.statusText}`);
    }
    const blob = await response.blob();
    if (request !== frameRequest) return;  // A later move of the slider won.
    const shown = Number(response.headers.get('X-Timestamp') || time);
    state.query = {kind: 'frame', video, time: shown, name: $('#video-select').selectedOptions[0].textContent};
    $('#time-label').textContent = `${formatTime(shown)} (frame ${response.headers.get('X-Frame-Index')})`;
    showQueryImage(URL.createObjectURL(blob), `${video}/${shown}`);
  } catch (error) {
    setStatus(error.message, 'error');
  }
}

async function loadVideos() {
  const videos = await api('/api/videos?limit=1000');
  const select = $('#video-select');
  select.append(...videos.map((v) => el('option', {value: v.index, textContent: v.name,
    title: `${v.frames} frames, ${formatTime(v.duration)}`})));
  if (videos.length === 1000) select.append(el('option', {disabled: true, textContent: '(the first 1000 videos)'}));
  select.addEventListener('change', () => {
    const video = videos.find((v) => String(v.index) === select.value);
    const slider = $('#time-slider');
    slider.disabled = !video;
    if (!video) return;
    slider.max = video.duration;
    slider.value = 0;
    showFrame();
  });
}

function boxDrawing() {
  const view = $('#query-view'), img = $('#query-img'), box = $('#query-box');
  let start = null;
  const point = (event) => {
    const rect = img.getBoundingClientRect();
    return [Math.max(0, Math.min(event.clientX - rect.left, rect.width)),
      Math.max(0, Math.min(event.clientY - rect.top, rect.height))];
  };
  const drawn = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  view.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    view.setPointerCapture(event.pointerId);
    start = point(event);
  });
  view.addEventListener('pointermove', (event) => {
    if (!start) return;
    const [x0, y0, x1, y1] = drawn(start, point(event));
    Object.assign(box.style, {left: `${x0}px`, top: `${y0}px`, width: `${x1 - x0}px`, height: `${y1 - y0}px`});
    box.hidden = false;
  });
  view.addEventListener('pointerup', (event) => {
    if (!start) return;
    const [x0, y0, x1, y1] = drawn(start, point(event));
    start = null;
    if (x1 - x0 < 4 || y1 - y0 < 4) {  // A click: the whole image.
      box.hidden = true;
      return searchQuery(null);
    }
    // Displayed pixels -> the image's own pixels.
    const sx = img.naturalWidth / img.clientWidth, sy = img.naturalHeight / img.clientHeight;
    searchQuery([x0 * sx, y0 * sy, Math.min(x1 * sx, img.naturalWidth), Math.min(y1 * sy, img.naturalHeight)]);
  });
}

function dropZone() {
  const zone = $('#drop-zone');
  $('#file-input').addEventListener('change', (event) => useFile(event.target.files[0]));
  for (const name of ['dragenter', 'dragover']) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add('over'); });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    event.stopPropagation();  // The window's handler below would take it again.
    zone.classList.remove('over');
    useFile(event.dataTransfer.files[0]);
  });
  // A file dropped anywhere else should not make the browser navigate away from the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => { event.preventDefault(); useFile(event.dataTransfer.files[0]); });
}

// ---- Histogram of the similarity scores (inline SVG) ----
function drawHistogram() {
  const svg = $('#histogram'), h = state.histogram;
  const NS = 'http://www.w3.org/2000/svg';
  const node = (tag, attributes, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  svg.replaceChildren();
  if (!h || !h.counts.length) return;
  const [W, H, left, bottom] = [300, 80, 4, 14];
  const lo = h.edges[0], hi = h.edges[h.edges.length - 1], span = (hi - lo) || 1;
  const x = (v) => left + ((v - lo) / span) * (W - 2 * left);
  const top = Math.max(...h.counts, 1);
  const shown = state.mode === 'search' && state.hits.length ? state.hits.map((hit) => hit.score) : [];
  const [minShown, maxShown] = [Math.min(...shown), Math.max(...shown)];
  if (shown.length) {
    const [x0, x1] = [Math.max(left, x(minShown)), Math.min(W - left, x(maxShown))];  // Hits may lie beyond it.
    svg.append(node('rect', {class: 'band', x: x0 - 1, y: 2, height: H - bottom - 2, width: Math.max(2, x1 - x0 + 2)}));
  }
  h.counts.forEach((count, i) => {
    const barHeight = count ? Math.max(1.5, (count / top) * (H - bottom - 14)) : 0;
    const inShown = shown.length && h.edges[i + 1] >= minShown && h.edges[i] <= maxShown;
    const bar = node('rect', {class: `bar-rect${inShown ? ' shown' : ''}`, x: x(h.edges[i]) + 0.5,
      width: Math.max(1, x(h.edges[i + 1]) - x(h.edges[i]) - 1), y: H - bottom - barHeight, height: barHeight});
    bar.append(node('title', {}, `${h.edges[i].toFixed(3)} – ${h.edges[i + 1].toFixed(3)}: ${count}`));
    svg.append(bar);
  });
  svg.append(node('line', {class: 'axis', x1: left, x2: W - left, y1: H - bottom, y2: H - bottom}));
  svg.append(node('text', {x: left, y: H - 4}, lo.toFixed(3)));
  svg.append(node('text', {x: W - left, y: H - 4, 'text-anchor': 'end'}, hi.toFixed(3)));
  if (shown.length) {
    svg.append(node('text', {x: Math.min(x(minShown), W - 90), y: 11}, `shown ${minShown.toFixed(3)}–${maxShown.toFixed(3)}`));
  }
  $('#histogram-note').textContent = `cosine similarity of the ${h.of} nearest vectors` +
    (shown.length ? '; the band marks the tiles shown' : state.mode ? ' (of the last search)' : '');
}
