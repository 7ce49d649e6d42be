"""``python -m compat [CONSUMER ...]``: see :mod:`compat.harness`."""

import sys

from compat.harness import main

sys.exit(main())
