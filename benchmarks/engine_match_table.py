"""The full statistical-match table of the torch engine against aihwkit (issue #16, acceptance 1).

Five single devices × two parameter settings (the preset; the preset with :data:`VARIANT`, more
asymmetric and noisier) from the ``middle`` state (weights in ±0.3 of the bounds), and the preset from
the ``edge`` state (near the upper bound, so pulses clip), one fixed chip state and one (x, d) batch each, ``--repeats``
realisations per engine (8,000 for the devices whose pulse noise exceeds the step, dw_min_std > 1);
then forward and transposed reads of three presets (``scale 20``: outputs hit the bound, so bound
management runs). Relative Frobenius errors of the per-cell mean and variance; the targets are
<= 5 % and <= 10 %. Prints a markdown table.

    PYTHONPATH=src python benchmarks/engine_match_table.py [--repeats 4000]
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from chiploop.devices.spec import load_device
from chiploop.experiments.engine_match import read_match, update_match

# the second parameter setting of every device: asymmetric, noisier steps, less device spread
VARIANT = {"up_down": 0.2, "dw_min_std": 1.0, "dw_min_dtod": 0.1, "w_bound_dtod": 0.1}
CASES = {"constant_step": "constant-step", "linear_step": "ecram", "soft_bounds": "reram-sb",
         "exp_step": "reram-es",
         "pow_step": {"preset": "constant-step", "response": "pow_step", "mirrors": "PowStepDevice"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4000)
    ap.add_argument("--variant-only", action="store_true", help="only the rows of the second parameter setting")
    args = ap.parse_args()
    print("| device (preset) | start | repeats | mean err | var err | persistent mean err | persistent var err |")
    print("|---|---|---|---|---|---|---|")
    for response, preset in tqdm(list(CASES.items()), desc="devices"):  # noqa: B007
        data = {"preset": preset} if isinstance(preset, str) else dict(preset)
        settings = [] if args.variant_only else [("preset", load_device(data), "middle"), ("preset", load_device(data), "edge")]
        settings.append(("variant", load_device({**data, **VARIANT}), "middle"))
        for setting, spec, start in settings:
            repeats = 2 * args.repeats if spec.dw_min_std > 1 else args.repeats
            r = update_match(spec, repeats=repeats, pulses=25, start=start)
            name = preset if isinstance(preset, str) else "constant-step as PowStepDevice"
            name += " + variant" if setting == "variant" else ""
            pm = f"{r['persistent_mean_err']:.3f}" if "persistent_mean_err" in r else "–"
            pv = f"{r['persistent_var_err']:.3f}" if "persistent_var_err" in r else "–"
            print(f"| {response} ({name}) | {start} | {repeats} | {r['mean_err']:.3f} | {r['var_err']:.3f} | {pm} | {pv} |",
                  flush=True)
    if args.variant_only:
        return
    print()
    print("| reads (preset) | weights × | repeats | forward mean err | forward var err | backward mean err | backward var err |")
    print("|---|---|---|---|---|---|---|")
    for preset in ("constant-step", "ecram", "reram-sb"):
        for scale in (1.0, 20.0):
            r = read_match(load_device(preset), repeats=args.repeats, scale=scale)
            print(f"| {preset} | {scale:g} | {args.repeats} | {r['forward_mean_err']:.3f} | {r['forward_var_err']:.3f} | "
                  f"{r['backward_mean_err']:.3f} | {r['backward_var_err']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
