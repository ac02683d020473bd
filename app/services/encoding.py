"""Text datasets: the worker encodes validated text pairs with the dataset's teacher (a translation
dataset: each text by its teacher and its target teacher; a multi-teacher dataset: each target by
every target teacher, side by side), stores the embedding pairs, marks the dataset ready, and
releases the jobs that waited for it."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

from app.db import session_scope
from app.jobs import lifecycle
from app.jobs.states import DatasetStatus
from app.models import Dataset, teacher_names
from app.settings import Settings
from app.storage import get_storage

log = logging.getLogger("cube.worker")


def encode_dataset(settings: Settings, dataset_id: str, enqueue: Callable[..., None]) -> str:
    storage = get_storage(settings)
    with session_scope(settings.database) as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or dataset.status != DatasetStatus.VALIDATING:
            return "skipped"  # a duplicate message, or deleted meanwhile
        source_key, fmt, teacher_name = dataset.storage_key, dataset.format, dataset.teacher
        targets = teacher_names(dataset.target_teacher)
    pairs_key = f"datasets/{dataset_id}/pairs.npz"
    try:
        from cube.encoding import encode_text_pairs
        from cube.pairs import save_pairs_npz
        from cube.teachers import get_teacher
        from cube.textpairs import load_text_pairs

        with storage.workspace(f"encode-{dataset_id}") as workspace:
            source = storage.stage(source_key, workspace)
            if len(targets) == 1:
                from cube.translation import encode_translation, load_translation_texts

                items = load_translation_texts(source, fmt=fmt, min_texts=settings.min_pairs)
            else:
                text_pairs = load_text_pairs(source, fmt=fmt, min_pairs=settings.min_pairs)
        if len(targets) == 1:
            data = encode_translation(items, get_teacher(teacher_name), get_teacher(targets[0]), settings.teacher_cache,
                                      min_pairs=settings.min_pairs)
        elif targets:  # multi-teacher: the targets of every teacher side by side, one head each
            from cube.multiteacher import encode_multi_teacher

            data, _ = encode_multi_teacher(text_pairs, get_teacher(teacher_name), [get_teacher(t) for t in targets],
                                           settings.teacher_cache)
        else:
            data = encode_text_pairs(text_pairs, get_teacher(teacher_name), settings.teacher_cache)
        with tempfile.NamedTemporaryFile(dir=storage.temp_dir(), suffix=".npz", delete=False) as tmp:
            save_pairs_npz(tmp.name, data)
        storage.put_file(Path(tmp.name), pairs_key)
    except Exception as exc:
        log.exception("encoding dataset %s failed", dataset_id)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        with session_scope(settings.database) as session:
            lifecycle.dataset_failed(session.get(Dataset, dataset_id), f"encoding failed: {message}")
            session.commit()
            lifecycle.release_waiting(session, enqueue, dataset_id)
        return "failed"
    with session_scope(settings.database) as session:
        lifecycle.dataset_encoded(session.get(Dataset, dataset_id), pairs_key=pairs_key, dim_in=data.dim_in,
                                  dim_out=data.dim_out, num_pairs=len(data))
        session.commit()
        released = lifecycle.release_waiting(session, enqueue, dataset_id)
    log.info("dataset %s encoded with %s; released %d waiting job(s)", dataset_id, teacher_name, len(released))
    return "ready"
