"""Resource limits every reader and decoder checks before it allocates (a leaf module).

Read at call time (``limits.MAX_PIXELS``), so an application may lower or raise a limit for its
own process; every file reader and decoder consults the same value.
"""

#: Largest image (width × height, per decoded output) any reader or decoder accepts: 64 Mpixel,
#: the order of Pillow's decompression-bomb limit (89 Mpixel), and ~0.8 GB as float32 RGB.
MAX_PIXELS = 2**26
