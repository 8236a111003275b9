"""``python -m bus``: the same as the ``bus`` command."""

import sys

from bus.cli import main

sys.exit(main())
