"""Real processes and cgroups to make memory behave, for the tests, the benchmarks and the demo.

- :mod:`memdoor.lab.workload`: a process that allocates, maps and opens sockets at
  chosen rates, and says what it holds (run as ``python -m memdoor.lab.workload``);
  :mod:`memdoor.lab.workload_parent` starts, watches and reaps it.
- :mod:`memdoor.lab.memory_cgroup`: a temporary memory cgroup (v1 or v2) with a limit
  the kernel enforces, always removed.
- :mod:`memdoor.lab.daemon_process`: the memdoor daemon run as a child, its records
  read back.
- :mod:`memdoor.lab.private_journald`: a systemd-journald of our own, in a private
  mount namespace, leaving the host's journal alone.
- :mod:`memdoor.lab.hostile`: a process whose name, argv, mapped files, exe and
  cgroup are bytes chosen to break whatever reports on it.

They live in the package, not beside the tests, because more than the tests need them:
the benchmarks anyone can run make real OOM kills and real journals with them, without
the test suite on the path, and ``memdoor demo`` is meant to use the same workload and
temporary cgroup for a real OOM kill. So nothing here depends on a test framework: a
host that cannot do something raises :class:`memdoor.lab.unavailable.LabUnavailable`,
and the tests turn that into a skip.
"""
