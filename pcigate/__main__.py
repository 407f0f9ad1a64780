"""``python -m pcigate``: the same CLI as the ``pcigate`` script (the dev stack starts its gateway so)."""

import sys

from pcigate.cli import main

sys.exit(main())
