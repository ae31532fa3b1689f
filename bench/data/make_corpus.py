#!/usr/bin/env python3
"""Rebuilds bench/data/corpus.jsonl from Debian's r-cran-janeaustenr package.

The package ships Jane Austen's six novels (Project Gutenberg texts, public domain) as an R
lazy-load database. R itself is not needed: this script reads the database with a minimal reader
of R's XDR serialization format (only the types that database uses).

    cd "$(mktemp -d)" && apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb x
    python3 bench/data/make_corpus.py x/usr/lib/R/site-library/janeaustenr/data bench/data/corpus.jsonl

One JSONL line per chapter: {"text", "book", "chapter"}. Paragraphs are joined by a blank line,
the lines inside a paragraph by a space, as the package's line breaks are only print layout.
"""
import gzip
import json
import re
import struct
import sys
import zlib

BOOKS = [  # (variable in the package, title), in order of publication.
    ("sensesensibility", "Sense and Sensibility"),
    ("prideprejudice", "Pride and Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]


class RReader:
    """Reads R's XDR serialization (format 2 or 3): vectors, pairlists, symbols, strings."""

    def __init__(self, data):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR-serialized R object")
        self.d, self.p, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()  # R version that wrote it, oldest R version that reads it
        if version == 3:
            n = self.int()  # native encoding name, skipped
            self.p += n
        self.obj = self.item()

    def int(self):
        (v,) = struct.unpack_from(">i", self.d, self.p)
        self.p += 4
        return v

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two 32-bit halves
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def item(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242, 241, 253, 252, 251, 250):  # NULL, empty/base/global env, markers
            return None
        if t == 255:  # reference to an earlier symbol
            i = flags >> 8
            return self.refs[(i if i else self.int()) - 1]
        if t == 1:  # symbol
            s = self.item()
            self.refs.append(s)
            return s
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.d[self.p:self.p + n].decode("utf-8" if flags & (1 << 15) or flags & (1 << 18) else "latin-1")
            self.p += n
            return s
        if t == 2:  # pairlist: returns a list of (tag, value)
            out = []
            while True:
                attr = self.item() if has_attr else None
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
                if t == 254:
                    return out
                if t != 2:
                    raise ValueError("unsupported pairlist tail type %d" % t)
        if t in (10, 13):  # logical, integer
            n = self.length()
            v = list(struct.unpack_from(">%di" % n, self.d, self.p))
            self.p += 4 * n
        elif t == 14:  # double
            n = self.length()
            v = list(struct.unpack_from(">%dd" % n, self.d, self.p))
            self.p += 8 * n
        elif t in (16, 19, 20):  # character vector, list, expression
            v = [self.item() for _ in range(self.length())]
        else:
            raise ValueError("unsupported R type %d at byte %d" % (t, self.p))
        if has_attr:
            attrs = dict(self.item())
            if "names" in attrs:
                v = dict(zip(attrs["names"], v))
        return v


def load_database(data_dir):
    index = RReader(gzip.decompress(open(data_dir + "/Rdata.rdx", "rb").read())).obj
    rdb = open(data_dir + "/Rdata.rdb", "rb").read()
    out = {}
    for name, (offset, size) in index["variables"].items():
        blob = rdb[offset:offset + size]
        (raw_len,) = struct.unpack_from(">I", blob, 0)
        raw = zlib.decompress(blob[4:])
        if len(raw) != raw_len:
            raise ValueError("%s: expected %d bytes, got %d" % (name, raw_len, len(raw)))
        out[name] = RReader(raw).obj
    return out


CHAPTER = re.compile(r"^(CHAPTER|Chapter) [0-9IVXLC]+\.?$")
# Headings and end marks that are layout, not prose: dropped.
LAYOUT = re.compile(r"^(VOLUME [IVX]+|THE END|FINIS)$", re.IGNORECASE)


def chapters(lines):
    """Splits a book's lines at chapter headings; the front matter before the first is dropped."""
    current = None
    for line in lines:
        line = line.strip()
        if CHAPTER.match(line):
            if current:
                yield current
            current = []
        elif current is not None and not LAYOUT.match(line):
            current.append(line)
    if current:
        yield current


def paragraphs(lines):
    para = []
    for line in lines + [""]:
        if line:
            para.append(line)
        elif para:
            yield " ".join(para)
            para = []


def main():
    data_dir, out_path = sys.argv[1], sys.argv[2]
    db = load_database(data_dir)
    with open(out_path, "w", encoding="utf-8") as out:
        for var, title in BOOKS:
            for i, lines in enumerate(chapters(db[var]), 1):
                text = "\n\n".join(paragraphs(lines))
                if text:
                    out.write(json.dumps({"text": text, "book": title, "chapter": i}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
