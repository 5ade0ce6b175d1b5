"""The pure contract jobctl, the launcher and the trainer agree on; MindSpore-free, imports nothing of theirs.

One module per concern (docs/INTERFACES.md has the map): ``env`` (pod env, exit codes, in-pod paths),
``layout`` (the job directory), ``names`` (every generated object name), ``lines`` (each line one side writes and
another parses: format/parse pairs), ``progress`` (progress line, status.json), ``metrics`` (metrics records),
``config`` (the train config), ``accelerators``, ``ranktable``, ``rendezvous`` and ``restarts`` (the shared-volume
protocol the launchers meet by and jobctl reads), ``ckpt_names``/``ckpt_files`` (checkpoint names and files),
``files`` (atomic writes), ``imagefolder`` (the dataset's folder layout).
"""
