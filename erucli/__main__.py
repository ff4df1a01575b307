"""`python -m erucli ...`"""

import sys

from erucli.main import main

sys.exit(main())
