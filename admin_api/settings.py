"""Admin routes for the typed settings sections: `GET/PUT /settings/{section}` for every section.

One route pair is declared per section (not one `{section}` route) so that the
OpenAPI document carries each section's real schema. GET answers the effective
settings (defaults filled in); PUT replaces the section and answers the same.
"""

from __future__ import annotations

from typing import Any

from admin_api.registry import SHOP_PATH, AdminApi, Call
from storage.shop_settings import SECTIONS, SettingsSection, ShopSettingsRepository

routes = AdminApi()  # composed with the other modules' routes in `admin_api.setup_admin_api`


def _declare(section: str, model: type[SettingsSection]) -> None:
    path = f"{SHOP_PATH}/settings/{section}"

    async def read(call: Call[None, None]) -> SettingsSection:
        return await ShopSettingsRepository(call.db).get(call.current_shop.shop_id, model)

    async def replace(call: Call[Any, None]) -> SettingsSection:
        settings: SettingsSection = call.body
        await ShopSettingsRepository(call.db).put(call.current_shop.shop_id, settings, call.now())
        return settings

    read.__name__ = f"get_{section}_settings"
    replace.__name__ = f"put_{section}_settings"
    routes.route("GET", path, summary=f"Read the effective {section} settings (defaults filled in)",
              response=model, tag="settings")(read)
    routes.route("PUT", path, summary=f"Replace the {section} settings (omitted fields take their defaults)",
              body=model, response=model, tag="settings")(replace)


for _section, _model in SECTIONS.items():
    _declare(_section, _model)
