"""Evaluation primitives below training and tasks: segmentation metrics (Dice, HD95, ...), paired
bootstrap statistics, Hungarian matching of clusters to classes. No localdisc imports."""
