#!/usr/bin/env python3
"""Assemble deduplicated English prose from Debian packages for masked-LM pretraining.

    apt-get update && python3 scripts/data/fetch_prose.py      # -> data/prose/

Sources (Debian bookworm, fetched with `apt-get download`, unpacked with `dpkg-deb -x`; no
package is installed):
  bible-kjv-text + bible-kjv   the King James Bible (text public domain; the `bible` program,
                               GPL-2+, prints it from its compressed data file)
  r-cran-janeaustenr           Jane Austen's six novels (package MIT; texts public domain),
                               read from R's lazy-load database with a small XDR reader below
  python3.11-doc               the Python 3.11 documentation, reStructuredText sources
                               (PSF License Version 2)
  linux-doc-6.1                the Linux kernel documentation, reStructuredText sources
                               (GPL-2.0; translations/ skipped: not English)

Cleaning: markup stripped (reST inline roles, directives, tables, section rules, literal and
code blocks, doctest), lines of a paragraph joined, whitespace collapsed; a paragraph is kept
when it has at least 8 words and 40 characters and looks like prose (mostly letters, few code
characters). Bible verses are grouped into paragraphs of at most ~600 characters within a
chapter. Paragraphs are deduplicated exactly (after whitespace normalisation), shuffled with a
fixed seed, and 1% is held out.

Writes data/prose/train.jsonl and eval.jsonl (`{"text": paragraph}` a line, the masked-LM
format of `deberta train`), data/prose/train.txt (one paragraph a line, for the tokenizer
trainer) and data/prose/manifest.json (packages, versions, licences, sha256s, counts).
Needs the Python standard library, apt-get and dpkg-deb.
"""

import argparse
import glob
import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib

SEED = 24
EVAL_FRACTION = 0.01
# Versions pinned for reproducibility; --any-version takes the archive's current candidates.
PACKAGES = {
    "bible-kjv-text": {"version": "4.38", "licence": "public domain (KJV text, see its copyright file)"},
    "bible-kjv": {"version": "4.38", "licence": "GPL-2+ (the `bible` reader used to print the text)"},
    "r-cran-janeaustenr": {"version": "1.0.0-1", "licence": "MIT (package); the novels are public domain"},
    "python3.11-doc": {"version": "3.11.2-6+deb12u9", "licence": "PSF-2.0 (Python Software Foundation License Version 2)"},
    "linux-doc-6.1": {"version": "6.1.192-3", "licence": "GPL-2.0 (Linux kernel documentation; individual files may carry other SPDX tags, e.g. GPL-2.0+/CC-BY-4.0/GFDL-1.1+)"},
}


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def norm_ws(s):
    return re.sub(r"\s+", " ", s).strip()


# ---------------------------------------------------------------------------------------------
# Fetching


def fetch_debs(cache, any_version):
    os.makedirs(cache, exist_ok=True)
    out = {}
    for name, info in PACKAGES.items():
        have = glob.glob(os.path.join(cache, f"{name}_*.deb"))
        if any_version:
            spec = name
        else:
            spec = f"{name}={info['version']}"
            quoted = info["version"].replace(":", "%3a")
            have = [p for p in have if os.path.basename(p) == f"{name}_{quoted}_all.deb"
                    or os.path.basename(p).startswith(f"{name}_{quoted}_")]
        if not have:
            r = subprocess.run(["apt-get", "download", spec], cwd=cache, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"apt-get download {spec} failed (run `apt-get update` first, or pass "
                         f"--any-version if the pinned version left the archive):\n{r.stderr}")
            have = glob.glob(os.path.join(cache, f"{name}_*.deb"))
        deb = sorted(have)[-1]
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        dest = os.path.join(cache, "x", name)
        if not os.path.isdir(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", deb, dest + ".tmp"], check=True)
            os.rename(dest + ".tmp", dest)
        out[name] = {"deb": os.path.basename(deb), "version": version, "sha256": sha256_file(deb),
                     "licence": info["licence"], "root": dest}
    return out


# ---------------------------------------------------------------------------------------------
# King James Bible


def kjv_paragraphs(pk):
    binary = os.path.join(pk["bible-kjv"]["root"], "usr", "bin", "bible")
    data = os.path.join(pk["bible-kjv-text"]["root"], "usr", "lib")
    r = subprocess.run([binary, "-p", data, "-f", "gen1:1-rev22:21"], capture_output=True, check=True)
    verses = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        m = re.match(r"^(\S+?)(\d+):(\d+) (.*)$", line)
        if m:
            verses.append((m.group(1) + m.group(2), m.group(4).strip()))
    if len(verses) != 31102:
        sys.exit(f"bible: expected 31102 verses, got {len(verses)}")
    paras, cur, chapter = [], [], None
    for ch, text in verses:
        if ch != chapter or sum(len(t) + 1 for t in cur) + len(text) > 600:
            if cur:
                paras.append(" ".join(cur))
            cur, chapter = [], ch
        cur.append(text)
    if cur:
        paras.append(" ".join(cur))
    return paras


# ---------------------------------------------------------------------------------------------
# Jane Austen: R lazy-load database (data/Rdata.rdb), each object a 4-byte big-endian length and a
# zlib stream holding an XDR serialization; the novels are character vectors, one line a string.


class _XdrReader:
    def __init__(self, b):
        self.b, self.p, self.refs = b, 0, []

    def int(self):
        v = struct.unpack(">i", self.b[self.p:self.p + 4])[0]
        self.p += 4
        return v

    def obj(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242):  # NILVALUE, EMPTYENV
            return None
        if t == 255:  # REFSXP
            return self.refs[(flags >> 8) - 1]
        if t == 1:  # SYMSXP
            v = ("sym", self.obj())
            self.refs.append(v)
            return v
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            enc = "latin-1" if flags & (1 << 2 + 12) and not flags & (1 << 3 + 12) else "utf-8"
            v = self.b[self.p:self.p + n].decode(enc, "replace")
            self.p += n
            return v
        if t == 2:  # LISTSXP
            attr = self.obj() if has_attr else None  # noqa: F841
            tag = self.obj() if has_tag else None
            car, cdr = self.obj(), self.obj()
            return [(tag, car)] + (cdr or [])
        if t in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            v = [self.obj() for _ in range(self.int())]
        elif t in (10, 13):  # LGLSXP, INTSXP
            n = self.int()
            v = list(struct.unpack(f">{n}i", self.b[self.p:self.p + 4 * n]))
            self.p += 4 * n
        elif t == 14:  # REALSXP
            n = self.int()
            v = list(struct.unpack(f">{n}d", self.b[self.p:self.p + 8 * n]))
            self.p += 8 * n
        else:
            raise ValueError(f"R serialization type {t} not handled")
        attr = self.obj() if has_attr else None
        return ("vec", t, v, attr)


def _unserialize(raw):
    if raw[:2] != b"X\n":
        raise ValueError("not an XDR R serialization")
    r = _XdrReader(raw)
    r.p = 2
    version = r.int()
    r.int(), r.int()
    if version == 3:
        n = r.int()  # native encoding name
        r.p += n
    return r.obj()


def austen_paragraphs(pk):
    path = os.path.join(pk["r-cran-janeaustenr"]["root"], "usr", "lib", "R", "site-library", "janeaustenr",
                        "data", "Rdata.rdb")
    data = open(path, "rb").read()
    paras, books, pos = [], [], 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        d = zlib.decompressobj()
        raw = d.decompress(data[pos + 4:])
        if len(raw) != n:
            raise ValueError("bad lazy-load record")
        pos = len(data) - len(d.unused_data)
        o = _unserialize(raw)
        if not (o and o[0] == "vec" and o[1] == 16):
            continue
        lines = [x or "" for x in o[2]]
        books.append(lines[0])
        cur = []
        for line in lines + [""]:
            if line.strip():
                cur.append(line.strip())
            elif cur:
                paras.append(" ".join(cur))
                cur = []
    if len(books) != 6:
        sys.exit(f"janeaustenr: expected 6 novels, got {books}")
    # Austen's _underscored_ emphasis
    return [re.sub(r"_([^_]+)_", r"\1", p) for p in paras], books


# ---------------------------------------------------------------------------------------------
# reStructuredText -> prose paragraphs

SKIP_DIRECTIVES = {
    "code-block", "code", "sourcecode", "literalinclude", "toctree", "doctest", "testcode",
    "testoutput", "testsetup", "testcleanup", "productionlist", "highlight", "kernel-doc",
    "table", "csv-table", "list-table", "flat-table", "image", "figure", "math", "raw", "include",
    "index", "only", "graphviz", "kernel-figure", "kernel-render", "kernel-include", "kernel-abi",
    "kernel-feat", "maintainers-include", "cssclass", "tabularcolumns", "sectionauthor",
    "moduleauthor", "module", "currentmodule", "program", "option", "cmdoption", "envvar",
    "opcode", "pdbcommand", "audit-event", "availability", "impl-detail", "c:namespace",
    "literal", "parsed-literal", "highlight-lang", "default-domain", "rubric", "contents",
    "sidebar", "glossary", "hlist", "autosummary", "automodule", "autoclass", "autofunction",
    "ifconfig", "title", "meta", "role", "date", "line-block", "epigraph", "compound", "container",
}

_ROLE = re.compile(r":(?:[\w.+-]+:)*[\w.+-]+:`([^`]*)`")
_REF = re.compile(r"`([^`<]*?)\s*<[^>]*>`_{1,2}")
_PLAIN_REF = re.compile(r"`([^`]+)`_{1,2}")
_LITERAL = re.compile(r"``(.+?)``")
_INTERP = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])")
_FOOT = re.compile(r"\s*\[(?:#\w*|\*|\d+|[\w-]+)\]_")
_SUBST = re.compile(r"\|(\w[\w -]*)\|_?")
_WORDREF = re.compile(r"\b(\w+)__?(?=\W|$)")


def _role_text(m):
    t = m.group(1)
    t = re.sub(r"\s*<[^>]*>$", "", t).strip() or t
    if t.startswith("~"):
        t = t[1:].split(".")[-1]
    return t.lstrip("!")


def rst_inline(s):
    s = _ROLE.sub(_role_text, s)
    s = _REF.sub(lambda m: m.group(1), s)
    s = _PLAIN_REF.sub(lambda m: m.group(1), s)
    s = _LITERAL.sub(lambda m: m.group(1), s)
    s = _INTERP.sub(lambda m: m.group(1), s)
    s = _STRONG.sub(lambda m: m.group(1), s)
    s = _EMPH.sub(lambda m: m.group(1), s)
    s = _FOOT.sub("", s)
    s = _SUBST.sub(lambda m: m.group(1), s)
    s = _WORDREF.sub(lambda m: m.group(1), s)
    s = s.replace("\\ ", "").replace("\\", "")
    return s


_RULE = re.compile(r"^\s*([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
_TABLE = re.compile(r"^\s*(\+[-=+]+\+|\|.*\||={2,}(\s+={2,})+)\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::")
_COMMENT = re.compile(r"^(\s*)\.\.(\s|$)")
_BULLET = re.compile(r"^(\s*)(?:[-*+\u2022]|\d+[.)]|#\.|\(\w\)|[a-z][.)])\s+")
_FIELD = re.compile(r"^(\s*):[^:]+:\s*")


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def rst_paragraphs(text):
    """Prose paragraphs of one reST document."""
    lines = text.replace("\t", "        ").splitlines()
    out, cur = [], []
    skip_below = None  # drop lines indented more than this (a skipped directive or literal block)

    def flush():
        if cur:
            out.append(" ".join(cur))
            cur.clear()

    literal_next = False
    for line in lines:
        stripped = line.strip()
        ind = _indent(line)
        if skip_below is not None:
            if not stripped or ind > skip_below:
                continue
            skip_below = None
        if literal_next and stripped:
            literal_next = False
            if ind > literal_base:
                skip_below = literal_base
                continue
        if not stripped:
            flush()
            continue
        m = _DIRECTIVE.match(line)
        if m:
            flush()
            name = m.group(2).split(":")[-1] if m.group(2).startswith(("py:", "c:", "std:", "rst:")) else m.group(2)
            if name in SKIP_DIRECTIVES or m.group(2) in SKIP_DIRECTIVES:
                skip_below = ind
            # the directive's argument line (e.g. a signature) is not prose; its body is
            continue
        if _COMMENT.match(line):  # comments, targets, footnote/citation bodies
            flush()
            skip_below = ind
            continue
        if _RULE.match(line) or _TABLE.match(line):
            # a section title is the paragraph just before an underline: drop it
            cur.clear()
            continue
        if stripped.startswith(">>>") or stripped.startswith("$ ") or stripped.startswith("# "):
            flush()
            skip_below = ind - 1
            continue
        b = _BULLET.match(line)
        if b:
            flush()
            line = line[b.end():]
        f = _FIELD.match(line)
        if f and not cur:
            line = line[f.end():]
        if stripped.endswith("::"):
            line = line.rstrip()[:-2].rstrip()
            line = line + ":" if line and not line.endswith(":") else line
            literal_next, literal_base = True, ind
        if line.strip():
            cur.append(line.strip())
        if literal_next:
            flush()
    flush()
    return [norm_ws(rst_inline(p)) for p in out]


# ---------------------------------------------------------------------------------------------
# Filters

_CODE_CHARS = set("{}[]<>=_;$#@|\\/`^~*&%")


def is_prose(p):
    if len(p) < 40 or len(p.split()) < 8:
        return False
    letters = sum(c.isalpha() for c in p)
    nonspace = sum(not c.isspace() for c in p)
    if letters < 0.75 * nonspace:
        return False
    if sum(c in _CODE_CHARS for c in p) > 0.02 * len(p):
        return False
    if not re.search(r"[.!?:;\"')]$", p):  # a sentence ends it
        return False
    if not re.match(r"^[\"'(\u2018\u201c]?[A-Z0-9]", p):
        return False
    return True


def docs_paragraphs(root, subdir, exclude=()):
    base = os.path.join(root, subdir)
    files = sorted(glob.glob(os.path.join(base, "**", "*.rst.txt"), recursive=True))
    paras = []
    for path in files:
        rel = os.path.relpath(path, base)
        if any(rel.startswith(e) for e in exclude):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            paras.extend(rst_paragraphs(f.read()))
    return paras, len(files)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--out", default=os.path.join(root, "data", "prose"))
    ap.add_argument("--cache", default=os.path.join(root, "data", "downloads", "debian"))
    ap.add_argument("--any-version", action="store_true",
                    help="download the archive's current versions instead of the pinned ones")
    args = ap.parse_args()

    pk = fetch_debs(args.cache, args.any_version)
    sources = {}
    kjv = kjv_paragraphs(pk)
    sources["kjv"] = {"packages": ["bible-kjv-text", "bible-kjv"], "paragraphs": kjv}
    austen, books = austen_paragraphs(pk)
    sources["austen"] = {"packages": ["r-cran-janeaustenr"], "paragraphs": austen, "books": books}
    py, n_py = docs_paragraphs(pk["python3.11-doc"]["root"], "usr/share/doc/python3.11/html/_sources")
    sources["python-docs"] = {"packages": ["python3.11-doc"], "paragraphs": py, "files": n_py}
    lx, n_lx = docs_paragraphs(pk["linux-doc-6.1"]["root"], "usr/share/doc/linux-doc-6.1/html/_sources",
                               exclude=("translations",))
    sources["linux-docs"] = {"packages": ["linux-doc-6.1"], "paragraphs": lx, "files": n_lx}

    seen, kept = set(), []
    stats = {}
    for name, s in sources.items():
        raw = [norm_ws(p) for p in s["paragraphs"]]
        prose = [p for p in raw if is_prose(p)] if name not in ("kjv",) else [p for p in raw if p]
        new = 0
        for p in prose:
            if p not in seen:
                seen.add(p)
                kept.append(p)
                new += 1
        chars = sum(len(p) for p in prose)
        stats[name] = {k: v for k, v in s.items() if k not in ("paragraphs",)}
        stats[name].update({"candidate_paragraphs": len(raw), "prose_paragraphs": len(prose),
                            "kept_after_dedup": new, "kept_chars": sum(len(p) for p in kept[-new:]) if new else 0})
        print(f"{name}: {len(raw)} paragraphs -> {len(prose)} prose ({chars/1e6:.1f} MB) -> {new} new")

    rng = random.Random(SEED)
    rng.shuffle(kept)
    n_eval = max(1, round(len(kept) * EVAL_FRACTION))
    parts = {"eval": kept[:n_eval], "train": kept[n_eval:]}

    os.makedirs(args.out, exist_ok=True)
    outputs = {}

    def write(name, data):
        b = data.encode("utf-8")
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(b)
        outputs[name] = {"bytes": len(b), "sha256": sha256_bytes(b)}

    for split, paras in parts.items():
        write(f"{split}.jsonl", "".join(json.dumps({"text": p}, ensure_ascii=False) + "\n" for p in paras))
        outputs[f"{split}.jsonl"]["paragraphs"] = len(paras)
        outputs[f"{split}.jsonl"]["text_bytes"] = sum(len(p.encode("utf-8")) for p in paras)
    write("train.txt", "".join(p + "\n" for p in parts["train"]))
    outputs["train.txt"]["paragraphs"] = len(parts["train"])

    manifest = {
        "packages": {n: {k: v for k, v in info.items() if k != "root"} for n, info in pk.items()},
        "distribution": "Debian 12 (bookworm), main",
        "sources": stats,
        "cleaning": "reST markup stripped, code/literal blocks/tables/directives dropped; paragraph kept when "
                    ">= 8 words, >= 40 chars, >= 75% letters among non-space chars, <= 2% code characters, "
                    "starts with a capital/digit and ends like a sentence (Bible: verses grouped <= ~600 chars "
                    "per chapter, not filtered); exact dedup after whitespace normalisation",
        "split": {"seed": SEED, "eval_fraction": EVAL_FRACTION},
        "paragraphs": len(kept),
        "text_bytes": sum(len(p.encode("utf-8")) for p in kept),
        "outputs": outputs,
    }
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(kept)} paragraphs, {manifest['text_bytes']/1e6:.1f} MB of text; "
          f"train {len(parts['train'])}, eval {len(parts['eval'])}")
    for n, o in outputs.items():
        print(f"{n}: {o['bytes']} bytes sha256 {o['sha256']}")


if __name__ == "__main__":
    main()
