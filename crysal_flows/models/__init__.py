"""The models layer: MACE models, their checkpoint format and files, and the ensemble.

- :mod:`.mace`: building a MACE model from its hyper-parameters, neighbour graphs, torch settings;
- :mod:`.checkpoint`: the checkpoint format (torch bytes, base64 in the store, SHA-256 checked)
  and member files on disk (``crysal models``, ``training.init_models``);
- :mod:`.ensemble`: the ensemble of members evaluated together, and loading it from a document.

``mace`` is imported before ``e3nn`` (e3nn fails to load its constants under torch>=2.6
otherwise), which importing this package guarantees.
"""

import mace  # noqa: F401  (must precede e3nn)
