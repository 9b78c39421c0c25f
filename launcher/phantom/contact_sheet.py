"""A contact sheet of phantom subjects: a row per subject, its slices side by side, for the README
and for eyeballing."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from launcher.phantom.generate import PhantomConfig, make_subject, render_slice

# Width of the column holding the class names, as a share of one tile.
_LABEL_COLUMN_SHARE = 0.6
_GAP_PX = 4


def write_contact_sheet(out_png: str | Path, config: PhantomConfig = PhantomConfig(), subjects: int = 2) -> Path:
    """Save a PNG grid: ``subjects`` rows per class in ``config.labels``, each one subject's slices,
    named on the left by class and subject id (the first subjects, the files ``train/<label> (1)...``).

    :param out_png: where to write the PNG; parent folders are created.
    :param config: labels, seed, size, slices per subject and difficulty of the samples.
    :param subjects: subjects shown per class.
    :returns: the PNG path.
    """
    tile = config.size
    label_width = int(tile * _LABEL_COLUMN_SHARE)
    width = label_width + config.slices_per_subject * (tile + _GAP_PX)
    height = len(config.labels) * subjects * (tile + _GAP_PX) + _GAP_PX
    sheet = Image.new("L", (width, height), color=0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(12, tile // 12))
    for row, (label, subject_index) in enumerate((label, i) for label in config.labels for i in range(subjects)):
        top = _GAP_PX + row * (tile + _GAP_PX)
        subject = make_subject(label, subject_index, config)
        caption = f"{label}\n{subject.subject_id}"
        draw.multiline_text((_GAP_PX * 2, top + tile // 2), caption, fill=255, font=font, anchor="lm")
        for column in range(len(subject.levels)):
            pixels, _, _ = render_slice(subject, column, config)
            sheet.paste(Image.fromarray(pixels), (label_width + column * (tile + _GAP_PX), top))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, format="PNG", optimize=True)
    return out_png
