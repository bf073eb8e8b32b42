"""The target marks the op benchmarks print after a measured figure (shared by its sections)."""

__all__ = ["ROOFLINE_SHARE_TARGET", "share_mark", "target_mark"]

ROOFLINE_SHARE_TARGET = 50.0  # dense batch 1 and conv, % of the kernel's own roofline


def target_mark(ratio, target):
    """`` [target >= Nx: met|MISSED]`` for a speed ratio, '' without a target."""
    if target is None:
        return ""
    return f" [target >= {target:g}x: {'met' if ratio >= target else 'MISSED'}]"


def share_mark(share, target=ROOFLINE_SHARE_TARGET):
    """`` [>= N%: met|MISSED]`` for a percentage of the roofline, '' without a target."""
    if target is None:
        return ""
    return f" [>= {target:.0f}%: {'met' if share >= target else 'MISSED'}]"
