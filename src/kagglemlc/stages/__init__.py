"""stages: one module per command (`kagglemlc <command>` → `stages/<command>.py`); stages do not import each other,
except `run`, which chains them.
"""
