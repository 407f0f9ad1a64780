from collections.abc import Sequence

def mask_columns(
    buf: bytearray, spans: Sequence[tuple[int, int]], ops: Sequence[tuple[int, int]], /
) -> tuple[list[int], list[int]]: ...
