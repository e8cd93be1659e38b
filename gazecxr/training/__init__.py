"""Training: the shared engine, the stage tasks and the stage runners."""
