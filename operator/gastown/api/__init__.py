"""The API: pydantic models of every custom resource's spec and status.

``crds/*.yaml`` are generated from these models (``make crds``).
"""

from .common import API_VERSION, GROUP, VERSION, Condition, set_condition
from .convoy import ConvoySpec, ConvoyStatus
from .kinds import CONVOY, KINDS, MERGEQUEUE, POLECAT, RIG, Kind, kind_named
from .mergequeue import MergeQueueSpec, MergeQueueStatus
from .polecat import PolecatSpec, PolecatStatus
from .rig import RigSpec, RigStatus
from .validation import Invalid, parse_object

__all__ = [
    "API_VERSION", "GROUP", "VERSION", "Condition", "set_condition",
    "ConvoySpec", "ConvoyStatus", "MergeQueueSpec", "MergeQueueStatus",
    "PolecatSpec", "PolecatStatus", "RigSpec", "RigStatus",
    "CONVOY", "KINDS", "MERGEQUEUE", "POLECAT", "RIG", "Kind", "kind_named",
    "Invalid", "parse_object",
]
