"""Deprecated location: self-training moved to :mod:`samprompt.classifiers.selftrain` (issue 15).

Re-exports it for old imports; new code imports ``samprompt.classifiers.selftrain``.
"""

from __future__ import annotations

from samprompt.classifiers.selftrain import (
    SelfTrainNet,
    agreement_from_net,
    confident,
    load_selftrain_net,
    make_pseudo_masks,
    net_box,
    predict_map,
    save_selftrain_net,
    self_train,
    train_selftrain_net,
)

__all__ = [
    "SelfTrainNet",
    "agreement_from_net",
    "confident",
    "load_selftrain_net",
    "make_pseudo_masks",
    "net_box",
    "predict_map",
    "save_selftrain_net",
    "self_train",
    "train_selftrain_net",
]
