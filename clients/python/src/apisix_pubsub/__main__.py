"""`python -m apisix_pubsub`: see `apisix_pubsub.cli`."""

import sys

from .cli import main

sys.exit(main())
