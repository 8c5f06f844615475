"""``python -m codt_deploy`` = ``codt-cluster``."""

import sys

from codt_deploy.cli import main

sys.exit(main())
