"""The files of Chroma's HNSW segments, checked in Python before Chroma loads them.

chromadb's hnswlib trusts these files: a header whose counts are garbage, or a link list that
points past the last element, makes it allocate or read out of bounds, and the process dies
with a segfault instead of an error. Each segment is a folder under the Chroma directory named
by its uuid, holding four files written by hnswlib's `persistDirty`:

- header.bin: the persistence version (int32, 1), then offsetLevel0, max_elements,
  cur_element_count, size_data_per_element, label_offset, offsetData (size_t), maxlevel,
  enterpoint_node (int32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t);
- data_level0.bin: one record of size_data_per_element bytes per element: its level-0 link
  list (a uint16 count, a flag byte, a spare byte, maxM0 uint32 neighbours), its vector and
  its label;
- length.bin: one float32 per element;
- link_lists.bin: per element, a uint32 byte size, then that many bytes of upper-level link
  lists (size_links_per_element bytes a level).

Beside them chromadb keeps index_metadata.pickle (its ids and labels), which it unpickles: one cut
short lacks the pickle's closing STOP opcode.

`problems` reads them with numpy (the link lists walked by their non-empty entries, about one
element in M), so an index of millions of elements is checked in well under a second.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin")
METADATA = "index_metadata.pickle"
PERSISTENCE_VERSION = 1
_HEADER = struct.Struct("<i6Qii3QdQ")
# hnswlib keeps a link list's count in 16 bits.
_MAX_LINKS = 0xFFFF


def segments(chroma_dir: Path) -> list[Path]:
    """The HNSW segment folders under a Chroma directory (those holding any of the four files)."""
    if not chroma_dir.is_dir():
        return []
    return sorted(p for p in chroma_dir.iterdir() if p.is_dir() and any((p / f).exists() for f in FILES))


def problems(segment: Path) -> list[str]:
    """What is wrong with one segment's files, each as a phrase naming the file; [] when sound."""
    missing = [name for name in FILES if not (segment / name).is_file()]
    if missing:
        return [f"{segment.name}/{name} is missing" for name in missing]
    pickled = segment / METADATA
    if pickled.is_file() and not _whole_pickle(pickled):
        return [f"{segment.name}/{METADATA} is truncated or overwritten"]
    raw = (segment / "header.bin").read_bytes()
    if len(raw) < _HEADER.size:
        return [f"{segment.name}/header.bin is truncated ({len(raw)} of {_HEADER.size} bytes)"]
    (version, offset_level0, max_elements, count, per_element, label_offset, offset_data,
     max_level, enter_point, max_m, max_m0, m, mult, ef_construction) = _HEADER.unpack_from(raw)
    links0 = max_m0 * 4 + 4
    dimension_bytes = label_offset - offset_data
    header_ok = (
        version == PERSISTENCE_VERSION and offset_level0 == 0 and 0 < max_m <= max_m0 <= _MAX_LINKS
        and 0 < m <= max_m0 and count <= max_elements and offset_data == links0
        and 0 < dimension_bytes and dimension_bytes % 4 == 0 and per_element == label_offset + 8
        # An empty index has no level and no entry point (both -1).
        and (count == 0 or (0 <= max_level < 64 and 0 <= enter_point < count))
        and np.isfinite(mult) and mult > 0 and ef_construction > 0
    )
    if not header_ok:
        return [f"{segment.name}/header.bin does not describe an HNSW index"]
    found = []
    for name, need in (("data_level0.bin", count * per_element), ("length.bin", count * 4)):
        size = (segment / name).stat().st_size
        if size < need:
            found.append(f"{segment.name}/{name} is truncated ({size} of {need} bytes)")
    if found or not count:
        return found
    if not _level0_links_sound(segment / "data_level0.bin", count, per_element, max_m0):
        found.append(f"{segment.name}/data_level0.bin links to elements that do not exist")
    links_problem = _upper_links_problem(segment / "link_lists.bin", count, max_m * 4 + 4, max_level)
    if links_problem:
        found.append(f"{segment.name}/link_lists.bin {links_problem}")
    return found


def _whole_pickle(path: Path) -> bool:
    """Whether the file opens as a pickle of protocol 2 or later does, and ends with STOP."""
    if path.stat().st_size < 3:
        return False
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(-1, os.SEEK_END)
        tail = f.read(1)
    return head[0] == 0x80 and 2 <= head[1] <= 5 and tail == b"."


def _level0_links_sound(path: Path, count: int, per_element: int, max_m0: int) -> bool:
    """Every element's level-0 list holds at most maxM0 neighbours, each an existing element."""
    records = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, per_element))
    sizes = records[:, 0:2].copy().view(np.uint16).ravel()
    if (sizes > max_m0).any():
        return False
    neighbours = records[:, 4 : 4 + 4 * max_m0].copy().view(np.uint32)
    used = np.arange(max_m0) < sizes[:, None]
    return bool((neighbours[used] < count).all())


def _upper_links_problem(path: Path, count: int, per_level: int, max_level: int) -> str | None:
    """Why the upper-level link lists cannot be read for `count` elements, or None. Every entry
    is a multiple of 4 bytes long, so the file is read as uint32 words and the walk jumps from
    one non-empty entry to the next: the empty ones between are one zero word each."""
    words = np.fromfile(path, dtype=np.uint32)
    size = path.stat().st_size
    nonzero = np.flatnonzero(words)
    at, seen = 0, 0
    starts: list[int] = []
    while seen < count:
        nxt = int(nonzero[np.searchsorted(nonzero, at)]) if len(nonzero) and at <= nonzero[-1] else len(words)
        empties = min(nxt - at, count - seen)
        seen += empties
        at += empties
        if seen == count:
            break
        if at >= len(words):
            return f"is truncated ({size} bytes hold the lists of {seen} of {count} elements)"
        length = int(words[at])
        if length % per_level or length // per_level > max_level:
            return f"holds a link list of {length} bytes at byte {at * 4}"
        starts.extend(range(at + 1, at + 1 + length // 4, per_level // 4))
        at += 1 + length // 4
        seen += 1
        if at > len(words):
            return f"is truncated ({size} bytes hold the lists of {seen - 1} of {count} elements)"
    if starts:
        # Each level's list: a uint16 count in its first word, then maxM neighbours.
        lists = words[np.asarray(starts)[:, None] + np.arange(per_level // 4)]
        sizes = lists[:, 0] & 0xFFFF
        used = np.arange(per_level // 4 - 1) < sizes[:, None]
        if (sizes > per_level // 4 - 1).any() or not (lists[:, 1:][used] < count).all():
            return "links to elements that do not exist"
    return None
