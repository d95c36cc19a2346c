"""engine: what runs a model — batching, the accelerator, optimiser and schedule, checkpoints, inference, the
training loop, tracking. Knows no model kind.
"""
