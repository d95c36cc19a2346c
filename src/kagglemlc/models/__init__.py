"""models: building, saving and loading tokenizers and models (adapters, 4-bit, heads), losses, precision, and the
`auto` defaults that depend on them.
"""
