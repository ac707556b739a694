"""A contact sheet: the scored photos as thumbnails, best first, with score, rank and
percentile under each and the files that could not be scored listed at the end.

One self-contained HTML file (plain HTML + CSS, thumbnails embedded as base64 JPEG), so
it can be mailed or opened anywhere; no script runs in it.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

__all__ = ["write_contact_sheet", "thumbnail_data_uri"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fff;color:#222}
h1{font-size:20px;margin:0 0 4px} p.meta{color:#555;margin:0 0 16px;font-size:13px}
.sheet{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:SIZEpx;text-align:center}
figure img{width:SIZEpx;height:SIZEpx;object-fit:contain;background:#eee;display:block}
figcaption{font-size:13px;margin-top:4px} figcaption b{font-size:15px}
figcaption .name{display:block;color:#666;font-size:11px;overflow:hidden;
 text-overflow:ellipsis;white-space:nowrap}
.failed{margin-top:24px;font-size:13px} .failed li{color:#a00}
"""


def thumbnail_data_uri(path, size: int = 200) -> str:
    """A JPEG thumbnail (longer side ``size``, EXIF-rotated) as a ``data:`` URI."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(row, size, scale) -> str:
    try:
        src = thumbnail_data_uri(row["path"], size)
    except Exception:  # scored from decoded pixels Pillow cannot read (e.g. RAW): no picture
        src = ""
    pct = row.get("percentile")
    extra = f" &middot; percentile {pct:.0f}" if pct is not None else ""
    name = html.escape(Path(str(row["path"])).name)
    return (f'<figure data-rank="{row["rank"]}" data-score="{row["score"]:.4f}">'
            f'<img src="{src}" alt="{name}">'
            f'<figcaption><b>{row["score"]:.2f}</b>{scale}<br>#{row["rank"]}{extra}'
            f'<span class="name" title="{html.escape(str(row["path"]))}">{name}</span>'
            f"</figcaption></figure>")


def write_contact_sheet(ranked, out, title: str = "mlsp scores", model: str = "",
                        scale=None, size: int = 200, skipped: int = 0,
                        total: int | None = None) -> Path:
    """Write ``ranked`` rows (:func:`mlsp.inference.photos.rank_rows`: best first, failures last)
    as an HTML contact sheet at ``out``; returns its path.  ``total``: how many photos
    were scored when ``ranked`` holds only the best of them (``--top``)."""
    scored = [r for r in ranked if r.get("score") is not None]
    failed = [r for r in ranked if r.get("score") is None]
    unit = f" / {scale[1]:g}" if scale else ""
    shown = (f"the {len(scored)} best of {total} photos" if total and total > len(scored)
             else f"{len(scored)} photos")
    meta = (f"{shown} scored" + (f" by model {html.escape(model)}" if model else "")
            + ", best first" + (f"; {len(failed)} could not be scored" if failed else "")
            + (f"; {skipped} files that are not photos skipped" if skipped else ""))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>",
             f"<style>{_CSS.replace('SIZE', str(int(size)))}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{meta}</p>',
             '<div class="sheet">', *(_figure(r, size, unit) for r in scored), "</div>"]
    if failed:
        parts.append('<div class="failed"><h2>Not scored</h2><ul>')
        parts += [f"<li>{html.escape(str(r['path']))}: {html.escape(str(r.get('error', '')))}"
                  f"</li>" for r in failed]
        parts.append("</ul></div>")
    parts.append("</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
