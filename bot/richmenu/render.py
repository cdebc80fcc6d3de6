"""The rich menu image: one rounded button per area in the shop's colours, Japanese labels centred.

Output is a PNG well under LINE's 1 MB limit (flat colours compress well); the
size is checked anyway, because LINE refuses the upload otherwise.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from bot.richmenu.font import japanese_font_path
from bot.richmenu.layout import Area, layout
from storage.shop_settings import RichMenuSettings

MAX_IMAGE_BYTES = 1024 * 1024
MARGIN_RATIO = 0.04  # gap around each button, relative to the shorter side of its area
TEXT_WIDTH_RATIO = 0.84


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(japanese_font_path()), size)


def _fitted_font(draw: ImageDraw.ImageDraw, text: str, max_width: float, max_height: float) -> ImageFont.FreeTypeFont:
    """The largest font (up to a comfortable size) whose text fits the button."""
    size = int(min(max_height * 0.32, 140))
    while size > 12:
        font = _font(size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= max_width and bottom - top <= max_height * 0.6:
            return font
        size -= 4
    return _font(12)


def _draw_area(draw: ImageDraw.ImageDraw, area: Area, settings: RichMenuSettings) -> None:
    b = area.bounds
    margin = int(min(b.width, b.height) * MARGIN_RATIO)
    box = (b.x + margin, b.y + margin, b.x + b.width - margin - 1, b.y + b.height - margin - 1)
    draw.rounded_rectangle(box, radius=int(min(b.width, b.height) * 0.08), fill=settings.button_color)
    inner_width = (box[2] - box[0]) * TEXT_WIDTH_RATIO
    font = _fitted_font(draw, area.button.label, inner_width, box[3] - box[1])
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    draw.text(centre, area.button.label, font=font, fill=settings.text_color, anchor="mm")


def render(settings: RichMenuSettings) -> bytes:
    """PNG bytes of the menu image, exactly the size the rich menu object declares."""
    (width, height), areas = layout(settings)
    image = Image.new("RGB", (width, height), settings.background_color)
    draw = ImageDraw.Draw(image)
    for area in areas:
        _draw_area(draw, area, settings)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    data = out.getvalue()
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"rendered rich menu image is {len(data)} bytes, over LINE's 1 MB limit")
    return data
