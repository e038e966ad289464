"""``python -m openhelix_ros.cli VERB ...``, the same as ``openhelix VERB ...``."""

import sys

from openhelix_ros.cli.main import main

sys.exit(main())
