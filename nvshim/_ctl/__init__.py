"""``nvshim-ctl``: tooling around the nvshim runtime."""
