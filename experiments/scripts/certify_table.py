"""Markdown table of experiments/results/certify/*.json (certified vs attacks, per ε).

    python experiments/scripts/certify_table.py [experiments/results/certify]

Columns: clean accuracy; certified accuracy (tfdisc.certify: interval bounds,
search, branch and bound) on the evaluated test examples; PGD (straight-through
gradient through the quantizer, random restarts) and the gradient-free
quantized-space search on the attacked subset; best attack = the minimum of
the two; the certified fraction of the attacked subset (the lower end of the
bracket on the same examples); and soundness violations (certified examples an
attack broke: must be 0). A gradient attack weaker than the gradient-free
search by more than 2 points is flagged as likely gradient masking.
"""
import glob
import json
import os
import sys


def rows(directory):
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        train = record["training"]
        for eps, ev in sorted(record["eval"].items(), key=lambda kv: float(kv[0])):
            pgd = ev["pgd"]["accuracy"]
            search = ev["quantized_search"]["accuracy"]
            best = min(pgd, search)
            flag = " (masking?)" if pgd - search > 0.02 else ""
            shape = f"{record['model']} w{record.get('width') or 'def'} d{record.get('depth') or 'def'}"
            yield (f"| {os.path.basename(path)} | {shape} | {train['eps']} | "
                   f"{record['clean']:.4f} | {eps} | {ev['mean_free_pixels']:.1f} | "
                   f"**{ev['certified']:.4f}** | {ev['counterexample']:.4f} | {ev['unknown']:.4f} | "
                   f"{ev['certified_on_attack_subset']:.4f} | {pgd:.4f}{flag} | {search:.4f} | "
                   f"{best:.4f} | {ev['soundness_violations']} |")


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join("experiments", "results",
                                                                   "certify")
    print("| results | model | train ε | clean | ε | free px | certified | counterex. | unknown "
          "| certified (attack subset) | PGD | quantized search | best attack | violations |")
    print("|" + "---|" * 14)
    for row in rows(directory):
        print(row)


if __name__ == "__main__":
    main()
