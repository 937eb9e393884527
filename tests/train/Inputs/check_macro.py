"""Reads `nnc train` output on stdin: recomputes macro precision, recall and F1 and accuracy
from the printed confusion matrix and checks them against the numbers of the test line."""
import re
import sys

text = sys.stdin.read()
rows = [list(map(int, line.split()[1:])) for line in
        text.split("confusion matrix")[1].split("\n")[2:] if re.match(r"^\s+\d+(\s+\d+)+$", line)]
test = dict(kv.split("=") for kv in text.strip().split("\n")[-1][len("test: "):].split())
C = len(rows)
prec = rec = f1 = 0.0
for c in range(C):
    tp = rows[c][c]
    pred = sum(rows[q][c] for q in range(C))
    act = sum(rows[c])
    p = tp / pred if pred else 0.0
    r = tp / act if act else 0.0
    prec += p / C
    rec += r / C
    f1 += (2 * p * r / (p + r) if p + r else 0.0) / C
acc = sum(rows[c][c] for c in range(C)) / sum(map(sum, rows))
for name, want in (("precision", prec), ("recall", rec), ("f1", f1), ("accuracy", acc)):
    got = float(test[name])
    if abs(got - want) > 1e-5:
        sys.exit("%s: nnc printed %g, the confusion matrix gives %g" % (name, got, want))
print("macro metrics agree with the confusion matrix (%d classes)" % C)
