"""Copies a run's results.json/flags.json into the results tree, re-basing its portable paths.

results.json paths (data source, transfer source, init_from) are relative to the run's own
directory; the copy in the results tree gets them relative to the repository instead (the
current directory: run from the repository root), like its command line and the older records.

  python experiments/scripts/rebase_results.py RUN_DIR DEST_DIR
"""
import json
import os
import shutil
import sys


def rebase(path, src, dest):  # pylint: disable=unused-argument
    if not path or path == "tensorflow-datasets" or os.path.isabs(path):
        return path
    return os.path.relpath(os.path.normpath(os.path.join(os.path.abspath(src), path)))


def main(src, dest):
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(src, "results.json")) as f:
        rec = json.load(f)
    if rec.get("data", {}).get("source"):
        rec["data"]["source"] = rebase(rec["data"]["source"], src, dest)
    if rec.get("transfer") and rec["transfer"].get("source"):
        rec["transfer"]["source"] = rebase(rec["transfer"]["source"], src, dest)
    if rec.get("init_from"):
        rec["init_from"] = rebase(rec["init_from"], src, dest)
    with open(os.path.join(dest, "results.json"), "w") as f:
        json.dump(rec, f, indent=1)
    shutil.copyfile(os.path.join(src, "flags.json"), os.path.join(dest, "flags.json"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
