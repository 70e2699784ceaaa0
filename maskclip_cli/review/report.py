"""The review report: one static HTML page (no script) to look over a label run before training.

It shows the run's settings; per class the share of pixels, the number of images it appears in
and its mean confidence, as bars; a histogram of per-image mean confidence; the lowest-confidence
images first; failed images with their errors; and overlay thumbnails grouped by class, each
linking to its full-size overlay.

Fast on large folders: counts, the histogram and the failures come from one streamed pass over the
manifest; pixel shares and per-class confidence are measured on a seeded random sample of
``max_images`` labelled images (exact when the folder is smaller), and thumbnails are made for that
sample plus the (at most 30) lowest-confidence images. Thumbnails and generated overlays go to a folder next to
the page (``<name>_files/``).
"""

from __future__ import annotations

import heapq
import html
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..core._io import atomic_write, is_output_error
from ..core.errors import MaskCLIPError, check_range
from ..core.hooks import SILENT, ProgressHook
from ..core.shareable import shareable_record, shown
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry, inside
from ..formats.label_folder import LabelFolder
from .overlay import check_own_output, render_overlay, write_overlay

HISTOGRAM_BINS = 20
THUMB_SIZE = 200
SHOWN_FAILURES = 200
PAGE_START = "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>maskclip report: "  # how --out is known as ours
MOST_LOWEST = 30  # lowest-confidence images shown first (fewer for a small --max-images)


@dataclass
class ReportOptions:
    images: Path | None = None  # the labelled photos: overlays are rendered for the sample when the folder has none
    max_images: int = 500  # labelled images read for pixel statistics and thumbnails
    per_class: int = 24  # thumbnails shown per class
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("max_images", self.max_images, 1)
        check_range("per_class", self.per_class, 0)
        self.images = None if self.images is None else Path(self.images)
        if self.images is not None and not self.images.is_dir():
            raise MaskCLIPError(f"Image folder not found: {self.images}")


@dataclass
class _Manifest:
    """What one pass over the manifest gives: counts, histogram, failures, and the sample."""

    total: int = 0
    ok: int = 0
    images_per_class: list[int] = field(default_factory=list)
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    failures: list[tuple[str, str]] = field(default_factory=list)
    failed: int = 0
    random_sample: list[ImageEntry] = field(default_factory=list)
    lowest: list[ImageEntry] = field(default_factory=list)


@dataclass
class _Thumb:
    entry: ImageEntry
    thumb: str  # relative to the page
    link: str
    classes: list[int]


@dataclass
class ReportSummary:
    images: int = 0
    sampled: int = 0
    thumbnails: int = 0
    seconds: float = 0.0
    path: Path | None = None


def _scan_manifest(folder: LabelFolder, options: ReportOptions, hook: ProgressHook) -> _Manifest:
    scan = _Manifest(images_per_class=[0] * len(folder.class_names))
    index = {n: i for i, n in enumerate(folder.class_names)}
    rng = random.Random(options.seed)
    worst: list[tuple[float, str, ImageEntry]] = []  # max-heap by negated confidence
    n_worst = min(MOST_LOWEST, max(1, options.max_images // 5))
    for entry in folder.reader(hook):
        scan.total += 1
        if entry.status != "ok":
            scan.failed += 1
            if len(scan.failures) < SHOWN_FAILURES:
                scan.failures.append((entry.source, entry.error or entry.status))
            continue
        scan.ok += 1
        for name in entry.classes_present:
            if name in index:
                scan.images_per_class[index[name]] += 1
        conf = entry.mean_confidence if entry.mean_confidence is not None else 0.0
        scan.histogram[min(HISTOGRAM_BINS - 1, max(0, int(conf * HISTOGRAM_BINS)))] += 1
        item = (-conf, entry.source, entry)
        if len(worst) < n_worst:
            heapq.heappush(worst, item)
        elif item > worst[0]:
            heapq.heapreplace(worst, item)
        if len(scan.random_sample) < options.max_images:  # reservoir sampling: uniform, one pass
            scan.random_sample.append(entry)
        else:
            k = rng.randrange(scan.ok)
            if k < options.max_images:
                scan.random_sample[k] = entry
    scan.lowest = [e for _, _, e in sorted(worst, reverse=True)]
    return scan


class _Thumbnails:
    """Overlay thumbnails (and full-size overlays when the label folder has none) for the page."""

    def __init__(self, folder: LabelFolder, page: Path, images: Path | None):
        self.folder, self.images = folder, images
        self.page_dir = page.parent
        self.assets = page.with_name(page.stem + "_files")
        self.count = 0

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.page_dir)).as_posix()

    def make(self, entry: ImageEntry, labels: np.ndarray) -> _Thumb:
        overlay = self.folder.overlay_path(entry.stem)
        photo = inside(self.images, entry.source, "source", confine=False) if self.images is not None else None
        if overlay.is_file():
            with Image.open(overlay) as img:
                full = img.convert("RGB")
            link = overlay
        elif photo is not None and photo.is_file():
            link = self.assets / "overlays" / f"{entry.stem}.jpg"
            write_overlay(link, photo, labels, self.folder.colours, self.folder.class_names, self.folder.record.exif)
            with Image.open(link) as img:
                full = img.convert("RGB")
        else:  # no photo: the label map's colours alone
            grey = Image.new("RGB", (labels.shape[1], labels.shape[0]), (128, 128, 128))
            full = render_overlay(grey, labels, self.folder.colours, self.folder.class_names, alpha=1.0)
            link = self.folder.root / entry.maps[LABEL.name]
        full.thumbnail((THUMB_SIZE, THUMB_SIZE))
        self.count += 1
        thumb = self.assets / "thumbs" / f"{self.count}.jpg"
        atomic_write(thumb, lambda tmp: full.save(tmp, format="JPEG", quality=80))
        present = [int(c) for c in np.unique(labels) if c < len(self.folder.class_names)]
        return _Thumb(entry, self._rel(thumb), self._rel(link), present)


def write_report(label_dir: str | os.PathLike, out: str | os.PathLike, options: ReportOptions | None = None, hook: ProgressHook = SILENT) -> ReportSummary:
    """Write the review page of ``label_dir`` to ``out`` (an .html file) and its thumbnails next to it."""
    label_dir, out = Path(label_dir), Path(out)
    options = options or ReportOptions()
    start = time.perf_counter()
    folder = LabelFolder.open(label_dir)
    if out.is_dir():
        raise MaskCLIPError(f"--out {out} is a folder; give the path of the .html file to write.")
    page_dir = out.parent.resolve()
    if options.images is not None and page_dir.is_relative_to(options.images.resolve()) and not page_dir.is_relative_to(label_dir.resolve()):
        raise MaskCLIPError(f"--out {out} lies inside the photo folder {options.images}: the next `maskclip label` there "
                            "would label the report's thumbnails as photos; write the report elsewhere (e.g. into the label folder).")
    check_own_output(out, PAGE_START.encode(), "a report")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot create {out.parent}: {exc.strerror or exc}") from exc
    scan = _scan_manifest(folder, options, hook)
    n = len(folder.class_names)
    pixels, conf_sum = np.zeros(n, np.int64), np.zeros(n, np.float64)
    thumbs = _Thumbnails(folder, out, options.images)
    random_sources = {e.source for e in scan.random_sample}
    todo = {e.source: e for e in [*scan.lowest, *scan.random_sample]}
    made: dict[str, _Thumb] = {}
    hook.start(len(todo), "report")
    try:
        for source, entry in sorted(todo.items()):
            hook.advance(1)
            try:
                maps = folder.read_maps(entry)
                labels, conf = maps[LABEL.name], maps[CONFIDENCE.name]
                if source in random_sources:
                    valid = labels < n
                    pixels += np.bincount(labels[valid], minlength=n)[:n]
                    if conf is not None:
                        conf_sum += np.bincount(labels[valid], weights=conf[valid], minlength=n)[:n]
                made[source] = thumbs.make(entry, labels)
            except OSError as exc:
                if is_output_error(exc, thumbs.assets):  # the page's own folder: stop, not one warning per image
                    raise MaskCLIPError(f"Cannot write the report's thumbnails into {thumbs.assets}: {exc.strerror or exc}") from exc
                hook.warn(f"report: skipped {source}: {exc}")
            except MaskCLIPError as exc:
                hook.warn(f"report: skipped {source}: {exc}")
    finally:
        hook.finish()
    page = _page(folder, label_dir, scan, pixels, conf_sum, made, options)
    try:
        atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    except OSError as exc:
        raise MaskCLIPError(f"Cannot write {out}: {exc.strerror or exc}") from exc
    return ReportSummary(images=scan.total, sampled=len(random_sources), thumbnails=thumbs.count,
                         seconds=time.perf_counter() - start, path=out)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;vertical-align:middle}
tr:nth-child(even){background:#f6f6f6}th{background:#eee}.num{text-align:right;font-variant-numeric:tabular-nums}
.sw{display:inline-block;width:14px;height:14px;border:1px solid #555;vertical-align:middle}
.bar{height:14px;min-width:1px}.barcell{width:260px}.muted{color:#777}
.grid{display:flex;flex-wrap:wrap;gap:8px}.card{max-width:200px;font-size:12px}
.card img{display:block;max-width:200px;max-height:200px;border:1px solid #ccc}
.card a{color:inherit;text-decoration:none}.err{color:#a00;font-family:monospace;font-size:12px}
summary{font-weight:600;cursor:pointer;margin:8px 0}code{background:#f0f0f0;padding:0 3px}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _swatch(colour) -> str:
    return f'<span class="sw" style="background:rgb{tuple(int(v) for v in colour)}"></span>'


def _bar(fraction: float, colour) -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar" style="width:{width:.1f}%;background:rgb{tuple(int(v) for v in colour)}"></div>'


def _histogram_svg(counts: list[int]) -> str:
    w, h, pad = 600, 180, 24
    top = max(counts) or 1
    bw = (w - 2 * pad) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        x, y = pad + i * bw, h - pad - bh
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" fill="#4a78b5">'
                    f"<title>{i / len(counts):.2f}-{(i + 1) / len(counts):.2f}: {c} images</title></rect>")
    ticks = "".join(f'<text x="{pad + k * (w - 2 * pad) / 4:.0f}" y="{h - 6}" font-size="11" text-anchor="middle">{k / 4:.2f}</text>'
                    for k in range(5))
    return (f'<svg width="{w}" height="{h}" role="img" aria-label="confidence histogram">'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>{"".join(bars)}{ticks}'
            f'<text x="{pad}" y="12" font-size="11">max {top} images per bin</text></svg>')


def without_folder(error: str, source: str) -> str:
    """``error`` with the folder in front of ``source`` dropped (``Cannot read /home/me/photos/a.jpg``
    -> ``Cannot read a.jpg``): the label job's messages name the photo by its full path."""
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"]*?[/\\](?=" + re.escape(source) + ")", "", error)


def _settings_rows(folder: LabelFolder) -> list[tuple[str, object]]:
    """The label record as (name, value) rows: CLIP, weights, method and every inference setting."""
    if folder.record is None:
        return []
    r = shareable_record(folder.record)
    rows: list[tuple[str, object]] = [("segmenter", r.segmenter)]
    if r.clip is not None:
        weights = r.clip.weights
        rows += [("model", r.clip.model), ("weights", weights.label + (f" ({weights.path})" if weights.path else ""))]
    if r.network is not None:
        rows.append(("network", f"{r.network.checkpoint} ({r.network.backbone}, iteration {r.network.iteration})"))
    rows += list(r.inference.items())
    if r.synonyms:
        rows.append(("synonyms", r.synonyms))
    rows += [("min_confidence", r.min_confidence), ("confidence_format", r.confidence_format),
             ("record_version", r.version)]
    return rows


def _card(t: _Thumb) -> str:
    conf = t.entry.mean_confidence
    label = f"{conf:.3f}" if conf is not None else "?"
    return (f'<div class="card"><a href="{_e(t.link)}"><img src="{_e(t.thumb)}" loading="lazy" alt="{_e(t.entry.source)}">'
            f"{_e(t.entry.source)}</a><br><span class=muted>mean confidence {label}</span></div>")


def _page(folder: LabelFolder, label_dir: Path, scan: _Manifest, pixels: np.ndarray, conf_sum: np.ndarray,
          thumbs: dict[str, _Thumb], options: ReportOptions) -> str:
    names, colours = folder.class_names, folder.colours
    total_pixels = int(pixels.sum())
    sampled = len(scan.random_sample)
    exact = sampled == scan.ok
    parts = [f"{PAGE_START}{_e(label_dir.name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>maskclip report: {_e(shown(label_dir))}</h1>",
             f"<p>{scan.total} images: {scan.ok} labelled, {scan.failed} failed; {len(names)} classes. "
             f"Generated {_e(time.strftime('%Y-%m-%d %H:%M'))}.</p>"]

    settings = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
                       for k, v in _settings_rows(folder))
    parts.append(f"<h2>Settings</h2><table>{settings or '<tr><td>none recorded</td></tr>'}</table>")

    source = "all labelled images" if exact else f"a random sample of {sampled} of {scan.ok} labelled images"
    rows = []
    top_share = max((p / total_pixels for p in pixels), default=0) if total_pixels else 0
    top_images = max(scan.images_per_class, default=0) or 1
    for i, name in enumerate(names):
        share = pixels[i] / total_pixels if total_pixels else 0.0
        mean_conf = f"{conf_sum[i] / pixels[i]:.3f}" if pixels[i] else "-"
        rows.append(
            f"<tr><td>{_swatch(colours[i])}</td><td>{_e(name)}</td><td class=num>{share * 100:.1f}%</td>"
            f"<td class=barcell>{_bar(share / top_share if top_share else 0, colours[i])}</td>"
            f"<td class=num>{scan.images_per_class[i]}</td>"
            f"<td class=barcell>{_bar(scan.images_per_class[i] / top_images, colours[i])}</td>"
            f"<td class=num>{mean_conf}</td></tr>")
    parts.append(
        "<h2>Classes</h2><table><tr><th></th><th>class</th><th colspan=2>share of pixels</th>"
        "<th colspan=2>images it appears in</th><th>mean confidence</th></tr>" + "".join(rows) + "</table>"
        f"<p class=muted>Pixel shares and mean confidences: {source}. Image counts: every image (manifest).</p>")

    parts.append(f"<h2>Confidence</h2><p>Mean confidence per image, {scan.ok} images.</p>{_histogram_svg(scan.histogram)}")

    lowest = [thumbs[e.source] for e in scan.lowest if e.source in thumbs]
    parts.append(f"<h2>Lowest confidence first</h2><p class=muted>The {len(lowest)} images with the lowest mean "
                 f"confidence: check these first.</p><div class=grid>{''.join(_card(t) for t in lowest)}</div>")

    if scan.failed:
        rows = "".join(f"<tr><td>{_e(s)}</td><td class=err>{_e(without_folder(err, s))}</td></tr>" for s, err in scan.failures)
        more = f"<p class=muted>{scan.failed - len(scan.failures)} more in manifest.jsonl.</p>" if scan.failed > len(scan.failures) else ""
        parts.append(f"<h2>Failed images ({scan.failed})</h2><table><tr><th>image</th><th>error</th></tr>{rows}</table>{more}")
    else:
        parts.append("<h2>Failed images</h2><p>None.</p>")

    parts.append(f"<h2>By class</h2><p class=muted>Overlays of {source if exact else 'the sampled images'}, lowest "
                 f"confidence first, at most {options.per_class} per class; click for the full size.</p>")
    by_conf = sorted((t for s, t in thumbs.items()), key=lambda t: (t.entry.mean_confidence or 0.0, t.entry.source))
    for i, name in enumerate(names):
        members = [t for t in by_conf if i in t.classes]
        cards = "".join(_card(t) for t in members[: options.per_class])
        parts.append(f"<details open><summary>{_swatch(colours[i])} {_e(name)} ({len(members)} images)</summary>"
                     f"<div class=grid>{cards or '<p class=muted>not in the sampled images</p>'}</div></details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
