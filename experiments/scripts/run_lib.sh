# Shared by the sweep scripts (source it from the repository root): one run of an experiment binary.
#   run_binary BINARY NAME OUT_DIR DEST_DIR [flags...]
# runs `python -m tfdisc.experiments.BINARY flags... --output_dir=OUT_DIR` with its log in
# OUT_DIR.log, then copies results.json/flags.json into DEST_DIR (rebase_results.py: paths relative
# to the repository). Prints "=== NAME time" first and "FAILED NAME (see log)" on failure, when it
# returns 1; the caller prints what it wants of the log.
run_binary() {
  local binary=$1 name=$2 out=$3 dest=$4; shift 4
  echo "=== $name $(date -u +%H:%M:%S)"
  if ! python -m "tfdisc.experiments.$binary" "$@" --output_dir="$out" > "$out.log" 2>&1; then
    echo "FAILED $name (see $out.log)"
    return 1
  fi
  python experiments/scripts/rebase_results.py "$out" "$dest"
}
