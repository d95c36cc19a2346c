"""studies: commands that run many experiments to compare settings (`sweep` over a grid, `search` with Optuna),
each cell an ordinary experiment run through the stages.
"""
