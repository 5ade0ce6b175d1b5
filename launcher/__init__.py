"""The pod launcher (``python -m trainer.launch``): rendezvous, rank tables, start the trainers, supervise them.

Modules: ``contract`` (pure: the pod env, paths, exit codes), ``rendezvous`` and ``ranktable`` (pure: meeting on
the shared volume, HCCL rank tables), ``output`` (prefixed lines and log files), ``processes`` (local trainer
processes), ``modes`` (what each launch mode starts), ``supervisor`` (turns what happens into an exit code),
``main`` (the entry point). jobctl imports only the pure ones. None imports MindSpore.
"""
