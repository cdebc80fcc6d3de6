"""The web process: app factory, settings, webhook route, event router, LINE client wrapper.

It holds no business rules: handlers call domain functions and reply.
"""
