"""Held-out query sets: deterministic, stratified by domain, with stable ids.

From each domain, the ``per_domain`` eligible documents (at least ``min_bytes``
of UTF-8) with the smallest keyed hash ``blake2b(seed, doc_id)`` are drawn. The
draw therefore depends only on the seed and on which documents exist -- not on
file order -- and adding documents to a domain changes its draw only where a new
document outranks a chosen one. Memory stays at ``per_domain`` documents per
domain however large the input.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
from dataclasses import dataclass

from hullft.config import QueryConfig
from hullft.data.readers import Document, ReadStats, iter_documents, resolve_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One held-out query."""

    query_id: str
    """``<domain-slug>-<12 hex>``, derived from the document id (stable across runs)."""
    domain: str
    text: str
    """The document cut to ``max_bytes`` UTF-8 bytes at a character boundary."""
    doc_id: str


def query_id(domain: str, doc_id: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", domain.lower()).strip("-") or "domain"
    return f"{slug}-{hashlib.blake2b(doc_id.encode(), digest_size=6).hexdigest()}"


def _rank(seed: int, doc_id: str) -> bytes:
    key = seed.to_bytes(8, "little", signed=True)
    return hashlib.blake2b(doc_id.encode(), key=key, digest_size=16).digest()


def cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def load_queries(cfg: QueryConfig, *, max_doc_bytes: int = 10_000_000) -> list[Query]:
    """The query set of ``cfg``, ordered by domain then draw rank.

    Raises ``ValueError`` when a requested domain (or every domain) has no eligible
    document; a domain with fewer than ``per_domain`` eligible documents gives all
    it has, with a warning.
    """
    files = resolve_inputs(cfg.paths, "test")
    stats = ReadStats()
    wanted = set(cfg.domains)
    # Per domain, a max-heap (negated rank) of the per_domain best-ranked documents.
    heaps: dict[str, list[tuple[bytes, int, Document]]] = {}
    eligible: dict[str, int] = {}
    for n, doc in enumerate(
        iter_documents(files, stats=stats, domains=cfg.domains, max_doc_bytes=max_doc_bytes)
    ):
        if len(doc.text.encode("utf-8")) < cfg.min_bytes:
            continue
        eligible[doc.domain] = eligible.get(doc.domain, 0) + 1
        rank = _rank(cfg.seed, doc.doc_id)
        neg = bytes(255 - b for b in rank)  # heapq is a min-heap; keep the smallest ranks
        heap = heaps.setdefault(doc.domain, [])
        item = (neg, -n, doc)
        if len(heap) < cfg.per_domain:
            heapq.heappush(heap, item)
        elif neg > heap[0][0]:
            heapq.heapreplace(heap, item)
    if stats.total_skipped:
        log.warning("query inputs: %s", stats.summary())

    missing = sorted(wanted - set(heaps))
    if missing:
        raise ValueError(
            f"no query document of at least {cfg.min_bytes} bytes in domain(s) {missing}; "
            f"the query inputs have {sorted(stats.seen_domains)}"
        )
    if not heaps:
        raise ValueError(
            f"no query document of at least queries.min_bytes={cfg.min_bytes} bytes in "
            f"{[f.source for f in files]} ({stats.summary()})"
        )
    queries: list[Query] = []
    ids: set[str] = set()
    for domain in sorted(heaps):
        chosen = sorted(heaps[domain], key=lambda t: (_rank(cfg.seed, t[2].doc_id), -t[1]))
        if len(chosen) < cfg.per_domain:
            log.warning(
                "domain %r has %d eligible query document(s), fewer than queries.per_domain=%d",
                domain,
                eligible[domain],
                cfg.per_domain,
            )
        for _neg, _n, doc in chosen:
            qid = query_id(domain, doc.doc_id)
            if qid in ids:
                raise ValueError(
                    f"two query documents share doc_id {doc.doc_id!r}; doc ids must be unique"
                )
            ids.add(qid)
            queries.append(
                Query(
                    query_id=qid,
                    domain=domain,
                    text=cut_utf8(doc.text, cfg.max_bytes),
                    doc_id=doc.doc_id,
                )
            )
    log.info(
        "%d queries from %d domain(s) (seed %d, %d-%d bytes)",
        len(queries),
        len(heaps),
        cfg.seed,
        cfg.min_bytes,
        cfg.max_bytes,
    )
    return queries
