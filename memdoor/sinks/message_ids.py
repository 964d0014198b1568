"""Stable journal MESSAGE_IDs, one per event: what `journalctl -x` and the catalog key on.

These are part of the interface. Never change or reuse one; a new event gets a new
ID (`systemd-id128 new` makes one) and an entry in
packaging/systemd/memdoor.catalog.
"""

from __future__ import annotations

MESSAGE_IDS: dict[str, str] = {
    "daemon_started": "0b6bbd9ec57b470dba074f0c02c19377",
    "daemon_stopping": "434dddb1ce1247d9bef3636bacbaae2a",
    "config_reloaded": "023953ce2bf3428788e352cf0b339df2",
    "config_invalid": "a49a2e2918aa4b9eb58654d3cc800ad3",
    "target_waiting": "1ac0b40459a846339d359261c1b31146",
    "target_unresolved": "f983f30f19b54adcbc9a6a5b4232215f",
    "target_found": "f92481841e024ca5831954b811727b32",
    "threshold_crossed": "8e38d7fb2f1a4fefab56509407188c9d",
    "snapshot": "2a8aba2615ca456bac112607cf1426ea",
    "back_below": "5c7dcf29f2c849bcbed0463e0c8af151",
    "count_reached": "d3463b23c92b4da2a3f7c2a7115b28bd",
    "target_gone": "39e732764c7a4085b284c0f66a65175e",
    "watcher_failed": "b73efce9ade944aa9dac3d353de8f6c1",
    "sink_failed": "c9f28f4c36024b4986771699e1467ac6",
    "notify_failed": "a7c14f88468a4117ba3bf5d49668e2dd",
    "sample": "5e8ea1ad936b4db1bed0dddfb31e6895",
    "oom_killed": "bb37c87de5bb4dda8d6bff761b4f5839",
    "oom_kill_nearby": "9d540c938b9f49e289c72182108af04b",
    "threshold_fallback": "ac64a589d98240309b61b1c1ee82add6",
}
