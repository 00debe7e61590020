"""Training: run folders and checkpoints, the pretraining loop, supervised fine-tuning."""
