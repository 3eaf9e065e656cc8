"""``python -m robustloss`` (e.g. under ``torchrun``): the ``robustloss`` command."""

import sys

from robustloss.cli import main

sys.exit(main())
