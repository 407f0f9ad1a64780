"""Card data detection and masking (issue 5): pure content detectors, no I/O and no protocol code."""

from gateway.masking.detect import (
    Masked,
    Span,
    find_card_data,
    find_pans,
    find_track_data,
    has_candidate,
    mask,
    mask_card_data,
)
from gateway.masking.iin import brand_of

__all__ = [
    "Masked",
    "Span",
    "brand_of",
    "find_card_data",
    "find_pans",
    "find_track_data",
    "has_candidate",
    "mask",
    "mask_card_data",
]
