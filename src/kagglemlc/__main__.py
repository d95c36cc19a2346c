"""`python -m kagglemlc ...`, which is what `accelerate launch -m kagglemlc` and `torchrun -m kagglemlc` run."""

from kagglemlc.cli import main

main()
