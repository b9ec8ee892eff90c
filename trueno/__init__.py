"""trueno: fast numeric code on whatever hardware it lands on, proved by its own traces."""

from trueno import trace
from trueno.errors import TruenoError

__version__ = "0.1.0"
__all__ = ["TruenoError", "trace", "__version__"]
