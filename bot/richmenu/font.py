"""The Japanese font for rich menu labels: IPA Gothic, installed from Debian by `make`.

Pillow's default font has no Japanese glyphs (labels would render as boxes),
so a missing font is a clear error, never a silent fallback.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

KNOWN_PATHS = (
    Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"),
    Path("/usr/share/fonts/truetype/fonts-japanese-gothic.ttf"),
    Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"),
    Path("/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)


class FontNotFound(RuntimeError):
    """No Japanese font on this machine."""


@functools.cache
def japanese_font_path() -> Path:
    """The first Japanese font found: known Debian paths, then fontconfig."""
    for path in KNOWN_PATHS:
        if path.is_file():
            return path
    if shutil.which("fc-match"):
        try:
            found = subprocess.run(
                ["fc-match", "-f", "%{file}", "IPAGothic:lang=ja"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            found = ""
        if found and Path(found).is_file() and "ipa" in found.lower():
            return Path(found)
    raise FontNotFound(
        "no Japanese font for rich menu images: install Debian's fonts-ipafont-gothic (`make run` does) "
        f"or place IPA Gothic at {KNOWN_PATHS[0]}"
    )
