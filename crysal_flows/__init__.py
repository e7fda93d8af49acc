"""crysal_flows: crystal structure search with active learning (CrysAL), as jobflow flows.

CrysAL = **crys**tal structure search with **a**ctive **l**earning.
"""

import os as _os
import warnings as _warnings

# e3nn loads its constants with torch.load; torch>=2.6 refuses that unless told otherwise.
_os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
_warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)
