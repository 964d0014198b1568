"""Whether the OOM killer took a process, decided in this package alone.

kernel_log follows /dev/kmsg (kmsg_reader) and keeps the kill reports by victim;
kill is one kill as memdoor knows it and its record section; witness decides,
for one watched process, whether it was OOM-killed and with what evidence;
nearby tells targets of kills of the processes they do not watch.
"""
