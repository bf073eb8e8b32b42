"""A HiGHS solver process for ``milp.HighsProcess`` (run as a script: numpy and highspy only).

HiGHS 1.16 can spin in a MIP's root node past its ``time_limit`` and
``cancelSolve``; in a child process the parent can kill it. Messages are
length-prefixed pickles on stdin/stdout:

* ``("model", num_col, col_lower, col_upper, row_lower, row_upper, start, index, value,
  options, integer)``: a new MIP (rows in row-wise form; ``integer`` is a boolean array:
  which columns are integer, the others continuous), replies ``("ok",)``;
* ``("row", lower, upper, index, value)``: adds a row, replies ``("ok",)``;
* ``("solve", cost, cutoff, time_limit)``: minimises ``cost·x`` with the objective
  bound ``cutoff``; replies ``("solved", status name, has solution, objective, values)``.
"""
import os
import pickle
import struct
import sys

# Replies go to a private copy of stdout; fd 1 (where HiGHS prints its banner) becomes stderr.
_REPLIES = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)

import highspy  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position


def _read(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def _write(stream, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def _model(msg):
    (_, num_col, col_lower, col_upper, row_lower, row_upper, start, index, value,
     options, integer) = msg
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for key, val in options.items():
        h.setOptionValue(key, val)
    lp = highspy.HighsLp()
    lp.num_col_ = num_col
    lp.num_row_ = len(row_lower)
    lp.col_cost_ = np.zeros(num_col)
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                       for i in integer]
    h.passModel(lp)
    return h


def main():
    stdin, stdout = sys.stdin.buffer, _REPLIES
    h = None
    while True:
        msg = _read(stdin)
        if msg is None:
            return
        if msg[0] == "model":
            h = _model(msg)
            _write(stdout, ("ok",))
        elif msg[0] == "row":
            _, lower, upper, index, value = msg
            h.addRow(lower, upper, len(index), index, value)
            _write(stdout, ("ok",))
        elif msg[0] == "solve":
            _, cost, cutoff, time_limit = msg
            n = len(cost)
            h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
            h.setOptionValue("objective_bound", float(cutoff))
            h.setOptionValue("mip_max_improving_sols", 1)
            h.setOptionValue("time_limit", float(time_limit))
            h.clearSolver()
            h.run()
            info = h.getInfo()
            has = info.primal_solution_status == 2
            values = np.asarray(h.getSolution().col_value) if has else None
            _write(stdout, ("solved", h.getModelStatus().name, has,
                            float(info.objective_function_value), values))
        else:
            _write(stdout, ("error", f"unknown message {msg[0]!r}"))


if __name__ == "__main__":
    main()
