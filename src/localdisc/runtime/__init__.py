"""Runtime services below the methods and the training loop: where outputs may go and how they are written."""
