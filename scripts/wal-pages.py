#!/usr/bin/env python3
"""Which b-trees the commits in a store's WAL wrote, page by page.

Usage: scripts/wal-pages.py DIR
DIR holds a copy of hookrouter.db and hookrouter.db-wal taken from a router
killed under load (kill -9, so the WAL is left as it was; copy both files,
since opening the copy applies the WAL). Prints the commits and frames of the
WAL's current generation, and for each b-tree its frames and frames per commit.
"""
import collections
import sqlite3
import struct
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__)
d = sys.argv[1]
try:
    wal = open(f"{d}/hookrouter.db-wal", "rb").read()
except OSError as e:
    sys.exit(f"{e}: copy hookrouter.db and hookrouter.db-wal of a killed router into {d}")
if len(wal) < 32:
    sys.exit(f"{d}/hookrouter.db-wal holds no WAL header")
_magic, _ver, psz, _seq, s1, s2, _c1, _c2 = struct.unpack(">8I", wal[:32])
off, commits, cur = 32, [], []
while off + 24 + psz <= len(wal):
    pgno, size_after, f1, f2 = struct.unpack(">4I", wal[off:off + 16])
    if (f1, f2) != (s1, s2):
        break  # the rest is from an earlier generation of the WAL
    cur.append(pgno)
    if size_after:
        commits.append(cur)
        cur = []
    off += 24 + psz
frames = sum(len(c) for c in commits)
print(f"page size {psz}, commits {len(commits)}, frames {frames}")
if not commits:
    sys.exit(0)
owner = dict(
    (pageno, name)
    for name, pageno in sqlite3.connect(f"{d}/hookrouter.db").execute(
        "SELECT name, pageno FROM dbstat"
    )
)
count = collections.Counter(owner.get(p, "(free)") for c in commits for p in c)
print("| b-tree | frames | share | per commit |\n| --- | ---: | ---: | ---: |")
for name, n in count.most_common():
    print(f"| {name} | {n} | {100 * n / frames:.1f}% | {n / len(commits):.1f} |")
