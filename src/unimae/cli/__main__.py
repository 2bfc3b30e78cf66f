"""``python -m unimae.cli``: the ``unimae`` command."""

import sys

from unimae.cli import main

sys.exit(main())
