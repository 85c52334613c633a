"""LocalLoom's benchmark suite: ``python -m bench`` (``make bench``) writes docs/PERFORMANCE.md.

It measures LocalLoom against llama.cpp's own programs (built from the same vendored source)
and llama-cpp-python's server, side by side in one run; see bench/__main__.py.
"""
