"""The shop's rich menu: layout (pure), image rendering (Pillow, Japanese font), deployment to LINE."""
