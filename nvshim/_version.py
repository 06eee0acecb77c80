__version__ = "0.1.0"

#: The name nvshim is published and installed under (``pip install nvshim-runtime``,
#: the Debian package ``nvshim-runtime``). Not "nvshim": that name belongs to an
#: unrelated project on PyPI. The import package, the commands and the
#: entry-point group are still called ``nvshim``.
DISTRIBUTION = "nvshim-runtime"
