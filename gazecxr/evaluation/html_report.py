"""The browsable report page ``index.html``: summary tables and figures, and a gallery of every
evaluated image (radiograph, gaze ground truth and each saliency method side by side, labels,
probabilities and per-image metrics) with sorting, filters, an opacity control and keyboard keys.

The page is self-contained (no network; opens from a file:// URL): its data are embedded as JSON,
and each image's thumbnails are one JPEG sprite in ``thumbs/`` beside it (radiograph, then each map
in the jet colour scale shared by the row: 0 → the largest pixel value of the row's maps).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import markdown
import numpy as np
from matplotlib import colormaps
from PIL import Image

from gazecxr import CLASS_NAMES
from gazecxr.data.provenance import SYNTHETIC_NOTICE
from gazecxr.evaluation.outputs import SplitOutputs

THUMB_SIZE = 160
"""Longest side of a thumbnail in pixels (canvases are shrunk to it, never enlarged)."""

THUMB_DIR = "thumbs"
JPEG_QUALITY = 85
GROUND_TRUTH = "heatmap"
"""Key of the gaze ground truth in an example; its gallery column is titled `GROUND_TRUTH_TITLE`."""
GROUND_TRUTH_TITLE = "gaze ground truth"
_NOT_MAPS = {"image", "position", "label", "dicom_id"}
UNLABELLED = "unlabelled"
"""The true class shown for a record without one (a REFLACX record in a joint evaluation)."""
_JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == (size[1], size[0]):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


class Gallery:
    """Collects one thumbnail sprite per evaluated image while a split is run (pass `add` as
    ``run_split``'s ``on_image``); keeps only file names, never the maps."""

    def __init__(self, report_dir: str | Path, thumb_size: int = THUMB_SIZE):
        self.report_dir = Path(report_dir)
        (self.report_dir / THUMB_DIR).mkdir(parents=True, exist_ok=True)
        self.thumb_size = thumb_size
        self.items: list[dict[str, Any]] = []

    def add(self, example: Mapping[str, Any]) -> None:
        """Write the sprite of one example (``position``, ``dicom_id``, ``image`` and (H, W) maps)."""
        maps = {GROUND_TRUTH: example[GROUND_TRUTH],
                **{k: v for k, v in example.items() if k not in _NOT_MAPS and k != GROUND_TRUTH}}
        image = np.asarray(example["image"], np.float64)
        h, w = image.shape
        scale = min(1.0, self.thumb_size / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # a record baseline the record has not (no lung mask, no chest box) is a NaN map: drawn blank
        maps = {k: np.nan_to_num(np.asarray(v, np.float64), nan=0.0) for k, v in maps.items()}
        peak = max(float(np.max(m)) for m in maps.values())
        grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        layers = [np.repeat(grey[..., None], 3, axis=-1)]
        for values in maps.values():
            level = np.clip(np.asarray(values, np.float64) / peak if peak > 0 else np.zeros((h, w)), 0, 1)
            layers.append(_JET[np.rint(level * 255).astype(np.uint8)])
        sprite = np.concatenate([_resize(layer, size) for layer in layers], axis=1)
        name = f"{THUMB_DIR}/{int(example['position']):05d}.jpg"
        Image.fromarray(sprite).save(self.report_dir / name, quality=JPEG_QUALITY)
        self.items.append({"position": int(example["position"]), "dicom_id": str(example["dicom_id"]),
                           "sprite": name, "layers": list(maps), "size": list(size)})


def dataset_sources(dataset: Any) -> list[str] | str:
    """The source dataset of each record of ``dataset`` (its ``sources`` when it has them), else the
    name its HDF5 file records for all of them."""
    per_record = getattr(dataset, "sources", None)
    if per_record is not None:
        return [str(s) for s in per_record]
    attrs = getattr(dataset, "attrs", {})
    return str(attrs.get("dataset", attrs.get("source", "unknown")))


def _round(value: Any, digits: int = 4) -> float | None:
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def gallery_records(gallery: Gallery, labels: np.ndarray, probs: Mapping[str, np.ndarray],
                    scores: Mapping[str, Mapping[str, np.ndarray]], sources: Sequence[str] | str,
                    class_names: Sequence[str] = CLASS_NAMES) -> list[dict[str, Any]]:
    """The per-image records of the page from an evaluation's per-image outputs (split order)."""
    records = []
    for item in sorted(gallery.items, key=lambda it: it["position"]):
        p = item["position"]
        records.append({
            **item,
            "source": sources if isinstance(sources, str) else sources[p],
            "label": class_names[int(labels[p])] if labels[p] >= 0 else UNLABELLED,
            "probs": {m: [_round(v) for v in values[p]] for m, values in probs.items()},
            "scores": {m: {k: _round(v[p]) for k, v in by_metric.items()} for m, by_metric in scores.items()},
        })
    return records


def _figures(report_dir: Path) -> list[str]:
    return sorted(p.name for p in report_dir.glob("*.png"))


def render_page(title: str, tables_markdown: str, figures: Sequence[str], records: Sequence[Mapping[str, Any]],
                synthetic: bool, main: str | None = None, caption: str = "",
                class_names: Sequence[str] = CLASS_NAMES) -> str:
    """The HTML text of the page; ``main`` is the classification method whose prediction the
    correct/incorrect filter uses (default: ``full`` when present, else the first); ``caption``
    is a line under the gallery's heading."""
    classification = list(records[0]["probs"]) if records else []
    if main is None:
        main = "full" if "full" in classification else (classification[0] if classification else None)
    elif main not in classification:
        raise ValueError(f"main classification method {main!r} not among {classification}")
    data = {"classes": list(class_names), "classification": classification, "main": main, "records": list(records)}
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    banner = f'<p class="notice" id="synthetic-notice">{html.escape(SYNTHETIC_NOTICE, quote=False)}</p>' if synthetic else ""
    figure_tags = "\n".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(f)}">'
                            f"<figcaption>{html.escape(f)}</figcaption></figure>" for f in figures)
    return _PAGE.format(title=html.escape(title, quote=False), banner=banner, n=len(records),
                        tables=markdown.markdown(tables_markdown, extensions=["tables"]),
                        figures=figure_tags, data=payload, css=_CSS, js=_JS,
                        caption=f"<p>{html.escape(caption, quote=False)}</p>" if caption else "")


def write_html_report(report_dir: str | Path, tables_markdown: str, outputs: SplitOutputs, gallery: Gallery,
                      sources: Sequence[str] | str, synthetic: bool, main: str | None = None,
                      caption: str = "") -> Path:
    """Write ``report_dir/index.html`` from an evaluation's tables (markdown, its first ``# `` line is the
    page title), figures (the PNGs in ``report_dir``) and per-image ``outputs`` with their ``gallery``
    thumbnails, through a temporary file renamed into place; returns its path."""
    report_dir = Path(report_dir)
    head, _, rest = tables_markdown.partition("\n")
    title, body = (head[2:].strip(), rest) if head.startswith("# ") else (f"Report {report_dir.name}", tables_markdown)
    records = gallery_records(gallery, outputs.labels, outputs.probs, outputs.scores, sources)
    path = report_dir / "index.html"
    text = render_page(title, body, _figures(report_dir), records, synthetic, main, caption)
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222}
.notice{background:#b00020;color:#fff;font-weight:bold;padding:.6em 1em;margin:0 -1.5em 1em;font-size:1.1em}
h1{font-size:1.4em}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
figure{display:inline-block;margin:.5em}figure img{max-height:320px}
#controls{position:sticky;top:0;background:#f4f4f4;padding:.5em;border-bottom:1px solid #bbb;z-index:2}
#controls label{margin-right:1em;white-space:nowrap}
.cell{position:relative;overflow:hidden;display:inline-block}
.cell img{position:absolute;top:0;max-width:none}
.cell img.heat{opacity:var(--alpha,0.45)}
#gallery td.layer{text-align:center;font-size:11px}
#gallery tr.selected{outline:3px solid #1565c0}
.wrong{color:#b00020;font-weight:bold}.right{color:#1b5e20}
.scale{display:inline-block;width:120px;height:10px;vertical-align:middle;background:linear-gradient(90deg,
#00007f,#0000ff,#007fff,#00ffff,#7fff7f,#ffff00,#ff7f00,#ff0000,#7f0000)}
"""

_JS = r"""
const D = JSON.parse(document.getElementById('report-data').textContent);
const R = D.records, main = D.main;
const $ = id => document.getElementById(id);
const layers = R.length ? R[0].layers : [];
const metricNames = R.length ? Object.keys(Object.values(R[0].scores)[0] || {}) : [];
const state = {page: 0, selected: 0, rows: []};
function predicted(r, m) { const p = r.probs[m]; return D.classes[p.indexOf(Math.max(...p))]; }
function pTrue(r, m) { return r.probs[m][D.classes.indexOf(r.label)]; }
function option(sel, value, text) { const o = document.createElement('option'); o.value = value; o.textContent = text; sel.appendChild(o); }
function setup() {
  const sort = $('sort');
  option(sort, 'position', 'split order');
  for (const m of D.classification) option(sort, 'p_true:' + m, 'p(true class), ' + m);
  for (const m of Object.keys(R.length ? R[0].scores : {})) for (const k of metricNames) option(sort, 'score:' + m + ':' + k, k.toUpperCase() + ', ' + m);
  for (const c of D.classes) option($('f-class'), c, c);
  for (const s of [...new Set(R.map(r => r.source))].sort()) option($('f-source'), s, s);
  for (const id of ['sort', 'order', 'f-class', 'f-correct', 'f-source', 'page-size']) $(id).addEventListener('change', () => { state.page = 0; state.selected = 0; update(); });
  $('alpha').addEventListener('input', e => document.documentElement.style.setProperty('--alpha', e.target.value / 100));
  $('prev').addEventListener('click', () => page(-1)); $('next').addEventListener('click', () => page(1));
  document.addEventListener('keydown', key);
  update();
}
function keyOf(r, spec) {
  if (spec === 'position') return r.position;
  const parts = spec.split(':');
  if (parts[0] === 'p_true') return pTrue(r, parts[1]);
  const v = r.scores[parts[1]][parts[2]]; return v === null ? NaN : v;
}
function update() {
  const spec = $('sort').value, desc = $('order').value === 'desc';
  const fc = $('f-class').value, fk = $('f-correct').value, fs = $('f-source').value;
  let rows = R.filter(r => (!fc || r.label === fc) && (!fs || r.source === fs) &&
    (!fk || !main || (predicted(r, main) === r.label) === (fk === 'correct')));
  rows.sort((a, b) => { const x = keyOf(a, spec), y = keyOf(b, spec);
    if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1; return (desc ? y - x : x - y) || a.position - b.position; });
  state.rows = rows; render();
}
function pageSize() { const v = +$('page-size').value; return v > 0 ? v : Math.max(1, state.rows.length); }
function page(step) {
  const pages = Math.max(1, Math.ceil(state.rows.length / pageSize()));
  const next = Math.min(pages - 1, Math.max(0, state.page + step));
  if (next !== state.page) { state.page = next; state.selected = 0; render(); }
}
function cell(r, k) {
  const [w, h] = r.size, div = document.createElement('div');
  div.className = 'cell'; div.style.width = w + 'px'; div.style.height = h + 'px';
  const base = document.createElement('img'); base.src = r.sprite; base.alt = r.dicom_id; base.style.left = '0px';
  div.appendChild(base);
  if (k > 0) { const heat = document.createElement('img'); heat.className = 'heat'; heat.src = r.sprite;
    heat.alt = r.layers[k - 1]; heat.style.left = (-k * w) + 'px'; div.appendChild(heat); }
  return div;
}
function scoreText(s) { return s ? metricNames.map(k => k.toUpperCase() + ' ' + (s[k] === null ? '–' : s[k].toFixed(3))).join(' · ') : ''; }
function render() {
  const body = $('rows'); body.textContent = '';
  const size = pageSize(), start = state.page * size, shown = state.rows.slice(start, start + size);
  $('count').textContent = state.rows.length + ' of ' + R.length + ' images; page ' + (state.page + 1) + ' of ' + Math.max(1, Math.ceil(state.rows.length / size));
  shown.forEach((r, i) => {
    const tr = document.createElement('tr'); tr.dataset.position = r.position;
    const pred = main ? predicted(r, main) : null, ok = pred === r.label;
    const info = document.createElement('td');
    info.innerHTML = '<b>#' + r.position + '</b><br><code></code><br>source: <span class="src"></span><br>true: <b>' + r.label +
      '</b>' + (main ? '<br>predicted (' + main + '): <span class="' + (ok ? 'right' : 'wrong') + '">' + pred + '</span>' : '') +
      D.classification.map(m => '<br>' + m + ': ' + r.probs[m].map((p, c) => D.classes[c] + ' ' + p.toFixed(2)).join(', ')).join('');
    info.querySelector('code').textContent = r.dicom_id; info.querySelector('.src').textContent = r.source;
    tr.appendChild(info);
    for (let k = 0; k <= r.layers.length; k++) {
      const td = document.createElement('td'); td.className = 'layer'; td.appendChild(cell(r, k));
      const cap = document.createElement('div');
      cap.textContent = k === 0 ? 'radiograph' : (r.layers[k - 1] === 'heatmap' ? 'gaze ground truth' : r.layers[k - 1]);
      td.appendChild(cap);
      if (k > 0 && r.scores[r.layers[k - 1]]) { const s = document.createElement('div'); s.textContent = scoreText(r.scores[r.layers[k - 1]]); td.appendChild(s); }
      tr.appendChild(td);
    }
    tr.addEventListener('click', () => { state.selected = i; select(false); });
    body.appendChild(tr);
  });
  select(false);
}
function select(scroll) {
  const trs = $('rows').children;
  for (let i = 0; i < trs.length; i++) trs[i].classList.toggle('selected', i === state.selected);
  if (scroll && trs[state.selected]) trs[state.selected].scrollIntoView({block: 'nearest'});
}
function key(e) {
  if (['SELECT', 'INPUT'].includes(document.activeElement.tagName) && e.key.length > 1 && e.key !== 'Escape') return;
  const n = $('rows').children.length, a = $('alpha');
  if (e.key === 'j' || e.key === 'ArrowDown') { if (state.selected < n - 1) { state.selected++; select(true); } else page(1); }
  else if (e.key === 'k' || e.key === 'ArrowUp') { if (state.selected > 0) { state.selected--; select(true); } }
  else if (e.key === 'n' || e.key === 'ArrowRight') page(1);
  else if (e.key === 'p' || e.key === 'ArrowLeft') page(-1);
  else if (e.key === '+' || e.key === '-') { a.value = +a.value + (e.key === '+' ? 10 : -10); a.dispatchEvent(new Event('input')); }
  else return;
  e.preventDefault();
}
setup();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>
<body>{banner}
<h1>{title}</h1>
<nav><a href="#summary">summary</a> · <a href="#figures">figures</a> · <a href="#gallery-section">gallery ({n} images)</a></nav>
<section id="summary">{tables}</section>
<section id="figures"><h2>Figures</h2>{figures}</section>
<section id="gallery-section"><h2>Gallery</h2>{caption}
<div id="controls">
<label>sort <select id="sort"></select></label>
<label><select id="order"><option value="asc">ascending</option><option value="desc">descending</option></select></label>
<label>true class <select id="f-class"><option value="">all</option></select></label>
<label>prediction <select id="f-correct"><option value="">all</option><option value="correct">correct</option><option value="incorrect">incorrect</option></select></label>
<label>source <select id="f-source"><option value="">all</option></select></label>
<label>overlay opacity <input id="alpha" type="range" min="0" max="100" value="45"></label>
<label>per page <select id="page-size"><option value="25">25</option><option value="50" selected>50</option><option value="100">100</option><option value="0">all</option></select></label>
<button id="prev">◀ previous</button> <button id="next">next ▶</button> <span id="count"></span><br>
<small>colour: <span class="scale"></span> 0 → largest value of the row's maps (one scale per image) ·
keys: j/k or ↓/↑ next/previous image, n/p or →/← next/previous page, +/− opacity</small>
</div>
<table id="gallery"><tbody id="rows"></tbody></table></section>
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body></html>
"""
