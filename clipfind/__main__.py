"""``python -m clipfind``: the same as the ``clipfind`` command."""

import sys

from clipfind.api.cli import main

sys.exit(main())
