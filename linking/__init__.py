"""Linking LINE users to browsers, and browser event tracking (PRODUCT.md §2).

Routes: `GET /t/track.js` (the script), `POST /t/{shop_id}/events` (events),
`POST /t/{shop_id}/link-token` (a browser's proof for the link pages),
`GET /l/{shop_id}` (LINE Login start), `GET /l/{shop_id}/callback`,
`GET /l/{shop_id}/code` (chat code page). Every link method ends in
`linking.links.link_browser`. This package records identity and browsing;
it never sends marketing messages.
"""

from __future__ import annotations

from aiohttp import web


def setup_linking(app: web.Application) -> None:
    from linking.chat_code import setup_chat_code
    from linking.link_token import setup_link_token
    from linking.login import setup_login
    from linking.script import setup_script
    from linking.tracking import setup_tracking

    setup_script(app)
    setup_tracking(app)
    setup_link_token(app)
    setup_login(app)
    setup_chat_code(app)
