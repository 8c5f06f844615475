"""The label-free method of ``--recipe cpu``: what it does to your target clips, in one place.

The paper's CoDT, trained on a CPU budget, clusters a new domain worse than spectral clustering
of its raw poses does. The recipe keeps the paper's training loop (``training.engine``) and adds
three label-free steps around it, each computed from the unlabelled target poses or the
network's own features, never from a target label (docs/METHOD.md §15):

1. **Anchors** (``labelfree.anchors``, at the start of training). The target train clips are
   partitioned once by spectral clustering of their 10-nearest-neighbour graph under dynamic time
   warping (:func:`views.raw_pose_graph` ``"dtw"``, :func:`partition.anchor_partition`). From
   epoch 1 both cluster heads learn that partition by cross-entropy beside the paper's losses
   (``loss.anchor``), so no k-means initialisation is needed between the stages
   (:func:`hooks.anchor_labels`).
2. **Precise BatchNorm** (``labelfree.recalibrate_bn``): before the stage-2 start, each
   evaluation and the final checkpoint, the students' BatchNorm statistics are re-estimated on
   the clean target clips (:func:`hooks.recalibrate_batchnorm`).
3. **Consensus refit** (``labelfree.refit``, after the last epoch). The exported head is refitted
   to the consensus of spectral partitions of two graphs of the target train clips: the trained
   B1 features' kNN graph and the raw poses' DTW graph with velocities. Where the features agree
   with the raw poses (at least half of their kNN links are raw-graph links,
   :func:`partition.graph_agreement`) they lead: each graph alone and joined at three feature
   weights, 15 partitions; where they do not, the raw graph leads: alone and with the features
   at a quarter weight, 6 partitions (:func:`partition.refit_members`,
   :func:`partition.consensus_labels`). Each head is fitted to the consensus on the frozen
   features (:func:`hooks.refit_heads`, :func:`hooks.fit_head`).

Modules: :mod:`training.labelfree.views` (raw-pose views, DTW, kNN graphs; numpy),
:mod:`training.labelfree.partition` (spectral, consensus and the two partitions; numpy),
:mod:`training.labelfree.hooks` (the torch side, called by ``training.run.train``).
``python -m training.labelfree RUN --out NEW`` refits a finished run's heads into a new run folder.
"""
