"""The one exception type the data pipeline raises for bad input.

Callers (the CLI, the trainer) catch it to print a one-line message instead of a
traceback; anything else escaping the pipeline is a bug, not a user mistake.
"""

from scaling.errors import UserError


class DataError(UserError):
    """Bad input to the data pipeline: a missing path, an empty corpus, a bad spec."""
