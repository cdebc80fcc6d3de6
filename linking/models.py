"""Identifier shapes shared by the linking routes (validated with pydantic, never by hand)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

from core.identifiers import BROWSER_ID_PATTERN, LINE_USER_ID_PATTERN

# Any opaque ID a shop integration may already use (our script makes 22 URL-safe characters).
BROWSER_ID_RE = re.compile(BROWSER_ID_PATTERN)

BrowserId = Annotated[str, StringConstraints(pattern=BROWSER_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(pattern=BROWSER_ID_PATTERN)]
LineUserId = Annotated[str, StringConstraints(pattern=LINE_USER_ID_PATTERN)]
PageUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]
ShortValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
