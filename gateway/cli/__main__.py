"""`python -m gateway.cli ...` is `cemesh ...`."""

import sys

from gateway.cli.commands import main

sys.exit(main())
