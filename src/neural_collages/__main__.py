"""``python -m neural_collages`` runs the ``collage`` command."""

import sys

from .apps.cli.main import main

sys.exit(main())
