"""The one exception parsers raise, so collectors can catch exactly it and nothing else."""


class ParseError(ValueError):
    """Text from /proc or a cgroup file did not have the shape the kernel documents.

    Parsers raise it instead of guessing, so a collector can record the file as
    malformed rather than report a plausible wrong figure.
    """
