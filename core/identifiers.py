"""One documented pattern per kind of identifier, for bodies and paths alike.

| kind | pattern | why |
| --- | --- | --- |
| shop | `shp_` + 16 hex | we make them |
| merchant IDs (product, variant, order, customer, transaction, sequence, segment, broadcast, event…) | 1–128 of `A-Z a-z 0-9 _ . : @ -`, starting with a letter or digit | what shop platforms use (`SKU-1`, `o:123`, `a@b`), but never `.`/`..` or a leading `-` that reads as a path step or an option |
| browser, browser event | 1–128 of `A-Z a-z 0-9 _ . : -`, not starting with `.` | the script makes 22 URL-safe base64 characters (may start with `-` or `_`) |
| LINE user | `U` + 32 hex | LINE's format |

A percent-encoded path segment (`%2e%2e`) is decoded before it is checked, so it
is refused like the plain one. Storage keys escape these IDs (`storage.keys`).
"""

from __future__ import annotations

import re

SHOP_ID_PATTERN = r"^shp_[0-9a-f]{16}$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
IDENTIFIER_RULE = "1-128 of A-Z a-z 0-9 _ . : @ -, starting with a letter or digit"
BROWSER_ID_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9_.:\-]{0,127}$"
LINE_USER_ID_PATTERN = r"^U[0-9a-f]{32}$"

IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
