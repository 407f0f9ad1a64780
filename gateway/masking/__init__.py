"""Card data detection and masking (issue 5): pure content detectors, no I/O and no protocol code."""

from gateway.masking.detect import Span, find_card_data, find_pans, find_track_data, has_candidate, mask
from gateway.masking.iin import brand_of

__all__ = ["Span", "brand_of", "find_card_data", "find_pans", "find_track_data", "has_candidate", "mask"]
