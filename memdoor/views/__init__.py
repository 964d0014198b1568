"""What a person reads: records shown one line each, the kills, a kill's post-mortem.

Everything here takes record dicts (the JSON memdoor writes) and returns text,
so it works the same on records from the journal, a file or a running daemon.
"""
