"""A contact sheet of phantom samples: one row per class, for the README and for eyeballing."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from launcher.phantom.generate import PhantomConfig, render_sample, sample_rng

# Width of the column holding the class names, as a share of one tile.
_LABEL_COLUMN_SHARE = 0.6
_GAP_PX = 4


def write_contact_sheet(out_png: str | Path, config: PhantomConfig = PhantomConfig(), per_class: int = 6) -> Path:
    """Save a PNG grid: a row per class in ``config.labels``, named on the left, ``per_class`` tiles each.

    The tiles are the class's first samples, the same images as ``train/<label> (1..per_class)``.

    :param out_png: where to write the PNG; parent folders are created.
    :param config: labels, seed, size and difficulty of the samples.
    :param per_class: tiles per row.
    :returns: the PNG path.
    """
    tile = config.size
    label_width = int(tile * _LABEL_COLUMN_SHARE)
    width = label_width + per_class * (tile + _GAP_PX)
    height = len(config.labels) * (tile + _GAP_PX) + _GAP_PX
    sheet = Image.new("L", (width, height), color=0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(12, tile // 12))
    for row, label in enumerate(config.labels):
        top = _GAP_PX + row * (tile + _GAP_PX)
        draw.text((_GAP_PX * 2, top + tile // 2), label, fill=255, font=font, anchor="lm")
        for column in range(per_class):
            pixels, _, _ = render_sample(label, sample_rng(config.seed, label, column), config)
            sheet.paste(Image.fromarray(pixels), (label_width + column * (tile + _GAP_PX), top))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, format="PNG")
    return out_png
