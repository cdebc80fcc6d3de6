"""Identifier shapes shared by the linking routes (validated with pydantic, never by hand)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

# Any opaque ID a shop integration may already use (our script makes 32 random characters).
BROWSER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
BROWSER_ID_RE = re.compile(BROWSER_ID_PATTERN)

BrowserId = Annotated[str, StringConstraints(pattern=BROWSER_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
LineUserId = Annotated[str, StringConstraints(pattern=r"^U[0-9a-f]{32}$")]
PageUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]
ShortValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
