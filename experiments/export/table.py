"""Prints the markdown tables of experiments/export/README.md from results/*.json.

Usage (from the repository root): python experiments/export/table.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ("keras", "saved_model", "packed_saved_model", "tflite", "lce", "tflite_int8",
         "lce_int8")


def size(n):
    return f"{n / 1024:.0f} KiB" if n < 10 * 2**20 else f"{n / 2**20:.1f} MiB"


def main():
    for name in ("mnist_fcn2_bnn_2b", "cifar10_alexnet_cifar_bnn_2b", "mnist_fcn1_bnn_8b"):
        path = os.path.join(HERE, "results", f"{name}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            r = json.load(f)
        a = r["attack"]
        print(f"### {name}\n")
        print(f"{r['data']['examples']} {r['data']['dataset']} test images "
              f"({r['data']['which']}); FGSM and PGD ({a['pgd']['steps']} steps, "
              f"step {a['pgd']['step_size']:.4g}, random start) at eps = {a['fgsm']['eps']}, "
              "crafted on the Keras model, gradient straight-through the input quantizer.\n")
        print("| format | argmax agreement | max abs logit diff | accuracy | FGSM acc. | "
              "PGD acc. | file size | batch-1 latency (median) | runtime |")
        print("|---|---|---|---|---|---|---|---|---|")
        for fmt in ORDER:
            row = r["formats"].get(fmt)
            if row is None:
                continue
            adv = row["adversarial_accuracy"]
            print(f"| {fmt} | {row['argmax_agreement'] * 100:.1f} % | "
                  f"{row['max_abs_logit_diff']:.2g} | {row['accuracy']:.3f} | "
                  f"{adv['fgsm']:.3f} | {adv['pgd']:.3f} | {size(row['file_bytes'])} | "
                  f"{row['latency_ms_batch1']:.2f} ms | {row['runtime']} |")
        print(f"\nCPU: {r['cpu']}; load average during the run {r['load_average'][0]:.1f} "
              "(2 cores shared with other jobs).\n")
        int8 = [f for f in ("tflite_int8", "lce_int8") if f in r["formats"]]
        for fmt in int8:
            margins = r["formats"][fmt]["disagreeing_keras_top2_margins"]
            if margins:
                print(f"{fmt}: {len(margins)} disagreements; Keras top-2 logit margin on them: "
                      f"median {sorted(margins)[len(margins) // 2]:.3g}, largest "
                      f"{max(margins):.3g}.\n")
    path = os.path.join(HERE, "results", "sizes.json")
    if os.path.exists(path):
        with open(path) as f:
            sizes = json.load(f)
        print("### Sizes at the zoo's default widths (untrained BNN-2b)\n")
        print("| model | params | binary params | float TFLite | LCE | float / LCE | "
              "LCE, int8 float layers | float / LCE int8 | LceBconv2d ops / binary layers |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, s in sizes.items():
            int8 = (f"{size(s['lce_int8_bytes'])} | {s['ratio_float_over_lce_int8']:.1f}x"
                    if "lce_int8_bytes" in s else "not measured | -")
            print(f"| {name} | {s['params']:,} | {s['binary_params']:,} | "
                  f"{size(s['tflite_bytes'])} | {size(s['lce_bytes'])} | "
                  f"{s['ratio_float_over_lce']:.1f}x | {int8} | {s['lce_binary_ops']} / "
                  f"{s['binary_layers']} |")


if __name__ == "__main__":
    main()
