"""The gallery's answers from a MetaInsight dataset (`gallery --dataset NAME`), never a listing.

`LabelIndex.query_page` answers the page from SQLite; `DatasetPages.query_page` answers the same
call from the dataset: the query narrowed server-side (`dataset_query.translate`), each file's
labels decided by the same `query.matches` (as `find --dataset` does), DatasetSimpleQuery pages
followed by `NextToken`. Nothing grows with the bucket:

- a request reads pages until it has its `limit` photos, at most `MAX_REQUESTS_PER_PAGE` of them
  (a sparse query answers fewer photos and `more`); the total is known only once the answer ends;
- where the next page starts (the NextToken, and how many files of that page were passed) is kept
  per query and offset in a small LRU (`CURSORS_KEPT`), so the page's "more" (offset = what it
  shows) resumes there instead of reading from the start; an unknown offset reads from the start;
- keys served to the page (the only ones `/thumb` signs) and label names seen are capped.

The label cloud (docs/deploy.md section 9): the pages document `group` as counting files per
*value* of a field (460/106154), and a label in tags mode is a tag *key*
(`autotag:<label>` or `autotag:b64:<base64>`), so the cloud's counts are `count` aggregations,
one per tag key (files carrying the field), for the labels seen in the pages fetched
(`CLOUD_SAMPLE_PAGES` at each generation, then whatever the page's queries read). Metadata mode
keeps every label in one header value: its counts are those of the files fetched.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..dataset_query import key_clause, labels_of, listed_of, tag_keys, translate
from ..metainsight import MetaInsight, count_value
from ..object_labels import Bucket
from ..query import Everything, Query, matches
from .index import PHOTO_SUFFIXES, Page, Photo, is_candidate

MAX_REQUESTS_PER_PAGE = 20  # DatasetSimpleQuery requests one /api/photos answer may cost (2,000 files)
CURSORS_KEPT = 256
KEYS_KEPT = 50_000  # keys the page was given, for /thumb
NAMES_KEPT = 10_000  # label names counted for the cloud
CLOUD_SAMPLE_PAGES = 5
AGGREGATIONS_PER_REQUEST = 50
MAX_ANSWER_BYTES = 900_000  # the photos of one answer, below the 1 MiB a response may hold


def photo_of(file: dict[str, Any], bucket: str, mode: str) -> Photo | None:
    """A dataset file as the gallery shows it, or None when the listing gallery would not show it
    (a folder, an empty or archived object, a non-photo name without labels)."""
    listed = listed_of(file, bucket)
    key, size = listed.key, listed.size
    if not key or not is_candidate(listed):
        return None
    labels = labels_of(file, key, mode)
    if Path(key).suffix.lower() not in PHOTO_SUFFIXES and not labels.labeled:
        return None
    return Photo(key, listed.etag, size, labels.found_in, labels.marker, labels.labels, time.time())


class DatasetPages:
    """What `Gallery` asks of its label source (`query_page`, `has_photo`, `close`), from a dataset."""

    def __init__(self, client: MetaInsight, dataset: str, bucket: Bucket, mode: str) -> None:
        self.client = client
        self.dataset = dataset
        self.bucket = bucket
        self.mode = mode
        self._lock = threading.Lock()
        self._cursors: OrderedDict[tuple[str, int], tuple[str, int]] = OrderedDict()
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._seen: Counter[str] = Counter()  # label names seen in the files fetched (cloud candidates)
        self._meta_counts: Counter[str] = Counter()  # metadata-mode labels, counted over the files fetched
        self._counted: set[str] = set()  # keys whose labels are in the two counters
        self._cloud: list[tuple[str, int]] | None = None
        self._shown: int | None = None

    def reset(self) -> None:
        """A new generation (the poller, the refresh button): forget cursors, counts and the cloud."""
        with self._lock:
            self._cursors.clear()
            self._seen.clear()
            self._meta_counts.clear()
            self._counted.clear()
            self._cloud = None
            self._shown = None

    def close(self) -> None:
        pass

    def has_photo(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    # --- reading -----------------------------------------------------------------------------

    def _pages(self, query: dict[str, Any] | None, token: str) -> Iterator[tuple[str, list[dict[str, Any]], str]]:
        """(the token that asked, its files, the next token) per DatasetSimpleQuery page."""
        while True:
            files, following = self.client.page(self.dataset, query, token)
            yield token, files, following
            if not following:
                return
            token = following

    def _note(self, photo: Photo) -> None:
        with self._lock:
            self._keys[photo.key] = None
            self._keys.move_to_end(photo.key)
            while len(self._keys) > KEYS_KEPT:
                self._keys.popitem(last=False)
            if photo.key in self._counted or len(self._counted) >= KEYS_KEPT:
                return
            self._counted.add(photo.key)
            for name, _ in photo.labels:
                if name in self._seen or len(self._seen) < NAMES_KEPT:
                    self._seen[name] += 1
                    if photo.found_in == "metadata":
                        self._meta_counts[name] += 1

    def query_page(self, query: Query, prefix: str, offset: int, limit: int, cloud_size: int) -> Page:
        """One page of the photos under `prefix` matching `query`, in the dataset's order."""
        server_query = translate(query, self.mode, self.bucket.name, prefix)
        text = str(query)
        with self._lock:
            start = self._cursors.get((text, offset))
        token, passed, skip = (start[0], start[1], 0) if start is not None else ("", 0, offset)
        budget = MAX_REQUESTS_PER_PAGE if start is not None or offset == 0 else None
        photos: list[Photo] = []
        size = 0
        more = False
        resume: tuple[str, int] | None = None
        requests = 0
        for asked, files, following in self._pages(server_query, token):
            requests += 1
            for index in range(passed, len(files)):
                photo = photo_of(files[index], self.bucket.name, self.mode)
                if photo is None or not photo.key.startswith(prefix) or not matches(query, photo.key, photo.labels):
                    continue
                self._note(photo)
                if skip:
                    skip -= 1
                    continue
                if len(photos) >= limit or size >= MAX_ANSWER_BYTES:
                    more, resume = True, (asked, index)  # this match opens the next page
                    break
                photos.append(photo)
                size += len(photo.key.encode()) + 40 * len(photo.labels) + 64
            passed = 0
            if more:
                break
            if following and budget is not None and requests >= budget and skip == 0:
                more, resume = True, (following, 0)
                break
        if resume is not None:
            with self._lock:
                self._cursors[(text, offset + len(photos))] = resume
                while len(self._cursors) > CURSORS_KEPT:
                    self._cursors.popitem(last=False)
        total = offset + len(photos) + (1 if more else 0)
        return Page(total, self._count_shown(prefix), photos, self._labels(prefix, cloud_size), time.time(), more)

    # --- counts ------------------------------------------------------------------------------

    def _count_shown(self, prefix: str) -> int:
        """Files in the dataset under the prefix: one `count` aggregation per generation."""
        with self._lock:
            if self._shown is not None:
                return self._shown
        query = key_clause(self.bucket.name, prefix) if prefix else None
        value = self.client.aggregate(self.dataset, query, "URI", "count").get("Value")
        shown = count_value(value) or 0
        with self._lock:
            self._shown = shown
        return shown

    def _labels(self, prefix: str, cloud_size: int) -> list[tuple[str, int]]:
        with self._lock:
            if self._cloud is not None:
                return self._cloud
        self._sample(prefix)  # not only the files the first query happened to read
        with self._lock:
            names = [name for name, _ in self._seen.most_common(cloud_size)]
            meta = dict(self._meta_counts)
        counts = Counter({name: meta.get(name, 0) for name in names})
        if self.mode != "metadata":
            for name, count in self._tag_counts(names, prefix).items():
                counts[name] += count
        cloud = sorted(((n, c) for n, c in counts.items() if c > 0), key=lambda item: (-item[1], item[0]))
        with self._lock:
            self._cloud = cloud
        return cloud

    def _sample(self, prefix: str) -> None:
        """The labels of the first pages of everything under the prefix: the cloud's candidates."""
        server_query = translate(Everything(), self.mode, self.bucket.name, prefix)
        for fetched, (_, files, _) in enumerate(self._pages(server_query, ""), start=1):
            for file in files:
                photo = photo_of(file, self.bucket.name, self.mode)
                if photo is not None and photo.key.startswith(prefix):
                    self._note(photo)
            if fetched >= CLOUD_SAMPLE_PAGES:
                return

    def _tag_counts(self, names: list[str], prefix: str) -> Counter[str]:
        """Files carrying each label's tag, in either form it may be written in: `count` aggregations
        on `COSTagging.<key>`, a batch per request."""
        fields: list[tuple[str, str]] = []
        for name in names:
            keys = set(tag_keys(name))
            fields.extend((name, f"COSTagging.{key}") for key in sorted(keys))
        query = key_clause(self.bucket.name, prefix) if prefix else None
        counts: Counter[str] = Counter()
        for at in range(0, len(fields), AGGREGATIONS_PER_REQUEST):
            batch = fields[at : at + AGGREGATIONS_PER_REQUEST]
            answers = self.client.aggregate_many(self.dataset, query, [(f, "count") for _, f in batch])
            by_field = {str(a.get("Field")): a for a in answers}
            for name, field in batch:
                counts[name] += count_value(by_field.get(field, {}).get("Value", 0)) or 0
        return counts
