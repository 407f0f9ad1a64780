from collections.abc import Sequence

def mask_columns(
    buf: bytearray, spans: Sequence[tuple[int, int]], ops: Sequence[tuple[int, int]], /
) -> tuple[list[int], list[int]]: ...
def mask_copy_text(
    buf: bytearray,
    spans: Sequence[tuple[int, int]],
    ops: Sequence[tuple[int, int]],
    delimiter: int,
    ncols: int,
    /,
) -> tuple[list[int], list[int]]: ...
