"""core: what every layer uses — the user-error type, the console, atomic writes and locks, the names of every
contract file (`paths`). Imports nothing of kagglemlc.
"""
