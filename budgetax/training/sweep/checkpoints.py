"""Orbax checkpoints of a group's in-flight runs, between segments, verified before use.

Every process takes part, as orbax intends for multi-host: each writes the shards
of the (run-sharded) arrays it holds, and a restore reads into the abstract,
sharded state. Each saved step gets a record written atomically after the save
completes: the checkpoint's *identity* (a digest of the sweep's task and settings,
the group, its run ids and the step) and the SHA-256 of every file orbax wrote. A
checkpoint is restored only if its record is there, names this sweep's group and
step, and every checksum matches; otherwise it is discarded with a warning and the
group is trained again from its start: a damaged, half-written or foreign
checkpoint costs time, never a wrong result.

Before a save, the free space of the checkpoint's file system is checked against
the state's size: a full disk is an ``OSError`` (``ENOSPC``) naming the path and the
space needed, raised before orbax writes anything.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings

from budgetax._io import atomic_write_json
from budgetax.training.core import barrier

__all__ = ["CHECKPOINT_DIR", "Checkpoints", "CheckpointWarning"]

CHECKPOINT_DIR = "checkpoints"
TMP_MARK = ".orbax-checkpoint-tmp"  # in the name of a save orbax has not finalised


class CheckpointWarning(UserWarning):
    """A checkpoint failed verification and was discarded (its group is trained again)."""


def _digests(root: str) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(chunk)
            out[os.path.relpath(path, root)] = h.hexdigest()
    return out


class Checkpoints:
    """Orbax checkpoints of one group's in-flight state, under ``DIR/checkpoints/<group>``.

    ``identity``: what, besides the group id and the step, a checkpoint must have been
    made for to be restored (e.g. a digest of the sweep and the group's run ids).

    Every process saves and restores (its own shards); the writing process (process
    0) writes the checksum file and removes discarded or finished checkpoints.
    """

    def __init__(self, out_dir, group_id, writer, identity: dict | None = None):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.path = os.path.join(os.path.abspath(out_dir), CHECKPOINT_DIR,
                                 group_id.replace("/", "_"))
        self.writer = writer
        self.identity = {"group": group_id, **(identity or {})}
        self._mngr = None

    def _manager(self):
        if self._mngr is None:
            ocp = self._ocp
            self._mngr = ocp.CheckpointManager(
                self.path, item_handlers=ocp.StandardCheckpointHandler(),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, enable_async_checkpointing=False, create=True))
        return self._mngr

    def _sums(self, step: int) -> str:
        return os.path.join(self.path, f"{step}.sha256.json")

    def _problem(self, step: int) -> str | None:
        """Why checkpoint ``step`` cannot be trusted, or ``None``."""
        sums = self._sums(step)
        if not os.path.exists(sums):
            return "it has no checksum file (written after a complete save)"
        try:
            with open(sums, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as err:
            return f"its checksum file is unreadable ({err})"
        if not isinstance(record, dict) or "identity" not in record or "files" not in record:
            return "its checksum file records no identity (written by an older budgetax)"
        mine = {**self.identity, "step": step}
        if record["identity"] != mine:
            theirs = record["identity"] if isinstance(record["identity"], dict) else {}
            what = [k for k in mine if theirs.get(k) != mine[k]] or ["its record"]
            return (f"it belongs to another sweep or group (its {', '.join(what)} "
                    f"differ{'s' if len(what) == 1 else ''} from this one's)")
        want = record["files"]
        got = _digests(os.path.join(self.path, str(step)))
        if got != want:
            bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
            return f"{len(bad)} file(s) differ from their checksums (e.g. {bad[0]})"
        return None

    def latest(self, target):
        """The latest saved step and tree if it verifies, else ``None`` (discarded).

        ``target(step, metadata)`` returns the abstract tree to restore into (shapes,
        dtypes, shardings), or ``None`` when the checkpoint does not fit (planned for
        another device count): it is then discarded.
        """
        if not os.path.isdir(self.path):
            return None
        self._remove_unfinished()
        try:
            step = self._manager().latest_step()
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint folder
            return self._discard(None, f"orbax cannot list it ({type(err).__name__}: {err})")
        if step is None:
            return None
        problem = self._problem(step)
        if problem is not None:
            return self._discard(step, problem)
        try:
            abstract = target(step, self._manager().item_metadata(step).tree)
            if abstract is None:
                return self._discard(step, "it does not fit the sweep's plan (made for another "
                                           "number of devices or by another version)")
            tree = self._manager().restore(step, args=self._ocp.args.StandardRestore(abstract))
        except Exception as err:  # noqa: BLE001 - verified yet unreadable: never used
            return self._discard(step, f"orbax cannot restore it ({type(err).__name__}: {err})")
        return step, tree

    def _remove_unfinished(self):
        """Removes the temporary folders of saves a kill cut short (never a checkpoint).

        Orbax would remove such a folder itself when it saves that step again, with an
        absl warning ("Attempted to create temporary directory ... Removing existing
        directory since it is not finalized") that is no news after a kill.
        """
        if self.writer:
            for name in os.listdir(self.path):
                if TMP_MARK in name:
                    shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)
        barrier(f"budgetax-checkpoint-unfinished-{self.path}")

    def _discard(self, step, why: str):
        where = self.path if step is None else os.path.join(self.path, str(step))
        if self.writer:
            warnings.warn(f"discarding checkpoint {where}: {why}; its runs are trained again "
                          f"from the start", CheckpointWarning, stacklevel=3)
        barrier(f"budgetax-checkpoint-discard-{self.path}")  # every process has read it
        self.remove()
        return None

    def _check_space(self, tree) -> None:
        """Raises ``OSError(ENOSPC)`` when the file system cannot hold a checkpoint of ``tree``
        (its arrays, and a margin for orbax's metadata)."""
        import jax

        need = int(1.1 * sum(int(a.nbytes) for a in jax.tree.leaves(tree))) + (1 << 20)
        where = self.path
        while not os.path.isdir(where):
            where = os.path.dirname(where)
        free = shutil.disk_usage(where).free
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device for a checkpoint (it needs "
                                        f"about {need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB "
                                        f"free)", self.path)

    def save(self, seg, tree):
        """Saves ``tree`` (run-sharded arrays) as step ``seg``; every process calls it."""
        if self.writer:
            self._check_space(tree)
        try:
            self._manager().save(seg, args=self._ocp.args.StandardSave(tree), force=True)
            self._manager().wait_until_finished()
        except ValueError as err:  # what orbax (TensorStore) raises for ENOSPC
            if "RESOURCE_EXHAUSTED" not in str(err) and "No space left" not in str(err):
                raise
            raise OSError(errno.ENOSPC, "No space left on device while writing a checkpoint",
                          self.path) from None
        if self.writer:
            atomic_write_json(self._sums(seg), {
                "identity": {**self.identity, "step": seg},
                "files": _digests(os.path.join(self.path, str(seg)))})
            for name in os.listdir(self.path):  # checksums of steps orbax has removed
                if name.endswith(".sha256.json") and name != os.path.basename(self._sums(seg)):
                    os.remove(os.path.join(self.path, name))
        barrier(f"budgetax-checkpoint-{self.path}-{seg}")

    def remove(self):
        if self._mngr is not None:
            self._mngr.close()
            self._mngr = None
        if self.writer:
            shutil.rmtree(self.path, ignore_errors=True)
        barrier(f"budgetax-checkpoint-removed-{self.path}")
