#!/usr/bin/env python3
"""Checks the links between the repository's Markdown files: every relative
link names a file that exists, and every #anchor a heading of that file
(GitHub's heading ids). Links to the web are not followed (CI runs offline).

Usage: scripts/check-links.py   (from anywhere; exits 1 naming each broken link)
"""
import os
import re
import subprocess
import sys

ROOT = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                      text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path):
    """The lines of a Markdown file outside code fences, numbered."""
    fence = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
            elif not fence:
                yield number, line


def anchors(path):
    """GitHub's ids of a file's headings."""
    ids = set()
    for _, line in prose(path):
        m = re.match(r"#+\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            ids.add(text.replace(" ", "-"))
    return ids


def main():
    files = subprocess.run(["git", "ls-files", "*.md"], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout.split()
    broken = []
    for md in files:
        for number, line in prose(os.path.join(ROOT, md)):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(md), path)) if path \
                    else os.path.join(ROOT, md)
                if not os.path.exists(resolved):
                    broken.append(f"{md}:{number}: {target}: no such file")
                elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                    broken.append(f"{md}:{number}: {target}: no such heading")
    for b in broken:
        print(b, file=sys.stderr)
    print(f"{len(files)} Markdown files, {len(broken)} broken links")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
