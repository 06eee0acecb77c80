"""``python -m nvshim``: the runtime command."""

import sys

from nvshim._cli import main

sys.exit(main())
