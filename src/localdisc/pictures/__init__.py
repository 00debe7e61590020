"""Pictures of tensors (PCA embedding maps, cluster maps) that methods and reports both draw.
Numpy and PIL only; no localdisc imports."""
