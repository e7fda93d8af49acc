"""Submit the search of examples/si16.yaml to the FireWorks LaunchPad.

Usage: python workflows/submit_si16.py [LAUNCHPAD_FILE] (the same as: crysal submit
examples/si16.yaml [-l LAUNCHPAD_FILE]). Edit the configuration below, or copy the YAML file and
change it, to search another system.
"""

import sys
from pathlib import Path

from crysal_flows.config import load_config
from crysal_flows.settings import SETTINGS
from crysal_flows.submit import submit

config = load_config(Path(__file__).resolve().parents[1] / "examples" / "si16.yaml")
# Worker categories are machine settings (CRYSAL_WORKERS__ML=a100, or workers: in ~/.crysal.yaml);
# e.g. route the ML jobs to a worker category named "a100" instead of "gpu":
workers = SETTINGS.workers  # .model_copy(update={"ml": "a100"})
print(submit(config, launchpad=sys.argv[1] if len(sys.argv) > 1 else None, workers=workers))
