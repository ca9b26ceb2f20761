"""Lets `python -m external_scaler` run the scaler."""

import sys

from .cli import main

sys.exit(main())
