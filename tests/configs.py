"""Small search configurations shared by the tests (each runs in seconds to minutes here)."""

DIAMOND = {"label": "diamond", "bulk": {"name": "Si", "crystalstructure": "diamond", "a": 5.43}}

TINY = {
    "name": "tiny",
    "composition": "Si8",
    "seed": 1,
    "pool": {"size": 8},
    "selection": {"n_labels": 4, "n_labels_first": 8},
    "training": {"n_members": 2, "epochs": 8, "warm_start_epochs": 4, "min_steps": 0},
    "relaxation": {"max_steps": 30, "n_shards": 2},
    "analysis": {"min_cycles": 2, "max_cycles": 3},
    "validation": {"n_structures": 2, "max_steps": 50},
    "references": [DIAMOND],
}

# Small, but trained enough that the search ends by its criterion (a few minutes here).
CONVERGING = {
    "name": "converging",
    "composition": "Si8",
    "seed": 1,
    "pool": {"size": 12},
    "selection": {"n_labels": 6, "n_labels_first": 12},
    "training": {"n_members": 2, "epochs": 1, "warm_start_epochs": 1, "min_steps": 600},
    "relaxation": {"max_steps": 60, "patience": 30, "n_shards": 2},
    "analysis": {
        "min_cycles": 2,
        "max_cycles": 9,
        "n_top_clusters": 3,
        "energy_tolerance": 0.03,
        # 1 ueV/atom: the energies' rule cannot stop this search, so the held rule must; at 50
        # meV/atom both met in the same cycle with one release set of the dependencies and not
        # with another, whose run was otherwise the same
        "max_prediction_error": 1e-6,
    },
    "validation": {"n_structures": 2, "max_steps": 100},
    "references": [
        {
            "label": "diamond",
            "bulk": {"name": "Si", "crystalstructure": "diamond", "a": 5.43, "cubic": True},
        }
    ],
}


# Through FireWorks and SLURM: two cycles, 6 + 3 labels, one validation relaxation.
TINY_FW = {
    "name": "tiny-fw",
    "composition": "Si8",
    "seed": 1,
    "pool": {"size": 8},
    "selection": {"n_labels": 3, "n_labels_first": 6},
    "training": {"n_members": 2, "epochs": 6, "warm_start_epochs": 3, "min_steps": 0},
    "relaxation": {"max_steps": 20, "n_shards": 1},
    "analysis": {"min_cycles": 2, "max_cycles": 2},
    "validation": {"n_structures": 1, "max_steps": 30},
    "references": [DIAMOND],
}


# Three members, two shards, three validation relaxations: room for one of each to fail.
FAULTY = {
    "name": "faulty",
    "composition": "Si8",
    "seed": 1,
    "pool": {"size": 8},
    "selection": {"n_labels": 4, "n_labels_first": 8},
    "training": {"n_members": 3, "epochs": 8, "warm_start_epochs": 4, "min_steps": 0},
    "relaxation": {"max_steps": 30, "n_shards": 2},
    "analysis": {"min_cycles": 2, "max_cycles": 2},
    "validation": {"n_structures": 3, "max_steps": 50},
    "references": [DIAMOND],
}
