"""The merchant dashboard (`/dashboard`): Japanese, server-rendered pages over the admin API.

Sign in with the shop ID and an API key; then the overview (audience counts,
LINE quota, every flow's figures for a period), a page per flow (daily charts,
funnel per step, skips by reason), customers (search, one customer's flows,
deliveries, points and the reminder dry run as LINE would show it) and the
broadcast screen. Every number comes from the admin API's own routes, called
in-process (`dashboard.gateway`). Routes are listed here, composed by `bot.app`.
"""

from __future__ import annotations

from aiohttp import web

from dashboard import auth, broadcasts, customers, flow_page, overview
from dashboard.render import stylesheet
from dashboard.session import signing_key_ctx

ROUTES = [
    ("GET", "/dashboard", overview.overview),
    ("GET", "/dashboard/login", auth.login_form),
    ("POST", "/dashboard/login", auth.login),
    ("POST", "/dashboard/logout", auth.logout),
    ("GET", "/dashboard/static/dashboard.css", stylesheet),
    ("GET", "/dashboard/flows/{flow}", flow_page.flow_page),
    ("GET", "/dashboard/customers", customers.customer_search),
    ("GET", "/dashboard/customers/{line_user_id}", customers.customer_page),
    ("GET", "/dashboard/broadcasts", broadcasts.broadcasts_page),
    ("POST", "/dashboard/broadcasts", broadcasts.send_broadcast),
    ("GET", "/dashboard/broadcasts/{broadcast_id}", broadcasts.broadcast_page),
    ("POST", "/dashboard/broadcasts/{broadcast_id}/cancel", broadcasts.cancel_broadcast),
]


def setup_dashboard(app: web.Application) -> None:
    """Add the dashboard's routes, and the start-up step that loads its cookie-signing key (after the database)."""
    app.cleanup_ctx.append(signing_key_ctx)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
