"""Orbax checkpoints of a group's in-flight runs, between segments."""

from __future__ import annotations

import os
import shutil

__all__ = ["CHECKPOINT_DIR", "Checkpoints"]

CHECKPOINT_DIR = "checkpoints"


class Checkpoints:
    """Orbax checkpoints of one group's in-flight state, under ``DIR/checkpoints/<group>``.

    Only the writing process (process 0) saves and removes; every process restores.
    """

    def __init__(self, out_dir, group_id, writer):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.path = os.path.join(os.path.abspath(out_dir), CHECKPOINT_DIR,
                                 group_id.replace("/", "_"))
        self.writer = writer
        self._mngr = None

    def _manager(self):
        if self._mngr is None:
            ocp = self._ocp
            self._mngr = ocp.CheckpointManager(self.path, options=ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=False, create=True))
        return self._mngr

    def latest(self):
        """The latest saved tree (host arrays), or ``None``."""
        if not os.path.isdir(self.path):
            return None
        step = self._manager().latest_step()
        if step is None:
            return None
        return self._manager().restore(step, args=self._ocp.args.StandardRestore())

    def save(self, seg, tree):
        if self.writer:
            self._manager().save(seg, args=self._ocp.args.StandardSave(tree), force=True)
            self._manager().wait_until_finished()

    def remove(self):
        if self._mngr is not None:
            self._mngr.close()
            self._mngr = None
        if self.writer:
            shutil.rmtree(self.path, ignore_errors=True)
