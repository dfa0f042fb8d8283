"""Training: the paper's two-phase training, DRAEM's joint training, and the ablation rows between them.

Data flow of one step (both trainers)::

    healthy images (+ foreground)  --synthesis on the device, seeded-->  augmented, masks
    augmented --restoration--> restored;  cat([restored, augmented]) --segmentation--> logits
    loss: restoration loss (restored vs images) and/or focal loss (logits vs masks)

- :class:`TwoPhaseTrainer` / :class:`TwoPhaseConfig`: restoration for long, then segmentation briefly with the
  restoration frozen (Zhang, Deng & Li, SASHIMI 2023).
- :class:`JointTrainer` / :class:`JointConfig`: DRAEM's joint training (Zavrtanik et al., ICCV 2021).
- :func:`table2_rows`, :func:`ablation_row`: every row of the paper's Table 2 as a configuration.
- :func:`retain_freed_memory`: an application's opt-in to let glibc's malloc recycle activation-sized blocks
  (1.08-1.18x faster CPU steps, same results).
- Checkpoints (atomic, ``weights_only`` loadable, bit-exact ``resume``), the evaluation hook, JSON-lines logs
  and ``torch.distributed`` data parallelism come from the shared :class:`Trainer`.
"""

from __future__ import annotations

from .ablation import TABLE2_ROWS, AblationRow, ablation_row, table2_rows
from .allocator import retain_freed_memory
from .batches import fold_slabs
from .checkpoint import atomic_save, load_checkpoint, load_segmenter, save_segmenter
from .config import JointConfig, TrainerConfig, TwoPhaseConfig
from .distributed import init_distributed
from .evaluation import evaluate_segmenter
from .joint import JointTrainer
from .phase import NonFiniteLossError, Phase
from .sampler import SeededBatchSampler
from .trainer import Trainer
from .two_phase import TwoPhaseTrainer

__all__ = [
    "TwoPhaseTrainer",
    "TwoPhaseConfig",
    "JointTrainer",
    "JointConfig",
    "Trainer",
    "TrainerConfig",
    "Phase",
    "NonFiniteLossError",
    "AblationRow",
    "TABLE2_ROWS",
    "table2_rows",
    "ablation_row",
    "atomic_save",
    "load_checkpoint",
    "save_segmenter",
    "load_segmenter",
    "evaluate_segmenter",
    "init_distributed",
    "SeededBatchSampler",
    "fold_slabs",
    "retain_freed_memory",
]
