"""``python -m testbed.sigstore``: the test bed as a program (see the package)."""

import sys

from . import main

sys.exit(main())
